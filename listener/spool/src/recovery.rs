//! Recovery at open: removes temporary files, cuts torn tails, moves corrupt
//! records aside and rebuilds the index.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::record::{self, Scanned};
use crate::segment::{self, CORRUPT_DIR, Location, SEGMENTS_DIR, TMP_SUFFIX};
use crate::{MessageId, SpoolError};

/// What recovery found and did when the spool was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: u64,
    /// Messages found intact on disk.
    pub messages: u64,
    /// Unfinished appends cut off the end of a segment (never acknowledged).
    pub truncated_tails: u64,
    /// Bytes removed with those tails.
    pub truncated_bytes: u64,
    /// Copies of corrupt records (in `{dir}/corrupt/`), one per bad region.
    pub corrupt_moved: Vec<PathBuf>,
    /// Leftover temporary files that were removed.
    pub temp_files_removed: Vec<PathBuf>,
    /// Segment files removed because nothing valid was left in them.
    pub empty_segments_removed: u64,
}

/// The outcome of recovery: the index and where the writer goes on.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Every stored message and where it is.
    pub index: HashMap<MessageId, Location>,
    /// Sequence number for the next segment.
    pub next_seq: u64,
    /// What was done.
    pub report: RecoveryReport,
}

/// Recovers the spool in `dir`, whose sub-directories exist and whose lock
/// is held by the caller.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    let corrupt_dir = dir.join(CORRUPT_DIR);
    let mut report = RecoveryReport::default();
    remove_temp_files(&segments_dir, &mut report)?;
    remove_temp_files(&corrupt_dir, &mut report)?;
    let segments = segment::list_segments(&segments_dir)?;
    let mut index = HashMap::new();
    for (seq, path) in &segments {
        let records = recover_segment(path, &corrupt_dir, &mut report)?;
        index_segment(*seq, &records, &mut index, &mut report);
    }
    let next_seq = segments.last().map_or(1, |(seq, _)| seq + 1);
    Ok(Recovered {
        index,
        next_seq,
        report,
    })
}

/// Removes every `*.tmp` file in `dir` (an atomic write cut short).
fn remove_temp_files(dir: &Path, report: &mut RecoveryReport) -> Result<(), SpoolError> {
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(SpoolError::at(dir))? {
        let path = entry.map_err(SpoolError::at(dir))?.path();
        if path.to_string_lossy().ends_with(TMP_SUFFIX) && path.is_file() {
            fs::remove_file(&path).map_err(SpoolError::at(&path))?;
            tracing::info!(path = %path.display(), "removed leftover temporary file");
            report.temp_files_removed.push(path);
            removed = true;
        }
    }
    if removed {
        segment::sync_dir(dir).map_err(SpoolError::at(dir))?;
    }
    Ok(())
}

/// Adds a segment's records (id, length), laid end to end from offset 0,
/// to the index.
fn index_segment(
    seq: u64,
    records: &[(MessageId, u64)],
    index: &mut HashMap<MessageId, Location>,
    report: &mut RecoveryReport,
) {
    if !records.is_empty() {
        report.segments += 1;
    }
    let mut offset = 0;
    for &(id, len) in records {
        if index.insert(id, Location { seq, offset, len }).is_some() {
            tracing::warn!(%id, "message id stored twice; the later copy wins");
        } else {
            report.messages += 1;
        }
        offset += len;
    }
}

/// Checks one segment and repairs it so that it holds only valid records,
/// end to end. Returns them as (id, length).
fn recover_segment(
    path: &Path,
    corrupt_dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Vec<(MessageId, u64)>, SpoolError> {
    let buf = segment::read_segment(path)?.unwrap_or_default();
    let items = record::scan(&buf);
    let mut good = Vec::new();
    let mut keep = Vec::new();
    let mut rewrite = false;
    let mut torn = None;
    for item in items {
        match item {
            Scanned::Record { offset, len, id } => {
                good.push((id, len as u64));
                keep.push(offset..offset + len);
            }
            Scanned::Corrupt {
                offset,
                len,
                reason,
            } => {
                let bytes = &buf[offset..offset + len];
                let copy = move_aside(path, corrupt_dir, offset, bytes, reason)?;
                report.corrupt_moved.push(copy);
                rewrite = true;
            }
            Scanned::TornTail { offset, len } => torn = Some((offset, len)),
        }
    }
    if let Some((offset, len)) = torn {
        tracing::warn!(
            path = %path.display(),
            offset,
            bytes = len,
            "cutting an unfinished append (never acknowledged) off the end of a segment"
        );
        report.truncated_tails += 1;
        report.truncated_bytes += len as u64;
    }
    if good.is_empty() {
        remove_segment(path, report)?;
    } else if rewrite {
        let kept: Vec<u8> = keep.into_iter().flat_map(|r| buf[r].to_vec()).collect();
        rewrite_segment(path, &kept)?;
    } else if let Some((offset, _)) = torn {
        truncate_segment(path, offset as u64)?;
    }
    Ok(good)
}

/// Copies a corrupt region to `corrupt_dir`, durably, and says so.
fn move_aside(
    segment: &Path,
    corrupt_dir: &Path,
    offset: usize,
    bytes: &[u8],
    reason: &str,
) -> Result<PathBuf, SpoolError> {
    let stem = segment.file_stem().unwrap_or_default().to_string_lossy();
    // The checksum keeps a later, different corruption at the same offset
    // of a rewritten segment from overwriting this copy; the same bytes get
    // the same name, so a recovery cut short and redone makes no duplicate.
    let crc = crc32fast::hash(bytes);
    let name = format!("{stem}-{offset:020}-{crc:08x}.corrupt");
    let copy = segment::write_atomically(corrupt_dir, &name, bytes)?;
    tracing::warn!(
        segment = %segment.display(),
        offset,
        bytes = bytes.len(),
        reason,
        copy = %copy.display(),
        "corrupt spool record moved aside"
    );
    Ok(copy)
}

/// Replaces a segment's content with `kept`, atomically.
fn rewrite_segment(path: &Path, kept: &[u8]) -> Result<(), SpoolError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    segment::write_atomically(dir, &name, kept).map(drop)
}

/// Cuts a segment at `len` and makes that durable.
fn truncate_segment(path: &Path, len: u64) -> Result<(), SpoolError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(SpoolError::at(path))?;
    file.set_len(len).map_err(SpoolError::at(path))?;
    file.sync_all().map_err(SpoolError::at(path))
}

/// Removes a segment with nothing valid left in it.
fn remove_segment(path: &Path, report: &mut RecoveryReport) -> Result<(), SpoolError> {
    fs::remove_file(path).map_err(SpoolError::at(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    segment::sync_dir(dir).map_err(SpoolError::at(dir))?;
    report.empty_segments_removed += 1;
    Ok(())
}

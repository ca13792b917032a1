//! Recovery at open: removes temporary files, reads the progress log, cuts
//! torn tails, moves corrupt regions aside, rebuilds the index, unlinks the
//! segments whose messages are all complete and rewrites the progress log.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::index::Index;
use crate::progress::{self, ProgressLog};
use crate::record::{self, FileKey, FileKind, Scanned};
use crate::segment::{self, CORRUPT_DIR, Location, PROGRESS_LOG, SEGMENTS_DIR, TMP_SUFFIX};
use crate::{Envelope, MessageId, SpoolError, writer};

/// What recovery found and did when the spool was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: u64,
    /// Incomplete messages found intact on disk (still to be delivered).
    pub messages: u64,
    /// Unfinished appends cut off the end of a file (never acknowledged).
    pub truncated_tails: u64,
    /// Bytes removed with those tails.
    pub truncated_bytes: u64,
    /// Copies of corrupt regions (in `{dir}/corrupt/`), one per bad region.
    pub corrupt_moved: Vec<PathBuf>,
    /// Leftover temporary files that were removed.
    pub temp_files_removed: Vec<PathBuf>,
    /// Segment files removed because nothing valid was left in them.
    pub empty_segments_removed: u64,
    /// Segment files removed because every message in them was complete
    /// (the process stopped before it unlinked them).
    pub complete_segments_removed: u64,
    /// Messages with delivery progress recorded (kept in the new progress log).
    pub messages_with_progress: u64,
}

/// The outcome of recovery: the index and where the writer goes on.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Every stored message, where it is and its progress.
    pub index: Index,
    /// Sequence number for the next segment.
    pub next_seq: u64,
    /// Key of the progress log recovery wrote.
    pub progress_key: FileKey,
    /// What was done.
    pub report: RecoveryReport,
}

/// One message record kept in a segment.
struct Kept {
    id: MessageId,
    len: u64,
    envelope_len: u32,
    recipients: u32,
}

/// Recovers the spool in `dir`, whose sub-directories exist and whose lock
/// is held by the caller.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    let corrupt_dir = dir.join(CORRUPT_DIR);
    let mut report = RecoveryReport::default();
    for temp_dir in [dir, &segments_dir, &corrupt_dir] {
        remove_temp_files(temp_dir, &mut report)?;
    }
    let log = read_progress_log(dir, &corrupt_dir, &mut report)?;
    let segments = segment::list_segments(&segments_dir)?;
    let mut index = Index::default();
    for (seq, path) in &segments {
        if let Some((key, len, kept)) = recover_segment(path, &corrupt_dir, &mut report)? {
            index_segment(*seq, key, len, &kept, &mut index, &mut report);
        }
    }
    for (id, state) in &log.states {
        index.apply(*id, &state.as_progress());
    }
    // Unlink (durably) before the new progress log forgets those messages'
    // completion: a crash in between finds the old log, not the messages.
    for seq in index.done_segments() {
        let path = segments_dir.join(segment::segment_name(seq));
        fs::remove_file(&path).map_err(SpoolError::at(&path))?;
        tracing::info!(path = %path.display(), "removed a segment whose messages are all complete");
        report.complete_segments_removed += 1;
        report.segments -= 1;
        index.remove_segment(seq);
    }
    segment::sync_dir(&segments_dir).map_err(SpoolError::at(&segments_dir))?;
    let snapshot = index.progress_snapshot();
    report.messages_with_progress = snapshot.len() as u64;
    let (progress_key, _) = writer::write_progress_log(dir, &snapshot)?;
    report.messages = index.incomplete();
    let next_seq = segments.last().map_or(1, |(seq, _)| seq + 1);
    Ok(Recovered {
        index,
        next_seq,
        progress_key,
        report,
    })
}

/// Reads the progress log; copies its corrupt regions aside first (it is
/// rewritten whole afterwards).
fn read_progress_log(
    dir: &Path,
    corrupt_dir: &Path,
    report: &mut RecoveryReport,
) -> Result<ProgressLog, SpoolError> {
    let path = dir.join(PROGRESS_LOG);
    let buf = segment::read_segment(&path)?.unwrap_or_default();
    let log = progress::read_log(&buf);
    for &(offset, len, reason) in &log.corrupt {
        let copy = move_aside(
            &path,
            corrupt_dir,
            offset,
            &buf[offset..offset + len],
            reason,
        )?;
        report.corrupt_moved.push(copy);
    }
    if let Some(offset) = log.torn_at {
        report.truncated_tails += 1;
        report.truncated_bytes += (buf.len() - offset) as u64;
    }
    Ok(log)
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

/// Adds a segment's records, laid end to end after the file header, to the
/// index.
fn index_segment(
    seq: u64,
    key: FileKey,
    len: u64,
    kept: &[Kept],
    index: &mut Index,
    report: &mut RecoveryReport,
) {
    report.segments += 1;
    index.add_segment(seq, key, len);
    let mut offset = record::FILE_HEADER_LEN as u64;
    for message in kept {
        let location = Location {
            seq,
            offset,
            len: message.len,
            envelope_len: message.envelope_len,
        };
        if !index.insert(message.id, location, message.recipients) {
            tracing::warn!(id = %message.id, "message id stored twice; the later copy wins");
        }
        offset += message.len;
    }
}

/// Checks one segment and repairs it so that it holds only its file header
/// and valid records, end to end. Returns its key, its new length and its
/// records, or `None` when nothing valid was left and it was removed.
fn recover_segment(
    path: &Path,
    corrupt_dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Option<(FileKey, u64, Vec<Kept>)>, SpoolError> {
    let buf = segment::read_segment(path)?.unwrap_or_default();
    let scan = record::scan(&buf, FileKind::Segment);
    let mut good = Vec::new();
    let mut keep = Vec::new();
    let mut rewrite = false;
    let mut torn = None;
    for item in scan.regions {
        let envelope = match (&item, &scan.header) {
            (Scanned::Record { offset, len, .. }, Some((_, key))) => {
                read_envelope(key, &buf[*offset..*offset + *len])
            }
            _ => None,
        };
        match (item, envelope) {
            (Scanned::Record { offset, len, id }, Some((envelope_len, recipients))) => {
                good.push(Kept {
                    id,
                    len: len as u64,
                    envelope_len,
                    recipients,
                });
                keep.push(offset..offset + len);
            }
            (Scanned::Record { offset, len, .. }, None) => {
                let bytes = &buf[offset..offset + len];
                let reason = "envelope unreadable or of another message";
                report
                    .corrupt_moved
                    .push(move_aside(path, corrupt_dir, offset, bytes, reason)?);
                rewrite = true;
            }
            (
                Scanned::Corrupt {
                    offset,
                    len,
                    reason,
                },
                _,
            ) => {
                let bytes = &buf[offset..offset + len];
                let copy = move_aside(path, corrupt_dir, offset, bytes, reason)?;
                report.corrupt_moved.push(copy);
                rewrite = true;
            }
            (Scanned::TornTail { offset, len }, _) => torn = Some((offset, len)),
        }
    }
    if let Some((offset, len)) = torn {
        tracing::warn!(
            path = %path.display(),
            offset,
            bytes = len,
            "cutting an unfinished append (never acknowledged) off the end of a file"
        );
        report.truncated_tails += 1;
        report.truncated_bytes += len as u64;
    }
    let Some((_, key)) = scan.header.filter(|_| !good.is_empty()) else {
        remove_segment(path, report)?;
        return Ok(None);
    };
    let mut kept: Vec<u8> = buf[..record::FILE_HEADER_LEN].to_vec();
    for range in keep {
        kept.extend_from_slice(&buf[range]);
    }
    if rewrite {
        rewrite_segment(path, &kept)?;
    } else if let Some((offset, _)) = torn {
        truncate_segment(path, offset as u64)?;
    }
    Ok(Some((key, kept.len() as u64, good)))
}

/// The envelope length and recipient count of a valid message record, if
/// its envelope parses and names the header's id.
fn read_envelope(key: &FileKey, bytes: &[u8]) -> Option<(u32, u32)> {
    let record = record::decode(key, bytes).ok()?;
    let envelope: Envelope = serde_json::from_slice(record.envelope).ok()?;
    if envelope.id != record.header.id {
        return None;
    }
    let recipients = u32::try_from(envelope.recipients.len()).ok()?;
    Some((record.header.envelope_len, recipients))
}

/// Copies a corrupt region to `corrupt_dir`, durably, and says so.
fn move_aside(
    file: &Path,
    corrupt_dir: &Path,
    offset: usize,
    bytes: &[u8],
    reason: &str,
) -> Result<PathBuf, SpoolError> {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    // The checksum keeps a later, different corruption at the same offset
    // of a rewritten file from overwriting this copy; the same bytes get
    // the same name, so a recovery cut short and redone makes no duplicate.
    let crc = crc32fast::hash(bytes);
    let name = format!("{stem}-{offset:020}-{crc:08x}.corrupt");
    let copy = segment::write_atomically(corrupt_dir, &name, bytes)?;
    tracing::warn!(
        file = %file.display(),
        offset,
        bytes = bytes.len(),
        reason,
        copy = %copy.display(),
        "corrupt spool region moved aside"
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
    segment::unlink_durably(path).map_err(SpoolError::at(path))?;
    report.empty_segments_removed += 1;
    Ok(())
}

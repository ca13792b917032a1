//! Read-only access to a spool directory, safe while a listener writes it:
//! nothing is locked or modified, and an append in progress at the end of
//! the active segment is simply not seen yet.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::progress::{self, ProgressState};
use crate::record::{self, FileKey, FileKind, Scanned};
use crate::segment::{self, Location, PROGRESS_LOG, SEGMENTS_DIR};
use crate::{Envelope, MessageId, SpoolError};

/// The envelopes of the messages stored in the spool at `dir` and not yet
/// complete (some recipient is not delivered, bounced or expired), in append
/// order (segment by segment), which is reception order up to concurrency.
/// A corrupt record yields an error item and listing goes on after it.
/// Messages held in memory (`deferredSpool`) are not on disk and not listed.
pub fn list(dir: &Path) -> Result<impl Iterator<Item = Result<Envelope, SpoolError>>, SpoolError> {
    let segments = segment::list_segments(&dir.join(SEGMENTS_DIR))?;
    let progress = read_progress(dir)?;
    Ok(segments
        .into_iter()
        .flat_map(move |(_, path)| envelopes_in(&path, &progress)))
}

/// The exact stored bytes of message `id` in the spool at `dir` (complete
/// or not, as long as its segment exists).
pub fn show(dir: &Path, id: &MessageId) -> Result<Vec<u8>, SpoolError> {
    for (_, path) in segment::list_segments(&dir.join(SEGMENTS_DIR))? {
        let Some(buf) = segment::read_segment(&path)? else {
            continue;
        };
        let scan = record::scan(&buf, FileKind::Segment);
        let Some((_, key)) = &scan.header else {
            continue;
        };
        let found = scan.regions.into_iter().find_map(|item| match item {
            Scanned::Record {
                offset,
                len,
                id: found,
            } if found == *id => Some((offset, len)),
            _ => None,
        });
        if let Some((offset, len)) = found {
            let (_, data) = decode(&path, offset as u64, key, &buf[offset..offset + len])?;
            return Ok(data);
        }
    }
    Err(SpoolError::NotFound(*id))
}

/// The folded progress log of the spool at `dir` (empty if there is none).
fn read_progress(dir: &Path) -> Result<HashMap<MessageId, ProgressState>, SpoolError> {
    let buf = segment::read_segment(&dir.join(PROGRESS_LOG))?.unwrap_or_default();
    Ok(progress::read_log(&buf).states)
}

/// Every incomplete message's envelope in one segment (errors for corrupt
/// regions).
fn envelopes_in(
    path: &Path,
    progress: &HashMap<MessageId, ProgressState>,
) -> Vec<Result<Envelope, SpoolError>> {
    let buf = match segment::read_segment(path) {
        Ok(Some(buf)) => buf,
        Ok(None) => return Vec::new(),
        Err(error) => return vec![Err(error)],
    };
    let corrupt = |offset: usize, reason: &str| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_owned(),
    };
    let scan = record::scan(&buf, FileKind::Segment);
    let complete = |envelope: &Envelope| {
        progress.get(&envelope.id).is_some_and(|state| {
            state.is_complete(u32::try_from(envelope.recipients.len()).unwrap_or(u32::MAX))
        })
    };
    scan.regions
        .into_iter()
        .filter_map(|item| match (item, &scan.header) {
            (Scanned::Record { offset, len, .. }, Some((_, key))) => {
                match decode(path, offset as u64, key, &buf[offset..offset + len]) {
                    Ok((envelope, _)) if complete(&envelope) => None,
                    Ok((envelope, _)) => Some(Ok(envelope)),
                    Err(error) => Some(Err(error)),
                }
            }
            (Scanned::Record { offset, .. }, None) => Some(Err(corrupt(offset, "no file key"))),
            (Scanned::Corrupt { offset, reason, .. }, _) => Some(Err(corrupt(offset, reason))),
            (Scanned::TornTail { .. }, _) => None,
        })
        .collect()
}

/// Reads the record at `location` (keyed with `key`) in the spool whose
/// segments are in `segments_dir`.
pub(crate) fn read_at(
    segments_dir: &Path,
    location: Location,
    key: &FileKey,
) -> Result<(Envelope, Vec<u8>), SpoolError> {
    let path = segments_dir.join(segment::segment_name(location.seq));
    let buf = read_range(&path, location.offset, location.len)?;
    decode(&path, location.offset, key, &buf)
}

/// Reads only the envelope of the record at `location`: the header's MAC
/// is checked; the body CRC, which needs the data, is not.
pub(crate) fn read_envelope_at(
    segments_dir: &Path,
    location: Location,
    key: &FileKey,
) -> Result<Envelope, SpoolError> {
    let path = segments_dir.join(segment::segment_name(location.seq));
    let len = record::HEADER_LEN as u64 + u64::from(location.envelope_len);
    let buf = read_range(&path, location.offset, len)?;
    let corrupt = |reason: String| SpoolError::Corrupt {
        path: path.clone(),
        offset: location.offset,
        reason,
    };
    let (id, envelope) = record::decode_envelope(key, &buf).map_err(|e| corrupt(e.to_owned()))?;
    parse_envelope(id, envelope).map_err(corrupt)
}

/// Reads `len` bytes at `offset` of `path`.
fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, SpoolError> {
    let file = File::open(path).map_err(SpoolError::at(path))?;
    let len = usize::try_from(len).map_err(|_| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: "record length overflows".into(),
    })?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)
        .map_err(SpoolError::at(path))?;
    Ok(buf)
}

/// Parses an envelope and checks it names the same id as its header.
fn parse_envelope(id: MessageId, json: &[u8]) -> Result<Envelope, String> {
    let envelope: Envelope =
        serde_json::from_slice(json).map_err(|e| format!("envelope is not valid JSON: {e}"))?;
    if envelope.id != id {
        return Err(format!(
            "envelope id {} differs from header id {id}",
            envelope.id
        ));
    }
    Ok(envelope)
}

/// Decodes a record read from `path` at `offset`: checks, then parses the
/// envelope and checks it names the same id as the header.
fn decode(
    path: &Path,
    offset: u64,
    key: &FileKey,
    bytes: &[u8],
) -> Result<(Envelope, Vec<u8>), SpoolError> {
    let corrupt = |reason: String| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let record = record::decode(key, bytes).map_err(|e| corrupt(e.to_owned()))?;
    let envelope = parse_envelope(record.header.id, record.envelope).map_err(corrupt)?;
    Ok((envelope, record.data.to_vec()))
}

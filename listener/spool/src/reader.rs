//! Read-only access to a spool directory, safe while a listener writes it:
//! nothing is locked or modified, and an append in progress at the end of
//! the active segment is simply not seen yet.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::record::{self, Scanned};
use crate::segment::{self, Location, SEGMENTS_DIR};
use crate::{Envelope, MessageId, SpoolError};

/// The envelopes of the messages stored in the spool at `dir`, in append
/// order (segment by segment), which is reception order up to concurrency.
/// A corrupt record yields an error item and listing goes on after it.
/// Messages held in memory (`deferredSpool`) are not on disk and not listed.
pub fn list(dir: &Path) -> Result<impl Iterator<Item = Result<Envelope, SpoolError>>, SpoolError> {
    let segments = segment::list_segments(&dir.join(SEGMENTS_DIR))?;
    Ok(segments
        .into_iter()
        .flat_map(|(_, path)| envelopes_in(&path)))
}

/// The exact stored bytes of message `id` in the spool at `dir`.
pub fn show(dir: &Path, id: &MessageId) -> Result<Vec<u8>, SpoolError> {
    for (_, path) in segment::list_segments(&dir.join(SEGMENTS_DIR))? {
        let Some(buf) = segment::read_segment(&path)? else {
            continue;
        };
        let found = record::scan(&buf).into_iter().find_map(|item| match item {
            Scanned::Record {
                offset,
                len,
                id: found,
            } if found == *id => Some((offset, len)),
            _ => None,
        });
        if let Some((offset, len)) = found {
            let (_, data) = decode(&path, offset as u64, &buf[offset..offset + len])?;
            return Ok(data);
        }
    }
    Err(SpoolError::NotFound(*id))
}

/// Every envelope of one segment (errors for corrupt regions).
fn envelopes_in(path: &Path) -> Vec<Result<Envelope, SpoolError>> {
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
    record::scan(&buf)
        .into_iter()
        .filter_map(|item| match item {
            Scanned::Record { offset, len, .. } => {
                Some(decode(path, offset as u64, &buf[offset..offset + len]).map(|(e, _)| e))
            }
            Scanned::Corrupt { offset, reason, .. } => Some(Err(corrupt(offset, reason))),
            Scanned::TornTail { .. } => None,
        })
        .collect()
}

/// Reads the record at `location` in the spool whose segments are in
/// `segments_dir`.
pub(crate) fn read_at(
    segments_dir: &Path,
    location: Location,
) -> Result<(Envelope, Vec<u8>), SpoolError> {
    let path = segments_dir.join(segment::segment_name(location.seq));
    let file = File::open(&path).map_err(SpoolError::at(&path))?;
    let len = usize::try_from(location.len).map_err(|_| SpoolError::Corrupt {
        path: path.clone(),
        offset: location.offset,
        reason: "record length overflows".into(),
    })?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, location.offset)
        .map_err(SpoolError::at(&path))?;
    decode(&path, location.offset, &buf)
}

/// Decodes a record read from `path` at `offset`: checks, then parses the
/// envelope and checks it names the same id as the header.
fn decode(path: &Path, offset: u64, bytes: &[u8]) -> Result<(Envelope, Vec<u8>), SpoolError> {
    let corrupt = |reason: String| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let record = record::decode(bytes).map_err(|e| corrupt(e.to_owned()))?;
    let envelope: Envelope = serde_json::from_slice(record.envelope)
        .map_err(|e| corrupt(format!("envelope is not valid JSON: {e}")))?;
    if envelope.id != record.header.id {
        let reason = format!(
            "envelope id {} differs from header id {}",
            envelope.id, record.header.id
        );
        return Err(corrupt(reason));
    }
    Ok((envelope, record.data.to_vec()))
}

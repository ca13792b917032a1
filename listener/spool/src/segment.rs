//! The spool directory layout and small file-system helpers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::SpoolError;

/// Sub-directory holding the segment log.
pub(crate) const SEGMENTS_DIR: &str = "segments";
/// Sub-directory where corrupt records are copied.
pub(crate) const CORRUPT_DIR: &str = "corrupt";
/// The lock file, directly in the spool directory.
pub(crate) const LOCK_FILE: &str = "lock";
/// The progress log, directly in the spool directory.
pub(crate) const PROGRESS_LOG: &str = "progress.log";
/// Suffix of temporary files (removed at recovery).
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// Extension of segment files.
const SEGMENT_EXT: &str = ".seg";

/// Where a record lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The segment's sequence number.
    pub seq: u64,
    /// Offset of the record in the segment.
    pub offset: u64,
    /// Record length.
    pub len: u64,
    /// Length of the envelope JSON (after the record header).
    pub envelope_len: u32,
}

/// The file name of segment `seq`: zero-padded so names sort like numbers.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_EXT}")
}

/// The sequence number of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// The segments in `segments_dir`, oldest first.
pub(crate) fn list_segments(segments_dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(segments_dir).map_err(SpoolError::at(segments_dir))? {
        let entry = entry.map_err(SpoolError::at(segments_dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads a whole segment; `None` if it no longer exists.
pub(crate) fn read_segment(path: &Path) -> Result<Option<Vec<u8>>, SpoolError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::io(path, e)),
    }
}

/// Removes a file and makes that durable (fsync of its directory).
pub(crate) fn unlink_durably(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the entries of `dir` durable (a new, renamed or removed file).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` if needed; when it was created, syncs its parent so the new
/// entry is durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(SpoolError::at(dir))?;
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent).map_err(SpoolError::at(parent)),
        None => Ok(()),
    }
}

/// Writes `bytes` to `dir/name` so that it appears whole or not at all:
/// a temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf, SpoolError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dest = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(SpoolError::at(&tmp))?;
    file.write_all(bytes).map_err(SpoolError::at(&tmp))?;
    file.sync_all().map_err(SpoolError::at(&tmp))?;
    fs::rename(&tmp, &dest).map_err(SpoolError::at(&dest))?;
    sync_dir(dir).map_err(SpoolError::at(dir))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(7)), Some(7));
        assert_eq!(parse_segment_name("7.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000007.seg.tmp"), None);
        assert!(segment_name(9) < segment_name(10));
    }
}

//! Disk space: what the spool uses and what its file system has left, for
//! the listener's backpressure (`452 4.3.1` past a high-water mark).

use std::io;
use std::path::Path;

/// The spool's disk use, its file system's space and the queue depth.
/// Cheap: one `statvfs(2)` and counters the writer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceReport {
    /// Bytes of the spool's files: segments and the progress log.
    pub spool_bytes: u64,
    /// Bytes available to this (unprivileged) process on the spool's file
    /// system (`f_bavail × f_frsize`).
    pub fs_free_bytes: u64,
    /// Size of the spool's file system (`f_blocks × f_frsize`).
    pub fs_total_bytes: u64,
    /// Messages not yet complete, on disk and in memory (as [`Spool::depth`](crate::Spool::depth)).
    pub queue_depth: u64,
}

impl SpaceReport {
    /// The fraction of the file system in use, 0.0 to 1.0, counting the
    /// space reserved for root as used (what the listener can still write).
    pub fn fs_used_fraction(&self) -> f64 {
        if self.fs_total_bytes == 0 {
            return 1.0;
        }
        let free = self.fs_free_bytes.min(self.fs_total_bytes);
        1.0 - free as f64 / self.fs_total_bytes as f64
    }
}

/// Free and total bytes of the file system holding `dir`.
pub(crate) fn file_system_space(dir: &Path) -> io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir)?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
    Ok((free, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_file_system_reports_plausible_space() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = file_system_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total, "free {free} total {total}");
        assert!(file_system_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn used_fraction() {
        let report = |free, total| SpaceReport {
            spool_bytes: 0,
            fs_free_bytes: free,
            fs_total_bytes: total,
            queue_depth: 0,
        };
        assert_eq!(report(25, 100).fs_used_fraction(), 0.75);
        assert_eq!(report(0, 0).fs_used_fraction(), 1.0);
        assert_eq!(report(200, 100).fs_used_fraction(), 0.0);
    }
}

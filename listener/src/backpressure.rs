//! Backpressure: MAIL gets `452 4.3.1` while the spool's file system is past a
//! listener's `spoolHighWaterPercent` or the queue is at its `maxQueueDepth`, so that
//! nothing is acknowledged that cannot be stored. Both clear by themselves as
//! delivery frees space; `/readyz` says why meanwhile.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use postern_config::DeliveryConfig;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the spool's file system is measured.
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The measured load, shared by every session (atomics: reading it does no I/O).
#[derive(Debug, Default)]
pub struct Load {
    /// Use of the spool's file system, in hundredths of a percent.
    disk_used_centipercent: AtomicU32,
    /// Messages queued for delivery.
    queue_depth: AtomicU64,
}

/// One reading of [`Load`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadReading {
    /// Use of the spool's file system, in percent.
    pub disk_used_percent: f64,
    /// Messages queued for delivery.
    pub queue_depth: u64,
}

impl Load {
    /// The current reading.
    pub fn read(&self) -> LoadReading {
        LoadReading {
            disk_used_percent: f64::from(self.disk_used_centipercent.load(Ordering::Relaxed))
                / 100.0,
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
        }
    }

    /// Records the file system's use, in percent.
    pub fn set_disk_used(&self, percent: f64) {
        let centi = (percent * 100.0).clamp(0.0, 10_000.0) as u32;
        self.disk_used_centipercent.store(centi, Ordering::Relaxed);
    }

    /// Records the queue depth.
    pub fn set_queue_depth(&self, depth: u64) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }
}

/// Why a listener with `config` must refuse new mail at this reading, if it must.
pub fn refusal(reading: LoadReading, config: &DeliveryConfig) -> Option<String> {
    if reading.disk_used_percent >= f64::from(config.spool_high_water_percent) {
        return Some(format!(
            "spool file system {:.1}% used, past the high-water mark of {}%",
            reading.disk_used_percent, config.spool_high_water_percent
        ));
    }
    match config.max_queue_depth {
        Some(max) if reading.queue_depth >= max => Some(format!(
            "{} messages queued for delivery, at the limit of {max}",
            reading.queue_depth
        )),
        _ => None,
    }
}

/// Use of the file system holding `dir`, in percent of what unprivileged users may
/// use (as `df` counts it).
pub fn disk_used_percent(dir: &Path) -> std::io::Result<f64> {
    let stat = rustix::fs::statvfs(dir)?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree) as f64;
    let usable = used + stat.f_bavail as f64;
    Ok(if usable > 0.0 {
        100.0 * used / usable
    } else {
        100.0
    })
}

/// Keeps `load` and the `used_ratio` gauge current until `stop`: the disk every
/// [`DISK_CHECK_INTERVAL`], the queue depth as it changes.
pub async fn monitor(
    spool_dir: PathBuf,
    load: std::sync::Arc<Load>,
    used_ratio: Gauge<f64, AtomicU64>,
    mut depth: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut warned = false;
    loop {
        match disk_used_percent(&spool_dir) {
            Ok(percent) => {
                load.set_disk_used(percent);
                used_ratio.set(percent / 100.0);
                warned = false;
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(dir = %spool_dir.display(), error = %e, "cannot measure the spool's file system");
            }
            Err(_) => {}
        }
        load.set_queue_depth(*depth.borrow_and_update());
        tokio::select! {
            () = tokio::time::sleep(DISK_CHECK_INTERVAL) => {}
            changed = depth.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> DeliveryConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn refuses_past_either_mark_and_says_why() {
        let c = config("{maxQueueDepth: 100, spoolHighWaterPercent: 90}");
        let reading = |disk, depth| LoadReading {
            disk_used_percent: disk,
            queue_depth: depth,
        };
        assert_eq!(refusal(reading(89.9, 99), &c), None);
        let disk = refusal(reading(90.0, 0), &c).unwrap();
        assert!(
            disk.contains("90.0% used") && disk.contains("90%"),
            "{disk}"
        );
        let depth = refusal(reading(10.0, 100), &c).unwrap();
        assert!(
            depth.contains("100 messages") && depth.contains("limit of 100"),
            "{depth}"
        );
        assert_eq!(
            refusal(reading(10.0, 1_000_000), &config("{}")),
            None,
            "no depth limit by default"
        );
    }

    #[test]
    fn load_round_trips_and_measures_a_real_file_system() {
        let load = Load::default();
        load.set_disk_used(42.5);
        load.set_queue_depth(7);
        assert_eq!(
            load.read(),
            LoadReading {
                disk_used_percent: 42.5,
                queue_depth: 7
            }
        );
        let used = disk_used_percent(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!((0.0..=100.0).contains(&used), "{used}");
    }
}

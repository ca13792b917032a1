//! Prometheus metrics of the spool.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The spool's metrics. Cheap to read; [`SpoolMetrics::register`] exposes
/// them in a Prometheus registry.
#[derive(Debug)]
pub struct SpoolMetrics {
    fsync_seconds: Histogram,
    batch_size: Histogram,
    bytes_written: Counter,
    messages_stored: Counter,
    batches: Counter,
    fsyncs: Counter,
    store_errors: Counter,
    progress_records: Counter,
    messages_completed: Counter,
    segments_removed: Counter,
    depth: Gauge,
}

impl Default for SpoolMetrics {
    fn default() -> Self {
        SpoolMetrics {
            // 50 µs .. ~1.6 s
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 1 .. 1024 messages
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            bytes_written: Counter::default(),
            messages_stored: Counter::default(),
            batches: Counter::default(),
            fsyncs: Counter::default(),
            store_errors: Counter::default(),
            progress_records: Counter::default(),
            messages_completed: Counter::default(),
            segments_removed: Counter::default(),
            depth: Gauge::default(),
        }
    }
}

impl SpoolMetrics {
    /// Registers every metric under the `postern_spool_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("postern_spool");
        registry.register(
            "fsync_duration_seconds",
            "Time spent making one batch durable (file and directory fsyncs)",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "batch_size_messages",
            "Messages made durable by one group commit",
            self.batch_size.clone(),
        );
        registry.register(
            "written_bytes",
            "Bytes appended to the segment log",
            self.bytes_written.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages made durable",
            self.messages_stored.clone(),
        );
        registry.register("batches", "Group commits", self.batches.clone());
        registry.register(
            "fsyncs",
            "fsync/fdatasync calls on segments and directories",
            self.fsyncs.clone(),
        );
        registry.register(
            "store_errors",
            "Messages whose store failed (each waiter got an error)",
            self.store_errors.clone(),
        );
        registry.register(
            "progress_records",
            "Delivery progress records made durable",
            self.progress_records.clone(),
        );
        registry.register(
            "messages_completed",
            "Messages whose every recipient is finished (delivered, bounced or expired)",
            self.messages_completed.clone(),
        );
        registry.register(
            "segments_removed",
            "Segment files unlinked because every message in them was complete",
            self.segments_removed.clone(),
        );
        registry.register(
            "depth_messages",
            "Messages held by the spool, on disk and in memory",
            self.depth.clone(),
        );
    }

    /// Messages made durable so far.
    pub fn messages_stored(&self) -> u64 {
        self.messages_stored.get()
    }

    /// Group commits so far.
    pub fn batches(&self) -> u64 {
        self.batches.get()
    }

    /// fsync calls (segment files and directories) so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.get()
    }

    /// Bytes appended to the segment log so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.get()
    }

    /// Messages whose store failed so far.
    pub fn store_errors(&self) -> u64 {
        self.store_errors.get()
    }

    /// Progress records made durable so far.
    pub fn progress_records(&self) -> u64 {
        self.progress_records.get()
    }

    /// Messages completed so far (on disk or held in memory).
    pub fn messages_completed(&self) -> u64 {
        self.messages_completed.get()
    }

    /// Segment files unlinked so far because all their messages were complete.
    pub fn segments_removed(&self) -> u64 {
        self.segments_removed.get()
    }

    /// Records durable progress records and the messages they completed.
    pub(crate) fn record_progress(&self, records: u64, completed: u64) {
        self.progress_records.inc_by(records);
        self.messages_completed.inc_by(completed);
    }

    /// Records unlinked segments.
    pub(crate) fn record_segments_removed(&self, segments: u64) {
        self.segments_removed.inc_by(segments);
    }

    /// Records one successful group commit.
    pub(crate) fn record_batch(&self, messages: u64, bytes: u64) {
        self.batches.inc();
        self.messages_stored.inc_by(messages);
        self.bytes_written.inc_by(bytes);
        if messages > 0 {
            self.batch_size.observe(messages as f64);
        }
    }

    /// Records the fsyncs of one batch and the time they took.
    pub(crate) fn record_fsyncs(&self, count: u64, seconds: f64) {
        self.fsyncs.inc_by(count);
        self.fsync_seconds.observe(seconds);
    }

    /// Records failed stores.
    pub(crate) fn record_errors(&self, messages: u64) {
        self.store_errors.inc_by(messages);
    }

    /// Sets the depth gauge.
    pub(crate) fn set_depth(&self, depth: u64) {
        self.depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_are_exposed() {
        let metrics = SpoolMetrics::default();
        metrics.record_batch(3, 300);
        metrics.record_fsyncs(2, 0.001);
        metrics.set_depth(3);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for needle in [
            "postern_spool_messages_stored_total 3",
            "postern_spool_fsyncs_total 2",
            "postern_spool_written_bytes_total 300",
            "postern_spool_depth_messages 3",
            "postern_spool_fsync_duration_seconds_count 1",
            "postern_spool_batch_size_messages_sum 3",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}

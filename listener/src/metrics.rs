//! The listener's Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::records::{LogRecord, RecordType};

/// Labels of a rejection: the reply code and enhanced code, e.g. `550` / `5.7.1`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// The SMTP reply code.
    pub code: u16,
    /// The enhanced status code (the reason), or "" when there is none.
    pub reason: String,
}

/// Labels naming a listener by its address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// The listen address.
    pub listener: String,
}

/// Labels naming which deadline closed a session.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadlineLabels {
    /// `read` (clientTimeout), `command`, `data`, `write`, `tls`, `budget` or `proxy`
    /// (no PROXY header within clientTimeout).
    pub deadline: &'static str,
}

/// Every value of the `deadline` label: each series exists from the start (at 0).
pub const DEADLINES: [&str; 7] = ["read", "command", "data", "write", "tls", "budget", "proxy"];

/// Labels of a PROXY protocol header's fate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    /// The listen address.
    pub listener: String,
    /// `v1` or `v2` (a client address taken), `local` (a header without one, e.g. a
    /// health check), `untrusted` (peer outside `proxyProtocolFrom`), `malformed`,
    /// `missing` (closed or timed out before a whole header).
    pub outcome: &'static str,
}

/// Counters and gauges of the SMTP side.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Connections accepted, per listener.
    pub connections: Family<ListenerLabels, Counter>,
    /// Connections open now, per listener.
    pub active_connections: Family<ListenerLabels, Gauge>,
    /// Messages accepted with 250 (spooled or logged).
    pub messages_accepted: Counter,
    /// Commands and messages refused, by reply code and enhanced code.
    pub rejections: Family<RejectionLabels, Counter>,
    /// Message octets accepted.
    pub received_bytes: Counter,
    /// Failed TLS handshakes after STARTTLS.
    pub tls_handshake_failures: Counter,
    /// Connections refused for `maxConnections` (or the file descriptor limit).
    pub connections_denied: Family<ListenerLabels, Counter>,
    /// Sessions closed by a deadline, by deadline.
    pub deadlines: Family<DeadlineLabels, Counter>,
    /// `maxDataInFlight`.
    pub data_budget_bytes: Gauge,
    /// Message data held in memory by sessions now.
    pub data_in_flight_bytes: Gauge,
    /// Times a session had to wait for room in the data budget.
    pub data_budget_waits: Counter,
    /// Times a session gave up waiting for room (and was closed with 421 4.3.1).
    pub data_budget_timeouts: Counter,
    /// Rejection records not logged because a session refused too much too fast.
    pub rejection_records_suppressed: Counter,
    /// Rejection records dropped because the record log's queue was full.
    pub log_records_dropped: Counter,
    /// Failed writes to the record log (each is retried).
    pub log_write_errors: Counter,
    /// 1 when `/readyz` would answer ready, else 0 (set at every scrape).
    pub ready: Gauge,
    /// Use of the spool's file system, 0 to 1 (as `df` counts it).
    pub spool_filesystem_used_ratio: Gauge<f64, AtomicU64>,
    /// Each listener's `spoolHighWaterPercent`, 0 to 1: past it MAIL gets 452.
    pub spool_high_water_ratio: Family<ListenerLabels, Gauge<f64, AtomicU64>>,
    /// PROXY protocol headers, by listener and outcome.
    pub proxy_headers: Family<ProxyLabels, Counter>,
}

impl Metrics {
    /// Registers every metric in `registry`. Series whose labels are known now exist from
    /// the start, at 0, so `rate()` and alerts see them before anything happened.
    pub fn register(&self, registry: &mut Registry) {
        for deadline in DEADLINES {
            let _ = self.deadlines.get_or_create(&DeadlineLabels { deadline });
        }
        registry.register(
            "postern_connections",
            "SMTP connections accepted",
            self.connections.clone(),
        );
        registry.register(
            "postern_active_connections",
            "SMTP connections open now",
            self.active_connections.clone(),
        );
        registry.register(
            "postern_messages_accepted",
            "Messages accepted with 250",
            self.messages_accepted.clone(),
        );
        registry.register(
            "postern_rejections",
            "Commands and messages refused, by reply code and enhanced status code",
            self.rejections.clone(),
        );
        registry.register(
            "postern_received_bytes",
            "Message octets accepted",
            self.received_bytes.clone(),
        );
        registry.register(
            "postern_tls_handshake_failures",
            "TLS handshakes after STARTTLS that failed",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "postern_connections_denied",
            "SMTP connections refused with 421 4.3.2 for maxConnections or the fd limit",
            self.connections_denied.clone(),
        );
        registry.register(
            "postern_session_deadlines",
            "SMTP sessions closed by a deadline (read, command, data, write, tls, budget)",
            self.deadlines.clone(),
        );
        registry.register(
            "postern_data_budget_bytes",
            "maxDataInFlight: message data all sessions may hold in memory",
            self.data_budget_bytes.clone(),
        );
        registry.register(
            "postern_data_in_flight_bytes",
            "Message data held in memory by sessions now",
            self.data_in_flight_bytes.clone(),
        );
        registry.register(
            "postern_data_budget_waits",
            "Times a session waited for room in the data budget",
            self.data_budget_waits.clone(),
        );
        registry.register(
            "postern_data_budget_timeouts",
            "Times a session got no room in the data budget in time (421 4.3.1)",
            self.data_budget_timeouts.clone(),
        );
        registry.register(
            "postern_rejection_records_suppressed",
            "Rejection records not logged because one session refused too much too fast",
            self.rejection_records_suppressed.clone(),
        );
        self.register_log(registry);
        registry.register(
            "postern_proxy_headers",
            "PROXY protocol headers by outcome: v1, v2, local, untrusted, malformed, missing",
            self.proxy_headers.clone(),
        );
        self.register_health(registry);
    }

    /// Registers readiness and the spool's file-system use.
    fn register_health(&self, registry: &mut Registry) {
        registry.register(
            "postern_ready",
            "1 when the listener takes mail (what /readyz answers), else 0",
            self.ready.clone(),
        );
        registry.register(
            "postern_spool_filesystem_used_ratio",
            "Use of the spool's file system, 0 to 1, measured every second",
            self.spool_filesystem_used_ratio.clone(),
        );
        registry.register(
            "postern_spool_high_water_ratio",
            "Each listener's spoolHighWaterPercent as 0 to 1: past it MAIL is refused with 452 4.3.1",
            self.spool_high_water_ratio.clone(),
        );
    }

    /// Registers the record log's metrics.
    fn register_log(&self, registry: &mut Registry) {
        registry.register(
            "postern_log_records_dropped",
            "Rejection records dropped because the record log's queue was full",
            self.log_records_dropped.clone(),
        );
        registry.register(
            "postern_log_write_errors",
            "Failed writes to the record log; each is retried and /readyz fails meanwhile",
            self.log_write_errors.clone(),
        );
    }

    /// Creates `listener`'s connection series (at 0).
    pub fn listening(&self, listener: &ListenerLabels) {
        let _ = self.connections.get_or_create(listener);
        let _ = self.active_connections.get_or_create(listener);
        let _ = self.connections_denied.get_or_create(listener);
    }

    /// Counts a session closed by `deadline`.
    pub fn deadline(&self, deadline: &'static str) {
        self.deadlines
            .get_or_create(&DeadlineLabels { deadline })
            .inc();
    }

    /// Counts a rejection record (logged or suppressed).
    pub fn observe(&self, record: &LogRecord) {
        if record.suppressed {
            self.rejection_records_suppressed.inc();
        }
        if record.kind == RecordType::Rejection {
            let reason = record
                .response
                .enhanced_code
                .map(|e| e.to_string())
                .unwrap_or_default();
            self.rejections
                .get_or_create(&RejectionLabels {
                    code: record.response.code,
                    reason,
                })
                .inc();
        }
    }

    /// Counts a message answered with 250.
    pub fn accepted(&self, octets: usize) {
        self.messages_accepted.inc();
        self.received_bytes.inc_by(octets as u64);
    }
}

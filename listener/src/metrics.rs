//! The listener's Prometheus metrics.

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
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
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
    }

    /// Counts a rejection record.
    pub fn observe(&self, record: &LogRecord) {
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

//! The delivery side's Prometheus metrics.

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels naming a destination site.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    /// The site: `host:port` of a smarthost, or `mx:` and the domain.
    pub site: String,
}

/// What became of a recipient in an attempt.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AttemptOutcome {
    /// Accepted by the remote.
    delivered,
    /// Will be retried.
    transient,
    /// Bounced (permanent failure).
    bounced,
    /// Expired (`maxAge`).
    expired,
}

/// Labels of an attempt outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The outcome.
    pub outcome: AttemptOutcome,
}

/// Counters, gauges and the latency histogram of delivery.
#[derive(Clone, Debug)]
pub struct DeliveryMetrics {
    /// Queued (message, destination) entries per site.
    pub queue_depth: Family<SiteLabels, Gauge>,
    /// Age of the oldest queued message per site, in seconds.
    pub oldest_age: Family<SiteLabels, Gauge>,
    /// Messages queued (any destination).
    pub queued_messages: Gauge,
    /// Recipient attempts by outcome.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Outbound connections open now, per site.
    pub connections_open: Family<SiteLabels, Gauge>,
    /// Time from reception to the remote's 2xx, per recipient.
    pub latency: Histogram,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        // Every outcome's series exists from the start, so `rate()` and alerts see zeros.
        let attempts = Family::<OutcomeLabels, Counter>::default();
        for outcome in [
            AttemptOutcome::delivered,
            AttemptOutcome::transient,
            AttemptOutcome::bounced,
            AttemptOutcome::expired,
        ] {
            let _ = attempts.get_or_create(&OutcomeLabels { outcome });
        }
        Self {
            queue_depth: Family::default(),
            oldest_age: Family::default(),
            queued_messages: Gauge::default(),
            attempts,
            connections_open: Family::default(),
            // 1 ms to about 6 days in 30 steps of ×2.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 30)),
        }
    }
}

impl DeliveryMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "postern_delivery_queue_depth",
            "Queued deliveries (message and recipient domain) per destination site",
            self.queue_depth.clone(),
        );
        registry.register(
            "postern_delivery_oldest_message_age_seconds",
            "Age of the oldest queued message per destination site",
            self.oldest_age.clone(),
        );
        registry.register(
            "postern_delivery_queued_messages",
            "Messages waiting for delivery, all destinations",
            self.queued_messages.clone(),
        );
        registry.register(
            "postern_delivery_attempts",
            "Recipient delivery attempts by outcome",
            self.attempts.clone(),
        );
        registry.register(
            "postern_delivery_connections_open",
            "Outbound SMTP connections open now, per destination site",
            self.connections_open.clone(),
        );
        registry.register(
            "postern_delivery_latency_seconds",
            "Time from reception to the remote's acceptance, per recipient",
            self.latency.clone(),
        );
    }

    /// Counts one recipient's outcome.
    pub fn attempt(&self, outcome: AttemptOutcome) {
        self.attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

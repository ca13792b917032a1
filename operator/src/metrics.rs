//! Prometheus metrics of the operator: reconciles by outcome, errors, reconcile duration,
//! and every request it sends to the API server, by verb.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The outcome of one reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ready`, `progressing`, `stalled` or `error`.
    pub outcome: String,
}

/// The verb of one API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    /// `get` (reads and lists), `watch`, `create`, `update`, `patch` or `delete`.
    pub verb: String,
}

/// The kind of a watched resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// E.g. `EsmtpListener`, `Deployment`, `Secret`.
    pub kind: String,
}

/// One `EsmtpListener`, named apart from the scrape target's own `namespace` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// The listener's namespace.
    pub listener_namespace: String,
    /// The listener's name.
    pub listener_name: String,
}

/// The operator's metrics, cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Finished reconciles by outcome.
    pub reconciles: Family<OutcomeLabel, Counter>,
    /// Reconciles that failed with an error and are retried with a backoff.
    pub errors: Counter,
    /// Seconds one reconcile took.
    pub duration: Histogram,
    /// API requests sent, by verb.
    pub requests: Family<VerbLabel, Counter>,
    /// 1 while this instance holds the leader lease.
    pub leader: Gauge,
    /// Failed list or watch calls, by watched kind (each is retried with a backoff).
    pub watch_errors: Family<KindLabel, Counter>,
    /// Per `EsmtpListener`: 1 when its last reconcile found it ready, else 0.
    pub listener_ready: Family<ListenerLabel, Gauge>,
    /// The listeners that have a `listener_ready` series, so deleted ones can be dropped.
    listeners_seen: Arc<Mutex<HashSet<ListenerLabel>>>,
    total_requests: Arc<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `postern_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("postern_operator");
        let reconciles = Family::<OutcomeLabel, Counter>::default();
        let errors = Counter::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let requests = Family::<VerbLabel, Counter>::default();
        let leader = Gauge::default();
        let watch_errors = Family::<KindLabel, Counter>::default();
        let listener_ready = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "listener_ready",
            "1 when the EsmtpListener's last reconcile found every replica ready and current, else 0",
            listener_ready.clone(),
        );
        registry.register(
            "watch_errors",
            "Failed list or watch calls by kind, retried with a backoff",
            watch_errors.clone(),
        );
        registry.register(
            "reconciles",
            "Finished reconciles by outcome",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and will be retried",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server",
            requests.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance holds the leader lease",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            requests,
            leader,
            watch_errors,
            listener_ready,
            listeners_seen: Arc::default(),
            total_requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts one finished reconcile.
    pub fn reconciled(&self, outcome: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        self.duration.observe(seconds);
    }

    /// Records what the last reconcile of `namespace`/`name` found: `ready` sets its gauge
    /// to 1, `deleting` removes it, any other outcome sets 0.
    pub fn listener_outcome(&self, namespace: &str, name: &str, outcome: &str) {
        let labels = ListenerLabel {
            listener_namespace: namespace.into(),
            listener_name: name.into(),
        };
        let mut seen = self
            .listeners_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if outcome == "deleting" {
            self.listener_ready.remove(&labels);
            seen.remove(&labels);
            return;
        }
        self.listener_ready
            .get_or_create(&labels)
            .set(i64::from(outcome == "ready"));
        seen.insert(labels);
    }

    /// Drops the `listener_ready` series of every listener for which `exists(namespace,
    /// name)` is false (deleted without a reconcile seeing it go).
    pub fn forget_listeners(&self, exists: impl Fn(&str, &str) -> bool) {
        let mut seen = self
            .listeners_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|l| {
            let keep = exists(&l.listener_namespace, &l.listener_name);
            if !keep {
                self.listener_ready.remove(l);
            }
            keep
        });
    }

    /// Creates the watch-error series of `kind` (at 0), so it exists before any error.
    pub fn watching(&self, kind: &str) {
        let _ = self
            .watch_errors
            .get_or_create(&KindLabel { kind: kind.into() });
    }

    /// Counts one failed list or watch of `kind`.
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Failed lists or watches of `kind` so far.
    pub fn watch_errors_of(&self, kind: &str) -> u64 {
        self.watch_errors
            .get(&KindLabel { kind: kind.into() })
            .map_or(0, |c| c.get())
    }

    /// Counts one API request.
    pub fn request(&self, verb: &str) {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        self.requests
            .get_or_create(&VerbLabel { verb: verb.into() })
            .inc();
    }

    /// API requests counted so far with `verb`.
    pub fn requests_of(&self, verb: &str) -> u64 {
        self.requests
            .get(&VerbLabel { verb: verb.into() })
            .map_or(0, |c| c.get())
    }

    /// All API requests counted so far.
    pub fn total_requests(&self) -> u64 {
        self.total_requests.load(Ordering::Relaxed)
    }

    /// Finished reconciles so far with `outcome`.
    pub fn reconciles_of(&self, outcome: &str) -> u64 {
        self.reconciles
            .get(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .map_or(0, |c| c.get())
    }

    /// Finished reconciles so far, over every outcome.
    pub fn total_reconciles(&self) -> u64 {
        ["ready", "progressing", "stalled", "error"]
            .iter()
            .map(|o| self.reconciles_of(o))
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A kube client whose every request is counted in `metrics` (by verb).
pub fn counting_client(
    config: kube::Config,
    metrics: &Metrics,
) -> Result<kube::Client, kube::Error> {
    let metrics = metrics.clone();
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        metrics.request(verb_of(req.method(), req.uri().query()));
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// The verb of an API request: from the method, and `watch=true` for watches.
pub fn verb_of(method: &http::Method, query: Option<&str>) -> &'static str {
    match *method {
        http::Method::GET if query.is_some_and(|q| q.split('&').any(|p| p == "watch=true")) => {
            "watch"
        }
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_counts_show_in_the_exposition() {
        let m = Metrics::new();
        m.request(verb_of(
            &http::Method::GET,
            Some("labelSelector=a&watch=true"),
        ));
        m.request(verb_of(&http::Method::PATCH, None));
        m.reconciled("ready", 0.01);
        m.watch_error("Secret");
        m.listener_outcome("mail", "mx", "ready");
        m.listener_outcome("mail", "submission", "stalled");
        m.listener_outcome("mail", "gone", "ready");
        m.listener_outcome("mail", "gone", "deleting");
        let text = m.encode();
        assert!(
            text.contains(
                r#"postern_operator_listener_ready{listener_namespace="mail",listener_name="mx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"postern_operator_listener_ready{listener_namespace="mail",listener_name="submission"} 0"#),
            "{text}"
        );
        assert!(!text.contains(r#"listener_name="gone""#), "{text}");
        m.forget_listeners(|_, name| name == "mx");
        let text = m.encode();
        assert!(text.contains(r#"listener_name="mx""#), "{text}");
        assert!(!text.contains(r#"listener_name="submission""#), "{text}");
        assert!(
            text.contains(r#"postern_operator_watch_errors_total{kind="Secret"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"postern_operator_api_requests_total{verb="watch"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"postern_operator_api_requests_total{verb="patch"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"postern_operator_reconciles_total{outcome="ready"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("postern_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert_eq!((m.total_requests(), m.total_reconciles()), (2, 1));
    }
}

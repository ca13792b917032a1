//! Reload counters for `/metrics`.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;

use crate::expiry::not_after_unix;

/// The kind of source a reload read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A PEM file (e.g. a mounted Secret).
    File,
    /// A Vault KV v2 secret.
    Vault,
}

/// How a reload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// A usable certificate and key were read (and served if they changed).
    Success,
    /// The read or the certificate/key check failed; the last good certificate stays.
    Failure,
}

impl SourceKind {
    /// The label value: `file` or `vault`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Vault => "vault",
        }
    }
}

impl ReloadResult {
    /// The label value: `success` or `failure`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl EncodeLabelValue for SourceKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for ReloadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    source: SourceKind,
    result: ReloadResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CertificateLabels {
    listener: String,
}

/// TLS metrics, shared by every listener's [`TlsProvider`](crate::TlsProvider).
///
/// Clones share their series: create one, [`register`](Self::register) it once, and
/// hand a clone to each listener. Exposed as
/// `postern_tls_reloads_total{source="file"|"vault",result="success"|"failure"}` and
/// `postern_tls_certificate_not_after_timestamp_seconds{listener="ADDRESS"}` (the served
/// leaf certificate's `notAfter`, set at start and on every reload that swaps it in).
#[derive(Clone, Debug)]
pub struct TlsMetrics {
    reloads: Family<ReloadLabels, Counter>,
    not_after: Family<CertificateLabels, Gauge>,
}

impl Default for TlsMetrics {
    fn default() -> Self {
        let reloads = Family::<ReloadLabels, Counter>::default();
        // Every series exists from the start, so `rate()` and alerts see zeros.
        for source in [SourceKind::File, SourceKind::Vault] {
            for result in [ReloadResult::Success, ReloadResult::Failure] {
                let _ = reloads.get_or_create(&ReloadLabels { source, result });
            }
        }
        Self {
            reloads,
            not_after: Family::default(),
        }
    }
}

impl TlsMetrics {
    /// Registers the counters in `registry` (call once per registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "postern_tls_reloads",
            "Re-reads of TLS certificate sources after start, by source kind and result",
            self.reloads.clone(),
        );
        registry.register(
            "postern_tls_certificate_not_after_timestamp_seconds",
            "When the served leaf certificate expires (its notAfter), in seconds since the Unix epoch, per listener",
            self.not_after.clone(),
        );
    }

    /// The `notAfter` last recorded for `listener`'s certificate, if any.
    pub fn not_after(&self, listener: &str) -> Option<i64> {
        self.not_after
            .get(&CertificateLabels {
                listener: listener.into(),
            })
            .map(|g| g.get())
    }

    /// Records the `notAfter` of the chain `listener` serves now; a chain whose leaf does
    /// not parse removes the series (and says so in the log) rather than leave a stale date.
    pub(crate) fn served(&self, listener: &str, chain: &[CertificateDer<'_>]) {
        let labels = CertificateLabels {
            listener: listener.into(),
        };
        match not_after_unix(chain) {
            Ok(at) => {
                self.not_after.get_or_create(&labels).set(at);
            }
            Err(reason) => {
                self.not_after.remove(&labels);
                tracing::warn!(listener, %reason, "cannot read the served certificate's expiry");
            }
        }
    }

    /// The current count for one series (for tests and diagnostics).
    pub fn reloads(&self, source: SourceKind, result: ReloadResult) -> u64 {
        self.reloads
            .get_or_create(&ReloadLabels { source, result })
            .get()
    }

    pub(crate) fn record(&self, source: SourceKind, result: ReloadResult) {
        self.reloads
            .get_or_create(&ReloadLabels { source, result })
            .inc();
    }
}

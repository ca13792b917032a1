//! The background task that re-reads the sources and swaps in a new certificate.
//!
//! Files are re-read every `file_poll_interval` (2 s by default) and compared byte for byte
//! with what was last tried; Vault sources are re-read every `tls_refresh_interval`. A
//! changed, valid pair replaces the served certificate; anything else keeps it. A failure
//! on files is looked at again once after a short pause before it is reported, so that a
//! `..data` swap landing between the reads of the two files is not counted as a failure.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio::time::Instant;

use crate::error::{Field, TlsError};
use crate::metrics::{ReloadResult, SourceKind, TlsMetrics};
use crate::pem::{PemPair, certified_key};
use crate::resolver::Resolver;
use crate::source::Source;

/// One of the two configured sources and the bytes it last produced.
pub(crate) struct Slot {
    pub field: Field,
    pub source: Source,
    pub latest: Vec<u8>,
    next_vault_read: Instant,
    /// Whether this tick reads the source.
    due: bool,
}

impl Slot {
    pub(crate) fn new(field: Field, source: Source, latest: Vec<u8>) -> Self {
        Self {
            field,
            source,
            latest,
            next_vault_read: Instant::now(),
            due: false,
        }
    }
}

/// Owns the sources after start; runs until the provider is dropped.
pub(crate) struct Reloader {
    /// The listen address, naming the listener in the expiry gauge.
    pub listener: String,
    pub cert: Slot,
    pub key: Slot,
    pub resolver: Arc<Resolver>,
    pub metrics: TlsMetrics,
    pub provider: Arc<CryptoProvider>,
    pub file_poll: Duration,
    pub vault_every: Duration,
}

/// How long to wait before looking again at files that failed mid-update.
const SETTLE: Duration = Duration::from_millis(250);

/// What one look at the sources found.
enum Outcome {
    /// Nothing new.
    Unchanged,
    /// A new, valid pair, ready to serve; `kind` is the source that changed.
    Ready {
        kind: SourceKind,
        certified: Arc<CertifiedKey>,
    },
    /// A source could not be read (`read`), or the new pair is not usable.
    Failed {
        kind: SourceKind,
        err: TlsError,
        read: bool,
    },
}

/// What the loop remembers between ticks.
struct Tried {
    cert: Vec<u8>,
    key: Vec<u8>,
    ok: bool,
    /// The last read failure reported, so that a file that stays broken is counted once.
    reported: Option<String>,
}

impl Reloader {
    pub(crate) async fn run(mut self) {
        let any_file = [&self.cert, &self.key]
            .iter()
            .any(|s| s.source.kind() == SourceKind::File);
        let tick = if any_file {
            self.file_poll.min(self.vault_every)
        } else {
            self.vault_every
        };
        let start = Instant::now();
        for slot in [&mut self.cert, &mut self.key] {
            slot.next_vault_read = start + self.vault_every;
        }
        let mut tried = Tried {
            cert: self.cert.latest.clone(),
            key: self.key.latest.clone(),
            ok: true,
            reported: None,
        };
        loop {
            tokio::time::sleep(tick).await;
            self.tick(&mut tried).await;
        }
    }

    async fn tick(&mut self, tried: &mut Tried) {
        let now = Instant::now();
        let mut vault_read = false;
        for slot in [&mut self.cert, &mut self.key] {
            slot.due = match slot.source.kind() {
                SourceKind::File => true,
                SourceKind::Vault => now >= slot.next_vault_read,
            };
            if slot.due && slot.source.kind() == SourceKind::Vault {
                slot.next_vault_read = now + self.vault_every;
                vault_read = true;
            }
        }
        let mut outcome = self.attempt(tried).await;
        if let Outcome::Failed {
            kind: SourceKind::File,
            ..
        } = outcome
        {
            // Files seen mid-update (the `..data` swap landing between the two reads, or a
            // writer that is not done yet): look at them once more before reporting.
            tokio::time::sleep(self.file_poll.min(SETTLE)).await;
            for slot in [&mut self.cert, &mut self.key] {
                slot.due = slot.source.kind() == SourceKind::File;
            }
            outcome = self.attempt(tried).await;
        }
        self.report(outcome, vault_read, tried);
    }

    /// Reads the due sources and, if the pair changed, builds the new certificate.
    async fn attempt(&mut self, tried: &Tried) -> Outcome {
        for slot in [&mut self.cert, &mut self.key] {
            if !slot.due {
                continue;
            }
            match slot.source.read(slot.field).await {
                Ok(bytes) => slot.latest = bytes,
                Err(err) => {
                    return Outcome::Failed {
                        kind: slot.source.kind(),
                        err,
                        read: true,
                    };
                }
            }
        }
        let cert_changed = self.cert.latest != tried.cert;
        let key_changed = self.key.latest != tried.key;
        if !cert_changed && !key_changed {
            return Outcome::Unchanged;
        }
        let kind = if key_changed {
            self.key.source.kind()
        } else {
            self.cert.source.kind()
        };
        let cert_origin = self.cert.source.describe();
        let key_origin = self.key.source.describe();
        let pair = PemPair {
            cert: &self.cert.latest,
            cert_origin: &cert_origin,
            key: &self.key.latest,
            key_origin: &key_origin,
        };
        match certified_key(&pair, &self.provider) {
            Ok(certified) => Outcome::Ready { kind, certified },
            Err(err) => Outcome::Failed {
                kind,
                err,
                read: false,
            },
        }
    }

    fn report(&self, outcome: Outcome, vault_read: bool, tried: &mut Tried) {
        match outcome {
            Outcome::Failed {
                kind,
                err,
                read: true,
            } => {
                // A file that stays missing is reported once; every Vault read is an attempt.
                let message = err.to_string();
                if kind == SourceKind::Vault || tried.reported.as_deref() != Some(&message) {
                    self.fail(kind, &err);
                    tried.reported = Some(message);
                }
            }
            Outcome::Unchanged => {
                tried.reported = None;
                if vault_read {
                    // The same, already judged, bytes: count the periodic read as what it was.
                    let result = if tried.ok {
                        ReloadResult::Success
                    } else {
                        ReloadResult::Failure
                    };
                    self.metrics.record(SourceKind::Vault, result);
                }
            }
            Outcome::Ready { kind, certified } => {
                tried.reported = None;
                tried.cert.clone_from(&self.cert.latest);
                tried.key.clone_from(&self.key.latest);
                tried.ok = true;
                self.metrics.served(&self.listener, &certified.cert);
                self.resolver.swap(certified);
                self.metrics.record(kind, ReloadResult::Success);
                tracing::info!(
                    certificate = %self.cert.source.describe(),
                    key = %self.key.source.describe(),
                    "TLS certificate reloaded; new handshakes use it"
                );
            }
            Outcome::Failed {
                kind,
                err,
                read: false,
            } => {
                tried.reported = None;
                tried.cert.clone_from(&self.cert.latest);
                tried.key.clone_from(&self.key.latest);
                tried.ok = false;
                self.fail(kind, &err);
            }
        }
    }

    fn fail(&self, kind: SourceKind, err: &TlsError) {
        self.metrics.record(kind, ReloadResult::Failure);
        tracing::warn!(
            error = %err,
            "TLS certificate reload failed; still serving the last good certificate"
        );
    }
}

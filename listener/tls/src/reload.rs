//! The background task that re-reads the sources and swaps in a new certificate.
//!
//! Files are re-read every `file_poll_interval` (2 s by default) and compared byte for byte
//! with what was last tried; Vault sources are re-read every `tls_refresh_interval`. A
//! changed, valid pair replaces the served certificate; anything else keeps it.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
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
}

impl Slot {
    pub(crate) fn new(field: Field, source: Source, latest: Vec<u8>) -> Self {
        Self {
            field,
            source,
            latest,
            next_vault_read: Instant::now(),
        }
    }
}

/// Owns the sources after start; runs until the provider is dropped.
pub(crate) struct Reloader {
    pub cert: Slot,
    pub key: Slot,
    pub resolver: Arc<Resolver>,
    pub metrics: TlsMetrics,
    pub provider: Arc<CryptoProvider>,
    pub file_poll: Duration,
    pub vault_every: Duration,
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
        let vault_every = self.vault_every;
        let mut vault_read = false;
        let mut failure: Option<(SourceKind, TlsError)> = None;
        for slot in [&mut self.cert, &mut self.key] {
            let kind = slot.source.kind();
            if kind == SourceKind::Vault {
                if now < slot.next_vault_read {
                    continue;
                }
                slot.next_vault_read = now + vault_every;
                vault_read = true;
            }
            match slot.source.read(slot.field).await {
                Ok(bytes) => slot.latest = bytes,
                Err(e) => {
                    failure.get_or_insert((kind, e));
                }
            }
        }
        if let Some((kind, err)) = failure {
            // A file that stays missing is reported once; every Vault read is an attempt.
            let message = err.to_string();
            if kind == SourceKind::Vault || tried.reported.as_deref() != Some(&message) {
                self.fail(kind, &err);
                tried.reported = Some(message);
            }
            return;
        }
        tried.reported = None;

        let cert_changed = self.cert.latest != tried.cert;
        let key_changed = self.key.latest != tried.key;
        if !cert_changed && !key_changed {
            if vault_read {
                // The same, already judged, bytes: count the periodic read as what it was.
                if tried.ok {
                    self.metrics
                        .record(SourceKind::Vault, ReloadResult::Success);
                } else {
                    self.metrics
                        .record(SourceKind::Vault, ReloadResult::Failure);
                }
            }
            return;
        }
        let kind = if key_changed {
            self.key.source.kind()
        } else {
            self.cert.source.kind()
        };
        tried.cert.clone_from(&self.cert.latest);
        tried.key.clone_from(&self.key.latest);
        let cert_origin = self.cert.source.describe();
        let key_origin = self.key.source.describe();
        let pair = PemPair {
            cert: &self.cert.latest,
            cert_origin: &cert_origin,
            key: &self.key.latest,
            key_origin: &key_origin,
        };
        match certified_key(&pair, &self.provider) {
            Ok(certified) => {
                self.resolver.swap(certified);
                tried.ok = true;
                self.metrics.record(kind, ReloadResult::Success);
                tracing::info!(
                    certificate = %cert_origin,
                    key = %key_origin,
                    "TLS certificate reloaded; new handshakes use it"
                );
            }
            Err(err) => {
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

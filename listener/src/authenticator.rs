//! One listener's AUTH: the credentials (read at start, then again every
//! `refreshInterval` from a file or Vault), the password check run on the blocking
//! pool, and the per-address failure limit.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use postern_config::AuthConfig;
use postern_smtp::sasl::Claim;
use postern_tls::{KeyReader, TlsOptions};

use crate::{auth_failures::AuthFailures, credential_store::CredentialStore};

/// A listener's AUTH service, shared by its sessions.
pub struct Authenticator {
    relay: bool,
    failure_delay: Duration,
    store: ArcSwap<CredentialStore>,
    failures: Mutex<AuthFailures>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("relay", &self.relay)
            .field("store", &self.store.load())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over a store already read (tests, and [`Authenticator::start`]).
    pub fn new(config: &AuthConfig, store: CredentialStore) -> Self {
        Self {
            relay: config.relay,
            failure_delay: config.failure_delay.get(),
            store: ArcSwap::from_pointee(store),
            failures: Mutex::new(AuthFailures::new(
                config.max_failures,
                config.failure_window.get(),
            )),
        }
    }

    /// Reads the credentials (an unreadable or malformed source fails the start) and
    /// keeps re-reading them every `refreshInterval` while the authenticator lives; a
    /// failed re-read keeps the previous credentials and is logged.
    pub async fn start(config: &AuthConfig) -> Result<Arc<Self>, String> {
        let reader = KeyReader::new(&config.credentials, &TlsOptions::from_env())?;
        let store = load(&reader).await?;
        tracing::info!(source = %reader.describe(), users = store.len(), "AUTH credentials loaded");
        let auth = Arc::new(Self::new(config, store));
        tokio::spawn(refresh(
            Arc::downgrade(&auth),
            reader,
            config.refresh_interval.get(),
        ));
        Ok(auth)
    }

    /// Whether an authenticated client may relay to any domain.
    pub fn relays(&self) -> bool {
        self.relay
    }

    /// How long a failed attempt waits before its reply.
    pub fn failure_delay(&self) -> Duration {
        self.failure_delay
    }

    /// Whether `peer` has used up its failed attempts.
    pub fn blocked(&self, peer: IpAddr) -> bool {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocked(peer, Instant::now())
    }

    /// Checks the claim's password on the blocking pool; a failure counts against `peer`.
    pub async fn check(&self, claim: Claim, peer: IpAddr) -> bool {
        let store = self.store.load_full();
        let ok = tokio::task::spawn_blocking(move || {
            store.verify(&claim.authn, claim.password.expose())
        })
        .await
        .unwrap_or(false);
        if !ok {
            self.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(peer, Instant::now());
        }
        ok
    }
}

async fn load(reader: &KeyReader) -> Result<CredentialStore, String> {
    let bytes = reader.read().await?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: the credentials are not UTF-8", reader.describe()))?;
    CredentialStore::parse(&text).map_err(|e| format!("{}: {e}", reader.describe()))
}

async fn refresh(auth: Weak<Authenticator>, reader: KeyReader, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(auth) = auth.upgrade() else {
            return;
        };
        match load(&reader).await {
            Ok(store) => {
                if **auth.store.load() != store {
                    tracing::info!(source = %reader.describe(), users = store.len(), "AUTH credentials reloaded");
                    auth.store.store(Arc::new(store));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "AUTH credentials could not be re-read; the previous ones stay in use");
            }
        }
    }
}

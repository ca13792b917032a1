//! Postern listener: the certificates behind STARTTLS.
//!
//! A [`TlsProvider`] per listener loads `tlsCertificate` and `tlsPrivateKey` from PEM files
//! or Vault KV v2 secrets (or, with neither set, generates a self-signed certificate for the
//! hostname, once per process), checks that key and certificate match, and keeps reloading
//! them in the background: file sources when their content changes (a Kubernetes Secret's
//! symlink swap included), Vault sources every `tlsRefreshInterval`. Its
//! [`acceptor`](TlsProvider::acceptor) always presents the latest good certificate to new
//! handshakes. rustls runs with the ring provider, passed explicitly: no process-wide
//! default provider is needed.
//!
//! See `docs/tls.md` for configuration examples, rotation semantics and metrics.

mod client_ca;
mod error;
mod expiry;
mod facts;
mod key_reader;
mod metrics;
mod options;
mod pem;
mod provider;
mod reload;
mod resolver;
mod self_signed;
mod source;
mod source_file;
mod vault;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use error::{Field, TlsError};
pub use expiry::not_after_unix;
pub use facts::TlsFacts;
pub use key_reader::KeyReader;
pub use metrics::{ReloadResult, SourceKind, TlsMetrics};
pub use options::{DEFAULT_FILE_POLL_INTERVAL, DEFAULT_SA_TOKEN_FILE, TlsOptions};
pub use provider::TlsProvider;

/// The rustls crypto provider used for everything here: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

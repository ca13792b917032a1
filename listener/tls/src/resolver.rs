//! The certificate resolver behind the acceptor: always the latest good certificate.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Serves one certificate to every handshake; [`swap`](Self::swap) replaces it for the
/// handshakes that start afterwards. Sessions already established keep their keys.
pub(crate) struct Resolver {
    current: ArcSwap<CertifiedKey>,
}

impl Resolver {
    pub(crate) fn new(initial: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(initial),
        }
    }

    pub(crate) fn swap(&self, next: Arc<CertifiedKey>) {
        self.current.store(next);
    }

    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

//! One listener's TLS: the acceptor and the task that keeps its certificate fresh.

use std::fmt;
use std::sync::Arc;

use postern_config::ListenerConfig;
use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::client_ca::client_verifier;
use crate::error::{Field, TlsError};
use crate::metrics::TlsMetrics;
use crate::options::TlsOptions;
use crate::pem::{PemPair, certified_key};
use crate::reload::{Reloader, Slot};
use crate::resolver::Resolver;
use crate::source::Source;
use crate::{crypto_provider, self_signed};

/// The TLS side of one listener: hand [`acceptor`](Self::acceptor) to STARTTLS.
pub struct TlsProvider {
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    origin: String,
    reloader: Option<JoinHandle<()>>,
}

impl TlsProvider {
    /// Loads the configured sources, or the self-signed certificate for the listener's
    /// hostname when neither `tlsCertificate` nor `tlsPrivateKey` is set, and starts the
    /// background reloader. Options come from the environment ([`TlsOptions::from_env`]).
    ///
    /// Fails, with one line naming the source and the cause, when a configured source
    /// cannot be read or does not hold a matching certificate and key; it never falls back
    /// to a self-signed certificate when a source was configured. Must be called inside a
    /// Tokio runtime.
    pub async fn start(
        listener: &ListenerConfig,
        metrics: TlsMetrics,
    ) -> Result<Arc<Self>, TlsError> {
        Self::start_with(listener, metrics, TlsOptions::from_env()).await
    }

    /// [`start`](Self::start) with explicit options instead of the environment.
    pub async fn start_with(
        listener: &ListenerConfig,
        metrics: TlsMetrics,
        options: TlsOptions,
    ) -> Result<Arc<Self>, TlsError> {
        let provider = crypto_provider();
        let listen = listener.listen.to_string();
        let client_verifier = match &listener.tls_required_client_ca {
            None => None,
            Some(config) => {
                let source = Source::new(Field::ClientCa, config, &options)?;
                let pem = source.read(Field::ClientCa).await?;
                Some(client_verifier(&pem, &source.describe(), &provider)?)
            }
        };
        let (cert_config, key_config) = match (&listener.tls_certificate, &listener.tls_private_key)
        {
            (None, None) => {
                let hostname = listener.effective_hostname();
                let key = self_signed::certified_key(&hostname, &provider)?;
                metrics.served(&listen, &key.cert);
                return Ok(Arc::new(Self::with_resolver(
                    Arc::new(Resolver::new(key)),
                    format!("self-signed for {hostname}"),
                    None,
                    client_verifier,
                )?));
            }
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) | (None, Some(_)) => {
                return Err(TlsError::Unsupported(
                    "tlsCertificate and tlsPrivateKey go together; set both or neither".into(),
                ));
            }
        };
        let cert_source = Source::new(Field::Certificate, cert_config, &options)?;
        let key_source = Source::new(Field::PrivateKey, key_config, &options)?;
        let (cert_pem, key_pem) = tokio::join!(
            cert_source.read(Field::Certificate),
            key_source.read(Field::PrivateKey)
        );
        let (cert_pem, key_pem) = (cert_pem?, key_pem?);
        let cert_origin = cert_source.describe();
        let key_origin = key_source.describe();
        let key = certified_key(
            &PemPair {
                cert: &cert_pem,
                cert_origin: &cert_origin,
                key: &key_pem,
                key_origin: &key_origin,
            },
            &provider,
        )?;
        let origin = if cert_origin == key_origin {
            cert_origin
        } else {
            format!("certificate {cert_origin}, key {key_origin}")
        };
        metrics.served(&listen, &key.cert);
        let resolver = Arc::new(Resolver::new(key));
        let reloader = Reloader {
            listener: listen,
            cert: Slot::new(Field::Certificate, cert_source, cert_pem),
            key: Slot::new(Field::PrivateKey, key_source, key_pem),
            resolver: Arc::clone(&resolver),
            metrics,
            provider,
            file_poll: options.file_poll_interval,
            vault_every: listener.tls_refresh_interval.get(),
        };
        let task = tokio::spawn(reloader.run());
        Self::with_resolver(resolver, origin, Some(task), client_verifier).map(Arc::new)
    }

    /// `client_verifier`: from `tlsRequiredClientCa` (read once, at start), else no
    /// client certificate is asked for.
    fn with_resolver(
        resolver: Arc<Resolver>,
        origin: String,
        reloader: Option<JoinHandle<()>>,
        client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<Self, TlsError> {
        let builder = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Unsupported(format!("TLS server configuration: {e}")))?;
        let builder = match client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_cert_resolver(Arc::clone(&resolver) as Arc<_>);
        tracing::info!(source = %origin, "TLS certificate loaded");
        Ok(Self {
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            origin,
            reloader,
        })
    }

    /// The acceptor for STARTTLS. Every handshake gets the latest good certificate;
    /// connections already established are not affected by a reload.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Where the certificate comes from, for the startup log: paths, Vault locations, or
    /// `self-signed for HOSTNAME`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The certificate chain being served now, leaf first (DER).
    pub fn certificate_chain(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.resolver.current().cert.clone()
    }
}

impl Drop for TlsProvider {
    fn drop(&mut self) {
        if let Some(task) = self.reloader.take() {
            task.abort();
        }
    }
}

impl fmt::Debug for TlsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsProvider")
            .field("origin", &self.origin)
            .field("reloading", &self.reloader.is_some())
            .finish_non_exhaustive()
    }
}

//! Outbound TLS: the modes, and the rustls client configurations they use (ring provider,
//! as in `postern-tls`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::OutboundError;

/// How a connection to a next hop uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS, with the certificate verified against the hop's name; fails when the
    /// server does not offer STARTTLS or the certificate does not verify.
    Required,
    /// STARTTLS when the server offers it, without verifying the certificate (RFC 7435
    /// opportunistic security, like Postfix's `may`): plaintext only when STARTTLS is
    /// not offered. A refused STARTTLS or a failed handshake is an error, not a
    /// fallback. The default toward MX hosts.
    Opportunistic,
    /// TLS from the first byte (RFC 8314, port 465), certificate verified.
    Implicit,
    /// Plaintext; STARTTLS is never sent.
    None,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Required => "required",
            Self::Opportunistic => "opportunistic",
            Self::Implicit => "implicit",
            Self::None => "none",
        })
    }
}

/// The client TLS configurations, built once and shared by every connection: one that
/// verifies certificates (system roots, or only a configured CA) and one that does not
/// (opportunistic STARTTLS).
#[derive(Clone)]
pub struct TlsClients {
    verified: Arc<ClientConfig>,
    unverified: Arc<ClientConfig>,
    roots: String,
}

impl TlsClients {
    /// Verifies against the operating system's trust store (`rustls-platform-verifier`).
    pub fn system_roots() -> Result<Self, OutboundError> {
        let provider = provider();
        let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
            .map_err(|e| OutboundError::TlsSetup(format!("system trust store: {e}")))?;
        Self::build(provider, Arc::new(verifier), "system roots".into())
    }

    /// Verifies against the CA certificates in the PEM file `path` only (a private
    /// smarthost's CA); the system roots are not trusted then.
    pub fn with_ca_file(path: &Path) -> Result<Self, OutboundError> {
        let provider = provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| OutboundError::TlsSetup(format!("CA file {}: {e}", path.display())))?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(OutboundError::TlsSetup(format!(
                "CA file {}: no CA certificate in it",
                path.display()
            )));
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| OutboundError::TlsSetup(format!("CA file {}: {e}", path.display())))?;
        Self::build(provider, verifier, format!("CA file {}", path.display()))
    }

    fn build(
        provider: Arc<CryptoProvider>,
        verifier: Arc<dyn ServerCertVerifier>,
        roots: String,
    ) -> Result<Self, OutboundError> {
        let config = |verifier: Arc<dyn ServerCertVerifier>| {
            ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map(|b| {
                    Arc::new(
                        b.dangerous()
                            .with_custom_certificate_verifier(verifier)
                            .with_no_client_auth(),
                    )
                })
                .map_err(|e| OutboundError::TlsSetup(format!("TLS client: {e}")))
        };
        let unverified = Arc::new(AnyServerCertificate::new(Arc::clone(&provider)));
        Ok(Self {
            verified: config(verifier)?,
            unverified: config(unverified)?,
            roots,
        })
    }

    /// The configuration for `mode` (None for [`TlsMode::None`]).
    pub(crate) fn for_mode(&self, mode: TlsMode) -> Option<Arc<ClientConfig>> {
        match mode {
            TlsMode::Required | TlsMode::Implicit => Some(Arc::clone(&self.verified)),
            TlsMode::Opportunistic => Some(Arc::clone(&self.unverified)),
            TlsMode::None => None,
        }
    }
}

impl fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClients")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// The name a certificate is checked against: a DNS name, or an IP address for an
/// address literal.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, OutboundError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| OutboundError::TlsSetup(format!("'{host}' cannot be a TLS name: {e}")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The verifier of opportunistic TLS (RFC 7435): any certificate is accepted, but the
/// handshake's signatures are still checked with `provider`'s algorithms, so the session
/// is encrypted to whoever holds the presented key. Tests that talk TLS to a server with a
/// self-signed certificate use it too.
#[derive(Debug)]
pub struct AnyServerCertificate(Arc<CryptoProvider>);

impl AnyServerCertificate {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

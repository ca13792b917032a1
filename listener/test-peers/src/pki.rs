//! A test CA and a server certificate it signs, written as PEM files, and a rustls server
//! configuration presenting it.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A CA, one server certificate for `names`, and the CA's PEM file.
pub struct TestPki {
    /// The directory holding `ca.pem`, `server.pem` and `server.key`.
    pub dir: tempfile::TempDir,
    /// The CA certificate file, for `TlsClients::with_ca_file`.
    pub ca_file: PathBuf,
    /// The server's certificate chain (leaf first), DER.
    pub server_chain: Vec<CertificateDer<'static>>,
    /// The server certificate file (PEM), for external servers.
    pub server_cert_file: PathBuf,
    /// The server key file (PEM), for external servers.
    pub server_key_file: PathBuf,
    server_key_pem: String,
}

impl TestPki {
    /// A fresh CA and a server certificate valid for `names` (DNS names or IPs).
    pub fn new(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Postern outbound test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("a server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let server_params = CertificateParams::new(names).expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("a server certificate");

        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_file = dir.path().join("ca.pem");
        let server_cert_file = dir.path().join("server.pem");
        let server_key_file = dir.path().join("server.key");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write ca.pem");
        std::fs::write(&server_cert_file, server_cert.pem() + &ca_cert.pem())
            .expect("write server.pem");
        std::fs::write(&server_key_file, server_key.serialize_pem()).expect("write server.key");
        Self {
            server_chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            server_key_pem: server_key.serialize_pem(),
            dir,
            ca_file,
            server_cert_file,
            server_key_file,
        }
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("a key");
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(self.server_chain.clone(), key)
                .expect("a server certificate and key");
        Arc::new(config)
    }
}

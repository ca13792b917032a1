//! The default certificate: self-signed for the listener's hostname, generated once per
//! process and shared by every listener with that hostname.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::TlsError;

/// The certificate for `hostname`: an ECDSA P-256 key and a certificate whose subject CN and
/// only SAN are the hostname.
pub(crate) fn certified_key(
    hostname: &str,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<CertifiedKey>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(key) = cache.get(hostname) {
        return Ok(Arc::clone(key));
    }
    let key = generate(hostname, provider).map_err(|cause| TlsError::SelfSigned {
        hostname: hostname.to_string(),
        cause,
    })?;
    cache.insert(hostname.to_string(), Arc::clone(&key));
    Ok(key)
}

fn generate(hostname: &str, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("key generation: {e}"))?;
    let mut params = CertificateParams::new(vec![hostname.to_string()])
        .map_err(|e| format!("not usable as a certificate name: {e}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, hostname);
    params.distinguished_name = name;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| format!("signing: {e}"))?;
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

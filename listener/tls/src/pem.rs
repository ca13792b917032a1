//! PEM parsing and the certificate/key pair check.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Field, TlsError};

/// Bytes read from the two configured sources, with the names used in errors.
pub(crate) struct PemPair<'a> {
    /// The certificate chain's PEM.
    pub cert: &'a [u8],
    /// Where the chain came from (a path or a Vault description).
    pub cert_origin: &'a str,
    /// The private key's PEM.
    pub key: &'a [u8],
    /// Where the key came from.
    pub key_origin: &'a str,
}

/// Parses a PEM certificate chain: every `CERTIFICATE` block, leaf first.
pub(crate) fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {}", pem_cause(&e)))?;
    if chain.is_empty() {
        return Err(format!(
            "no certificate found; expected PEM '-----BEGIN CERTIFICATE-----' blocks{}",
            found_labels(pem)
        ));
    }
    Ok(chain)
}

/// Parses the first private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
/// SEC1 (`EC PRIVATE KEY`).
pub(crate) fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound)
            if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") =>
        {
            Err(
                "the private key is encrypted; expected an unencrypted PKCS#8, PKCS#1 or SEC1 key"
                    .into(),
            )
        }
        Err(pem::Error::NoItemsFound) => Err(format!(
            "no private key found; expected PEM 'PRIVATE KEY' (PKCS#8), 'RSA PRIVATE KEY' (PKCS#1) or 'EC PRIVATE KEY' (SEC1){}",
            found_labels(pem)
        )),
        Err(e) => Err(format!("not a PEM private key: {}", pem_cause(&e))),
    }
}

/// Parses both halves, loads the key with `provider` and checks that the key belongs to
/// the leaf certificate.
pub(crate) fn certified_key(
    pair: &PemPair<'_>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = parse_chain(pair.cert)
        .map_err(|cause| TlsError::source(Field::Certificate, pair.cert_origin, cause))?;
    let key = parse_key(pair.key)
        .map_err(|cause| TlsError::source(Field::PrivateKey, pair.key_origin, cause))?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        TlsError::source(
            Field::PrivateKey,
            pair.key_origin,
            format!("unusable private key ({e}); expected RSA, ECDSA P-256/P-384 or Ed25519"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                certificate: pair.cert_origin.to_string(),
                key: pair.key_origin.to_string(),
            })
        }
        // The ring provider always knows its public key; should another provider not,
        // the handshake itself will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(e) => Err(TlsError::source(
            Field::Certificate,
            pair.cert_origin,
            format!("not a usable X.509 certificate: {e}"),
        )),
    }
}

fn pem_cause(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "section '{}' is not closed",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed line '{}'", String::from_utf8_lossy(line))
        }
        pem::Error::Base64Decode(e) => format!("bad base64 ({e})"),
        other => other.to_string(),
    }
}

/// Names the PEM labels that were present, to help when the two files are swapped.
fn found_labels(pem: &[u8]) -> String {
    let text = String::from_utf8_lossy(pem);
    let labels: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .filter_map(|l| l.strip_suffix("-----"))
        .collect();
    if labels.is_empty() {
        " (found no PEM block)".into()
    } else {
        format!(" (found {})", labels.join(", "))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_in_the_certificate_field_is_named() {
        let err = parse_chain(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(err.contains("found PRIVATE KEY"), "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(
            parse_chain(b"garbage")
                .unwrap_err()
                .contains("no certificate")
        );
        assert!(
            parse_key(b"garbage")
                .unwrap_err()
                .contains("no private key")
        );
    }

    #[test]
    fn encrypted_keys_are_called_out() {
        let err = parse_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.contains("encrypted"), "{err}");
    }
}

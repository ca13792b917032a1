//! `tlsRequiredClientCa`: the verifier that makes a STARTTLS client present a
//! certificate issued by one of the configured CAs (rustls' `WebPkiClientVerifier`,
//! which refuses the handshake without one).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::error::{Field, TlsError};
use crate::pem::parse_chain;

/// A verifier over every CA certificate in `pem`; `origin` names the source in errors.
pub(crate) fn client_verifier(
    pem: &[u8],
    origin: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let fail = |cause: String| TlsError::source(Field::ClientCa, origin, cause);
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(pem).map_err(fail)? {
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| fail(format!("client certificate verifier: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto_provider;

    #[test]
    fn a_ca_certificate_makes_a_verifier_that_requires_a_client_certificate() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let verifier = client_verifier(ca.cert.pem().as_bytes(), "/ca.pem", &crypto_provider())
            .expect("a verifier");
        assert!(verifier.offer_client_auth());
        assert!(verifier.client_auth_mandatory());
    }

    #[test]
    fn no_certificate_in_the_source_is_an_error_naming_the_field() {
        let err = client_verifier(b"not pem", "/ca.pem", &crypto_provider()).expect_err("an error");
        let text = err.to_string();
        assert!(text.starts_with("tlsRequiredClientCa: /ca.pem: "), "{text}");
    }
}

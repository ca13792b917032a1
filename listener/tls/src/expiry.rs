//! When a served certificate stops being valid: its `notAfter`, read from the DER.

use rustls_pki_types::CertificateDer;

/// The leaf certificate's `notAfter` as seconds since the Unix epoch.
///
/// `chain` is leaf first, as rustls serves it. Fails, with the parser's reason, when the
/// chain is empty or the leaf is not a parsable X.509 certificate.
pub fn not_after_unix(chain: &[CertificateDer<'_>]) -> Result<i64, String> {
    let leaf = chain.first().ok_or("the chain holds no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    fn leaf(year: i32, month: u8, day: u8) -> CertificateDer<'static> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["mx.example.com".into()]).unwrap();
        params.not_after = date_time_ymd(year, month, day);
        CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec())
    }

    #[test]
    fn reads_the_leafs_not_after() {
        // 2031-05-17T00:00:00Z, as `date -u -d 2031-05-17 +%s` prints it.
        let chain = [leaf(2031, 5, 17), leaf(2099, 1, 1)];
        assert_eq!(not_after_unix(&chain), Ok(1_936_742_400));
    }

    #[test]
    fn refuses_an_empty_chain_and_garbage() {
        assert_eq!(
            not_after_unix(&[]),
            Err("the chain holds no certificate".into())
        );
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        let err = not_after_unix(&[garbage]).unwrap_err();
        assert!(
            err.starts_with("the leaf certificate does not parse"),
            "{err}"
        );
    }
}

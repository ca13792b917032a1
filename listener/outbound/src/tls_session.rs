//! What an outbound TLS session negotiated, for delivery records: KumoMTA's
//! `tls_protocol_version`, `tls_cipher` and `tls_peer_subject_name`.

use rustls::ClientConnection;
use x509_parser::{
    certificate::X509Certificate,
    objects::{oid_registry, oid2abbrev},
    prelude::FromDer,
};

/// The facts of an established TLS session with a next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSession {
    /// The protocol version as rustls names it (and Reception records carry it), e.g.
    /// `TLSv1_3`.
    pub protocol_version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The subject of the peer's certificate, one `attribute=value` per element in
    /// the certificate's order (e.g. `["O=Example", "CN=mx.example.net"]`), as
    /// KumoMTA logs it; `None` when the peer sent no certificate that parses.
    pub peer_subject_name: Option<Vec<String>>,
}

impl TlsSession {
    /// The facts of a connection whose handshake has completed; `None` before that.
    pub(crate) fn of(connection: &ClientConnection) -> Option<Self> {
        let protocol = connection.protocol_version()?;
        let suite = connection.negotiated_cipher_suite()?;
        let peer_subject_name = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| subject_name(leaf.as_ref()));
        Some(Self {
            protocol_version: format!("{protocol:?}"),
            cipher: format!("{:?}", suite.suite()),
            peer_subject_name,
        })
    }
}

/// The subject distinguished name of a DER certificate, one `attribute=value` per
/// attribute in the certificate's order: the attribute by its usual short name (`CN`,
/// `O`, `C`...) or its dotted OID, the value as text or, when it is not a string, as
/// `#` and hex. `None` when the bytes are not a certificate.
pub fn subject_name(der: &[u8]) -> Option<Vec<String>> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let registry = oid_registry();
    Some(
        certificate
            .subject()
            .iter_attributes()
            .map(|attribute| {
                let oid = attribute.attr_type();
                let name = oid2abbrev(oid, registry)
                    .map(str::to_owned)
                    .unwrap_or_else(|_| oid.to_id_string());
                let value = match attribute.as_str() {
                    Ok(text) => text.to_owned(),
                    Err(_) => {
                        let raw = attribute.attr_value().data;
                        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                        format!("#{hex}")
                    }
                };
                format!("{name}={value}")
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_listed_attribute_by_attribute_in_order() {
        let mut params = rcgen::CertificateParams::new(vec!["mx.example.net".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Mail");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mx.example.net");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_name(cert.der()).unwrap(),
            ["C=DE", "O=Example Mail", "CN=mx.example.net"]
        );
    }

    #[test]
    fn bytes_that_are_not_a_certificate_have_no_subject() {
        assert_eq!(subject_name(b"not a certificate"), None);
        assert_eq!(subject_name(&[]), None);
    }
}

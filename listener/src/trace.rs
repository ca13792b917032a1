//! The trace headers added to each received message: `Received:` (RFC 5321 §4.4) and
//! the supplemental header (`X-KumoRef` by default) that feedback reports bring back.

use std::net::IpAddr;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The marker key and value that identify a supplemental trace payload.
pub const MARKER_KEY: &str = "_@_";
/// The marker's value: the three characters `\_/`.
pub const MARKER_VALUE: &str = "\\_/";
/// Base64 characters per folded line of the supplemental header.
const FOLD: usize = 75;

/// What the `Received:` header records.
#[derive(Debug)]
pub struct ReceivedInfo<'a> {
    /// The EHLO/HELO name, if the client gave one.
    pub helo: Option<&'a str>,
    /// Whether the client used EHLO (ESMTP) rather than HELO (SMTP).
    pub esmtp: bool,
    /// The peer's address.
    pub peer: IpAddr,
    /// The peer's host name, when known (from an XCLIENT proxy; Postern does no
    /// reverse lookups of its own).
    pub client_name: Option<&'a str>,
    /// Our hostname.
    pub hostname: &'a str,
    /// TLS protocol and cipher, when the session is encrypted.
    pub tls: Option<(&'a str, &'a str)>,
    /// Whether the client authenticated (SMTP AUTH).
    pub authenticated: bool,
    /// The message id.
    pub id: &'a str,
    /// The recipient, named only when there is exactly one.
    pub single_recipient: Option<&'a str>,
    /// Reception time.
    pub date: DateTime<Utc>,
}

/// The `Received:` header, CRLF-terminated and folded.
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    let peer = match info.peer {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    };
    // RFC 5321 §4.4 TCP-info: the address literal, after the host name when known.
    let peer = match info.client_name {
        Some(name) => format!("{name} {peer}"),
        None => peer,
    };
    // RFC 3848: ESMTP with AUTH (over TLS, or a LOGIN an XCLIENT proxy vouched for).
    let protocol = match reception_protocol(info.esmtp, info.tls.is_some()) {
        "ESMTPS" if info.authenticated => "ESMTPSA",
        "ESMTP" if info.authenticated => "ESMTPA",
        protocol => protocol,
    };
    let tls = info
        .tls
        .map(|(version, cipher)| format!(" ({version}:{cipher})"))
        .unwrap_or_default();
    let recipient = info
        .single_recipient
        .map(|r| format!("\r\n\tfor <{r}>"))
        .unwrap_or_default();
    format!(
        "Received: from {helo} ({peer})\r\n\tby {host} (Postern) with {protocol}{tls}\r\n\tid {id}{recipient};\r\n\t{date}\r\n",
        helo = info.helo.unwrap_or("unknown"),
        host = info.hostname,
        id = info.id,
        date = info.date.to_rfc2822(),
    )
}

/// The RFC 3848 `with` protocol: `ESMTPS` after EHLO over TLS, `ESMTP` after EHLO,
/// `SMTP` after HELO.
pub fn reception_protocol(esmtp: bool, tls: bool) -> &'static str {
    match (esmtp, tls) {
        (true, true) => "ESMTPS",
        (true, false) => "ESMTP",
        (false, _) => "SMTP",
    }
}

/// The supplemental header: standard padded base64 of compact JSON with sorted keys,
/// `{"_@_":"\\_/","recipient":…}` plus each of `include_meta_names` (null when unset),
/// folded into 75-character chunks joined by CRLF TAB.
///
/// `recipient` is the message's only recipient. A message stored once for several
/// recipients has none: KumoMTA writes one copy per recipient, each naming its own;
/// Postern stores one copy for all, and naming every recipient in it would disclose
/// each one (Bcc included) to all the others, so the key is left out.
pub fn supplemental_header(
    header_name: &str,
    recipient: Option<&str>,
    include_meta_names: &[String],
    meta: &Map<String, Value>,
) -> String {
    let mut payload = Map::new();
    payload.insert(MARKER_KEY.into(), MARKER_VALUE.into());
    if let Some(recipient) = recipient {
        payload.insert("recipient".into(), Value::from(recipient));
    }
    for name in include_meta_names {
        payload.insert(name.clone(), meta.get(name).cloned().unwrap_or(Value::Null));
    }
    let json = Value::Object(payload).to_string();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    let chunks: Vec<&str> = encoded
        .as_bytes()
        .chunks(FOLD)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!("{header_name}: {}\r\n", chunks.join("\r\n\t"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_decodes_as_documented() {
        let header = supplemental_header("X-KumoRef", Some("test@example.com"), &[], &Map::new());
        assert_eq!(
            header,
            "X-KumoRef: eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoidGVzdEBleGFtcGxlLmNvbSJ9\r\n"
        );
    }

    #[test]
    fn meta_names_are_included_sorted_and_null_when_unset() {
        let mut meta = Map::new();
        meta.insert("tenant".into(), "acme".into());
        let header = supplemental_header(
            "X-Ref",
            Some("a@b.example"),
            &["tenant".into(), "campaign".into()],
            &meta,
        );
        let b64: String = header["X-Ref: ".len()..].split_whitespace().collect();
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"_@_":"\\_/","campaign":null,"recipient":"a@b.example","tenant":"acme"}"#
        );
        let mut lines = header.lines();
        assert_eq!(
            lines.next().unwrap().len(),
            "X-Ref: ".len() + 75,
            "{header}"
        );
        assert!(
            lines.all(|l| l.starts_with('\t') && l.len() <= 76),
            "{header}"
        );
        assert!(header.contains("\r\n\t"));
    }

    #[test]
    fn without_a_single_recipient_none_is_named() {
        let header = supplemental_header("X-KumoRef", None, &[], &Map::new());
        let b64 = header.trim_end().trim_start_matches("X-KumoRef: ");
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(json, br#"{"_@_":"\\_/"}"#);
    }

    #[test]
    fn received_names_protocol_tls_and_single_recipient() {
        let date = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let header = received_header(&ReceivedInfo {
            helo: Some("client.example"),
            esmtp: true,
            peer: "2001:db8::1".parse().unwrap(),
            client_name: None,
            hostname: "mx.example.com",
            tls: Some(("TLSv1_3", "TLS13_AES_256_GCM_SHA384")),
            authenticated: false,
            id: "0123",
            single_recipient: Some("u@example.com"),
            date,
        });
        assert_eq!(
            header,
            "Received: from client.example ([IPv6:2001:db8::1])\r\n\tby mx.example.com (Postern) with ESMTPS (TLSv1_3:TLS13_AES_256_GCM_SHA384)\r\n\tid 0123\r\n\tfor <u@example.com>;\r\n\tThu, 26 Nov 2026 10:00:00 +0000\r\n"
        );
    }

    #[test]
    fn received_names_a_known_client_host_before_its_address() {
        let header = received_header(&ReceivedInfo {
            helo: Some("[203.0.113.9]"),
            esmtp: true,
            peer: "203.0.113.9".parse().unwrap(),
            client_name: Some("client.example"),
            hostname: "mx.example.com",
            tls: None,
            authenticated: false,
            id: "0123",
            single_recipient: None,
            date: Utc::now(),
        });
        assert!(
            header.starts_with(
                "Received: from [203.0.113.9] (client.example [203.0.113.9])\r\n\tby mx.example.com (Postern) with ESMTP\r\n"
            ),
            "{header}"
        );
    }
}

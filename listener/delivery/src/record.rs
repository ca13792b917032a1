//! Delivery log records, with KumoMTA's field names so existing log pipelines keep working.

use chrono::{DateTime, Utc};
use postern_smtp::reply::{Enhanced, Reply};
use serde::Serialize;
use serde_json::{Map, Value};

/// The kind of a delivery record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DeliveryRecordType {
    /// The remote accepted the recipient (2xx).
    Delivery,
    /// A transient failure; the recipient is retried at `next_due`.
    TransientFailure,
    /// A permanent failure; the recipient is removed.
    Bounce,
    /// `maxAge` passed (or the next retry would fall past it); the recipient is removed.
    Expiration,
}

/// The reply a record is about: the remote's, exactly, or a synthetic one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Response {
    /// The SMTP reply code.
    pub code: u16,
    /// The enhanced status code, as `{class, subject, detail}`.
    pub enhanced_code: Option<Enhanced>,
    /// The reply text, lines joined with `\n`, without the codes.
    pub content: String,
    /// The command the reply answered, when known (`RCPT`, `.` for the end of data...).
    pub command: Option<String>,
}

impl Response {
    /// The response for a reply.
    pub fn of(reply: &Reply, command: Option<String>) -> Self {
        Self {
            code: reply.code,
            enhanced_code: reply.enhanced,
            content: reply.lines.join("\n"),
            command,
        }
    }
}

/// The remote host of an attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerAddress {
    /// The host name connected to (MX or smarthost name).
    pub name: String,
    /// Its IP address and port.
    pub addr: String,
}

/// One delivery log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// The kind of record.
    #[serde(rename = "type")]
    pub kind: DeliveryRecordType,
    /// The message id.
    pub id: String,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// The scheduled queue: the recipient domain.
    pub queue: String,
    /// The destination site: `host:port` of a smarthost, or `mx:` and the domain.
    pub site: String,
    /// Message size in octets.
    pub size: u64,
    /// The reply.
    pub response: Response,
    /// The remote host, when a connection was made.
    pub peer_address: Option<PeerAddress>,
    /// When it happened, as Unix seconds.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub timestamp: DateTime<Utc>,
    /// When the message was received, as Unix seconds.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub created: DateTime<Utc>,
    /// Attempts made so far, this one included.
    pub num_attempts: u32,
    /// On `TransientFailure`: when the next attempt is due, as Unix seconds.
    #[serde(
        with = "chrono::serde::ts_seconds_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_due: Option<DateTime<Utc>>,
    /// `ESMTP`, or `ESMTPS` when the attempt used TLS.
    pub delivery_protocol: String,
    /// The negotiated TLS version, when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    /// The negotiated TLS cipher suite, when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// The subject of the peer's certificate, one `attribute=value` per element
    /// (`["CN=mx.example.net"]`), when encrypted and the peer sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_peer_subject_name: Option<Vec<String>>,
    /// The message metadata stored at reception.
    pub meta: Map<String, Value>,
}

/// Where delivery records go (the listener's record log).
pub trait RecordSink: Send + Sync + 'static {
    /// Writes one record.
    fn write(&self, record: &DeliveryRecord);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_kumomta_s() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let record = DeliveryRecord {
            kind: DeliveryRecordType::TransientFailure,
            id: "01".into(),
            sender: "a@x".into(),
            recipient: "b@y".into(),
            queue: "y".into(),
            site: "relay:25".into(),
            size: 10,
            response: Response::of(
                &Reply {
                    code: 451,
                    enhanced: Enhanced::parse("4.3.0"),
                    lines: vec!["try".into(), "later".into()],
                },
                Some("RCPT".into()),
            ),
            peer_address: Some(PeerAddress {
                name: "relay".into(),
                addr: "127.0.0.1:25".into(),
            }),
            timestamp: at,
            created: at,
            num_attempts: 1,
            next_due: Some(at),
            delivery_protocol: "ESMTP".into(),
            tls_protocol_version: None,
            tls_cipher: None,
            tls_peer_subject_name: None,
            meta: Map::new(),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "TransientFailure", "id": "01", "sender": "a@x", "recipient": "b@y",
                "queue": "y", "site": "relay:25", "size": 10,
                "response": {"code": 451, "enhanced_code": {"class": 4, "subject": 3, "detail": 0},
                             "content": "try\nlater", "command": "RCPT"},
                "peer_address": {"name": "relay", "addr": "127.0.0.1:25"},
                "timestamp": 1_800_000_000, "created": 1_800_000_000, "num_attempts": 1,
                "next_due": 1_800_000_000, "delivery_protocol": "ESMTP", "meta": {}
            })
        );
    }

    #[test]
    fn tls_facts_have_kumomta_s_names_and_plaintext_leaves_them_out() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let mut record = DeliveryRecord {
            kind: DeliveryRecordType::Delivery,
            id: "01".into(),
            sender: "a@x".into(),
            recipient: "b@y".into(),
            queue: "y".into(),
            site: "relay:465".into(),
            size: 10,
            response: Response::of(&Reply::new(250, "2.0.0", "ok"), Some(".".into())),
            peer_address: None,
            timestamp: at,
            created: at,
            num_attempts: 1,
            next_due: None,
            delivery_protocol: "ESMTPS".into(),
            tls_protocol_version: Some("TLSv1_3".into()),
            tls_cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
            tls_peer_subject_name: Some(vec!["O=Relay".into(), "CN=relay".into()]),
            meta: Map::new(),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["tls_protocol_version"], "TLSv1_3");
        assert_eq!(json["tls_cipher"], "TLS13_AES_256_GCM_SHA384");
        assert_eq!(
            json["tls_peer_subject_name"],
            serde_json::json!(["O=Relay", "CN=relay"])
        );
        record.tls_protocol_version = None;
        record.tls_cipher = None;
        record.tls_peer_subject_name = None;
        let json = serde_json::to_value(&record).unwrap();
        for field in [
            "tls_protocol_version",
            "tls_cipher",
            "tls_peer_subject_name",
        ] {
            assert!(json.get(field).is_none(), "{json}");
        }
    }
}

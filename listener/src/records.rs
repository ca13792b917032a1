//! Log records: one JSON object per line, with KumoMTA's field names so existing
//! log pipelines keep working.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::smtp::reply::{Enhanced, Reply};

/// The kind of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RecordType {
    /// A message was received (spooled, or logged only for report domains).
    Reception,
    /// A command or message was refused with a 4xx or 5xx reply.
    Rejection,
    /// An ARF feedback report was received (in place of `Reception`).
    Feedback,
    /// One failed recipient of an RFC 3464 bounce report.
    #[serde(rename = "OOB")]
    Oob,
}

/// The reply a record is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Response {
    /// The SMTP reply code.
    pub code: u16,
    /// The enhanced status code, as `{class, subject, detail}`.
    pub enhanced_code: Option<Enhanced>,
    /// The reply text.
    pub content: String,
    /// The command that was answered, for rejections.
    pub command: Option<String>,
}

impl Response {
    /// The response for `reply`, answering `command`.
    pub fn of(reply: &Reply, command: Option<String>) -> Self {
        Self {
            code: reply.code,
            enhanced_code: reply.enhanced,
            content: reply.lines.join(" "),
            command,
        }
    }
}

/// Who sent it: the EHLO name and the peer's IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerAddress {
    /// The EHLO/HELO name ("" before EHLO).
    pub name: String,
    /// The peer's IP address.
    pub addr: String,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogRecord {
    /// The kind of record.
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The message id, when the record is about a message.
    pub id: Option<String>,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// The recipient: a string, or an array when there are several.
    pub recipient: Value,
    /// The scheduled queue: the recipient domain when the message was spooled, else "".
    pub queue: String,
    /// The destination site; always "" at reception.
    pub site: String,
    /// Message size in octets (0 for command rejections).
    pub size: u64,
    /// The reply sent.
    pub response: Response,
    /// The peer.
    pub peer_address: PeerAddress,
    /// When it happened, as Unix seconds.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub timestamp: DateTime<Utc>,
    /// Delivery attempts so far (0 at reception).
    pub num_attempts: u32,
    /// `ESMTP` or `ESMTPS` (or `SMTP` after HELO).
    pub reception_protocol: String,
    /// The listener address that received it.
    pub source_address: String,
    /// The negotiated TLS version, when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    /// The negotiated TLS cipher suite, when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// The message metadata (static listener meta plus connection facts).
    pub meta: Map<String, Value>,
    /// Whether the message was written to the spool for relaying.
    pub spooled: bool,
    /// The parsed feedback report, on `Feedback` records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_report: Option<Value>,
    /// The parsed bounce facts, on `OOB` records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oob: Option<Value>,
    /// Why a message sent to a report domain could not be parsed as a report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_parse_error: Option<String>,
    /// On a rejection: how many rejection records of this session were left out of the
    /// log since the previous one (a session that refuses too much too fast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejections_suppressed: Option<u64>,
    /// The proxy that named the client with XCLIENT (`IP:port`), when one did: the
    /// peer that really sent the commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xclient_from: Option<String>,
    /// Counted in the metrics but not written to the log (rate-limited).
    #[serde(skip)]
    pub suppressed: bool,
}

/// `recipient` as KumoMTA writes it: a string for one, an array for several.
pub fn recipient_value(recipients: &[String]) -> Value {
    match recipients {
        [one] => Value::from(one.as_str()),
        many => Value::from(many.to_vec()),
    }
}

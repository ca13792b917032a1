//! The metadata stored beside each message's bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{MessageId, SpoolError};

/// What is stored beside the bytes; serde JSON, snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The message id (also in the record header).
    pub id: MessageId,
    /// The reverse path (`MAIL FROM`), empty for the null sender.
    pub sender: String,
    /// The forward paths (`RCPT TO`), in the order given.
    pub recipients: Vec<String>,
    /// When the message was received; RFC 3339 in JSON.
    pub received_at: DateTime<Utc>,
    /// Byte length of the data. [`Spool::store`](crate::Spool::store) sets it
    /// from the data it is given.
    pub size: u64,
    /// Everything else: `meta`, `peer_address`, `ehlo`, TLS facts...
    /// Stored as top-level keys; none may be named like a field above.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The keys of the fixed fields, which `extra` must not repeat.
const RESERVED_KEYS: [&str; 5] = ["id", "sender", "recipients", "received_at", "size"];

impl Envelope {
    /// An envelope received now, with `size` 0 and no extra fields.
    pub fn new(id: MessageId, sender: impl Into<String>, recipients: Vec<String>) -> Self {
        Envelope {
            id,
            sender: sender.into(),
            recipients,
            received_at: Utc::now(),
            size: 0,
            extra: serde_json::Map::new(),
        }
    }

    /// The JSON stored in a record. Refuses an `extra` key that would clash
    /// with a fixed field (the stored JSON could not be read back).
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, SpoolError> {
        if let Some(key) = RESERVED_KEYS.iter().find(|k| self.extra.contains_key(**k)) {
            return Err(SpoolError::InvalidEnvelope {
                id: self.id,
                reason: format!("extra field {key:?} clashes with a fixed envelope field"),
            });
        }
        serde_json::to_vec(self).map_err(|e| SpoolError::InvalidEnvelope {
            id: self.id,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_flat_snake_case_rfc3339() {
        let mut env = Envelope::new(MessageId::generate(), "a@b.c", vec!["d@e.f".into()]);
        env.extra
            .insert("peer_address".into(), "192.0.2.1:1234".into());
        let json: serde_json::Value = serde_json::from_slice(&env.to_json().unwrap()).unwrap();
        assert_eq!(json["peer_address"], "192.0.2.1:1234");
        assert_eq!(json["id"], env.id.to_string());
        let at = json["received_at"].as_str().unwrap();
        assert_eq!(DateTime::parse_from_rfc3339(at).unwrap(), env.received_at);
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn clashing_extra_key_is_refused() {
        let mut env = Envelope::new(MessageId::generate(), "", vec![]);
        env.extra.insert("size".into(), 3.into());
        let err = env.to_json().unwrap_err().to_string();
        assert!(err.contains("\"size\""), "{err}");
    }
}

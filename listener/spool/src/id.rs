//! Message ids: UUIDv7 values shown as 32 lowercase hex characters.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SpoolError;

/// 32 lowercase hex chars of a UUIDv7: unique and time-ordered (lexical
/// order = time order = numeric order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u128);

/// The last id handed out by this process, to keep ids strictly increasing
/// even when the clock stands still or steps back.
static LAST_ID: Mutex<u128> = Mutex::new(0);

impl MessageId {
    /// A new id, greater than every id generated before in this process.
    pub fn generate() -> Self {
        let fresh = uuid::Uuid::now_v7().as_u128();
        let mut last = LAST_ID.lock().unwrap_or_else(PoisonError::into_inner);
        let next = if fresh > *last { fresh } else { *last + 1 };
        *last = next;
        MessageId(next)
    }

    /// The id as 16 big-endian bytes (the form stored in record headers).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id from 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        MessageId(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = SpoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if s.len() != 32 || !s.bytes().all(lower_hex) {
            return Err(SpoolError::InvalidId(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(MessageId)
            .map_err(|_| SpoolError::InvalidId(s.to_owned()))
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_ordered_and_round_trip() {
        let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
        let text = ids[0].to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<MessageId>().unwrap(), ids[0]);
        assert_eq!(MessageId::from_bytes(ids[0].to_bytes()), ids[0]);
        assert_eq!(&text[12..13], "7", "UUID version nibble");
    }

    #[test]
    fn parse_refuses_bad_text() {
        for bad in ["", "xyz", &"A".repeat(32), &"0".repeat(31), &"0".repeat(33)] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_is_a_plain_string() {
        let id = MessageId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
    }
}

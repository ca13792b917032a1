//! Delivery progress: what the delivery runner records after each attempt,
//! how it is stored (the body of a progress record), and how a message's
//! records fold into its state. Pure, no I/O.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{FileKey, FileKind, Scanned};
use crate::{Envelope, MessageId, SpoolError, record};

/// Delivery progress of one message, recorded with
/// [`Spool::record_progress`](crate::Spool::record_progress) after an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Indices into `envelope.recipients` finished by this attempt:
    /// delivered, bounced or expired. Indices finished earlier may be
    /// repeated: the stored set is the union of every record's.
    pub finished: Vec<u32>,
    /// Delivery attempts made so far (the latest record wins).
    pub attempts: u32,
    /// When the next attempt is due, for the recipients not finished
    /// (the latest record wins).
    pub next_due: Option<SystemTime>,
}

/// An incomplete message found in the spool, with its delivery state: what
/// [`Spool::queued`](crate::Spool::queued) hands the delivery runner.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    /// The envelope (its `recipients` are indexed by `finished`).
    pub envelope: Envelope,
    /// Indices into `envelope.recipients` already finished, ascending:
    /// never send to these again.
    pub finished: Vec<u32>,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due; `None`: at once.
    pub next_due: Option<SystemTime>,
}

/// The body of a progress record: JSON, snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredProgress {
    finished: Vec<u32>,
    attempts: u32,
    next_due: Option<DateTime<Utc>>,
}

/// The accumulated progress of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProgressState {
    /// Recipients finished, by index.
    pub finished: BTreeSet<u32>,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt due.
    pub next_due: Option<SystemTime>,
    /// At least one progress record was applied.
    pub recorded: bool,
}

impl ProgressState {
    /// Folds one more record in (records are applied in log order).
    pub(crate) fn apply(&mut self, progress: &Progress) {
        self.finished.extend(progress.finished.iter().copied());
        self.attempts = progress.attempts;
        self.next_due = progress.next_due;
        self.recorded = true;
    }

    /// Every one of `recipients` recipients is finished (a message without
    /// recipients is complete once any progress was recorded).
    pub(crate) fn is_complete(&self, recipients: u32) -> bool {
        self.recorded && (0..recipients).all(|i| self.finished.contains(&i))
    }

    /// The state as one cumulative record.
    pub(crate) fn as_progress(&self) -> Progress {
        Progress {
            finished: self.finished.iter().copied().collect(),
            attempts: self.attempts,
            next_due: self.next_due,
        }
    }
}

/// Checks that every index names one of `recipients` recipients.
pub(crate) fn validate(
    id: MessageId,
    progress: &Progress,
    recipients: u32,
) -> Result<(), SpoolError> {
    match progress.finished.iter().find(|&&i| i >= recipients) {
        Some(bad) => Err(SpoolError::InvalidProgress {
            id,
            reason: format!("recipient index {bad} is out of range: the message has {recipients}"),
        }),
        None => Ok(()),
    }
}

/// The JSON body of a progress record.
pub(crate) fn to_json(progress: &Progress) -> Vec<u8> {
    let stored = StoredProgress {
        finished: progress.finished.clone(),
        attempts: progress.attempts,
        next_due: progress.next_due.map(DateTime::<Utc>::from),
    };
    serde_json::to_vec(&stored).expect("progress serializes")
}

/// Parses the JSON body of a progress record.
pub(crate) fn from_json(bytes: &[u8]) -> Result<Progress, serde_json::Error> {
    let stored: StoredProgress = serde_json::from_slice(bytes)?;
    Ok(Progress {
        finished: stored.finished,
        attempts: stored.attempts,
        next_due: stored.next_due.map(SystemTime::from),
    })
}

/// The progress log, read: each message's folded state, and the corrupt
/// regions found (offset, length, reason).
#[derive(Debug, Default)]
pub(crate) struct ProgressLog {
    /// Folded state per message.
    pub states: HashMap<MessageId, ProgressState>,
    /// Regions that failed their checks.
    pub corrupt: Vec<(usize, usize, &'static str)>,
    /// Offset of a torn tail, if any.
    pub torn_at: Option<usize>,
}

/// Reads a whole progress log. Pure: the caller reads the file.
pub(crate) fn read_log(buf: &[u8]) -> ProgressLog {
    let scan = record::scan(buf, FileKind::Progress);
    let mut log = ProgressLog::default();
    let key: Option<FileKey> = scan.header.map(|(_, key)| key);
    for region in scan.regions {
        match region {
            Scanned::Record { offset, len, id } => {
                let parsed = key
                    .as_ref()
                    .and_then(|key| record::decode(key, &buf[offset..offset + len]).ok())
                    .and_then(|r| from_json(r.envelope).ok());
                match parsed {
                    Some(progress) => log.states.entry(id).or_default().apply(&progress),
                    None => log.corrupt.push((offset, len, "progress JSON unreadable")),
                }
            }
            Scanned::Corrupt {
                offset,
                len,
                reason,
            } => log.corrupt.push((offset, len, reason)),
            Scanned::TornTail { offset, .. } => log.torn_at = Some(offset),
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileKey, RecordKind};
    use std::time::Duration;

    #[test]
    fn json_round_trip_keeps_nanoseconds() {
        let due = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789);
        let progress = Progress {
            finished: vec![2, 0],
            attempts: 3,
            next_due: Some(due),
        };
        assert_eq!(from_json(&to_json(&progress)).unwrap(), progress);
        let none = Progress::default();
        assert_eq!(from_json(&to_json(&none)).unwrap(), none);
    }

    #[test]
    fn folding_unions_finished_and_keeps_the_latest_schedule() {
        let mut state = ProgressState::default();
        assert!(!state.is_complete(0), "no record yet");
        state.apply(&Progress {
            finished: vec![1],
            attempts: 1,
            next_due: Some(SystemTime::UNIX_EPOCH),
        });
        state.apply(&Progress {
            finished: vec![],
            attempts: 2,
            next_due: None,
        });
        assert_eq!(state.finished, BTreeSet::from([1]));
        assert_eq!((state.attempts, state.next_due), (2, None));
        assert!(!state.is_complete(3));
        state.apply(&Progress {
            finished: vec![0, 2, 1],
            attempts: 3,
            next_due: None,
        });
        assert!(state.is_complete(3));
        assert_eq!(state.as_progress().finished, vec![0, 1, 2]);
    }

    #[test]
    fn out_of_range_indices_are_refused() {
        let id = MessageId::generate();
        let progress = Progress {
            finished: vec![0, 3],
            ..Progress::default()
        };
        assert!(validate(id, &progress, 4).is_ok());
        let err = validate(id, &progress, 3).unwrap_err().to_string();
        assert!(err.contains("index 3"), "{err}");
    }

    #[test]
    fn a_log_folds_in_order_and_reports_damage() {
        let key = FileKey::from_bytes([3; 32]);
        let id = MessageId::generate();
        let mut buf = record::file_header(FileKind::Progress, &key).to_vec();
        for (finished, attempts) in [(vec![0], 1), (vec![1], 2)] {
            let body = to_json(&Progress {
                finished,
                attempts,
                next_due: None,
            });
            buf.extend(record::encode(&key, RecordKind::Progress, id, &body, b"").unwrap());
        }
        let bad = record::encode(&key, RecordKind::Progress, id, b"not json", b"").unwrap();
        buf.extend(bad);
        let log = read_log(&buf);
        assert_eq!(log.states[&id].finished, BTreeSet::from([0, 1]));
        assert_eq!(log.states[&id].attempts, 2);
        assert_eq!(log.corrupt.len(), 1);
        assert_eq!(log.torn_at, None);
    }
}

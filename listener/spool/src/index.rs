//! The in-memory index of the messages on disk: where each is, its delivery
//! progress, and how many incomplete messages each segment still holds (a
//! segment with none is unlinked). Pure bookkeeping, no I/O.

use std::collections::{BTreeMap, HashMap};

use crate::MessageId;
use crate::progress::{Progress, ProgressState};
use crate::record::FileKey;
use crate::segment::Location;

/// One message on disk.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Where its record is.
    pub location: Location,
    /// How many recipients its envelope has.
    pub recipients: u32,
    /// Its folded delivery progress.
    pub progress: ProgressState,
    /// Every recipient is finished (its segment may still exist).
    pub complete: bool,
}

/// One segment file that exists.
#[derive(Debug, Clone)]
pub(crate) struct SegmentEntry {
    /// The key of its records.
    pub key: FileKey,
    /// The messages in it.
    pub ids: Vec<MessageId>,
    /// How many of them are incomplete.
    pub incomplete: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What applying progress did to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Recorded; recipients remain.
    Recorded,
    /// The message is now complete; `segment` holds no incomplete message
    /// any more when `segment_done`.
    Completed {
        /// The message's segment.
        segment: u64,
        /// That segment has no incomplete message left.
        segment_done: bool,
    },
    /// The message is not in the index (already complete and reclaimed).
    Unknown,
}

/// Every message on disk, by id and by segment.
#[derive(Debug, Default)]
pub(crate) struct Index {
    messages: HashMap<MessageId, Entry>,
    segments: BTreeMap<u64, SegmentEntry>,
    incomplete: u64,
}

impl Index {
    /// Registers a segment file (before its messages).
    pub(crate) fn add_segment(&mut self, seq: u64, key: FileKey, bytes: u64) {
        self.segments.entry(seq).or_insert(SegmentEntry {
            key,
            ids: Vec::new(),
            incomplete: 0,
            bytes: 0,
        });
        self.grow_segment(seq, bytes);
    }

    /// Counts bytes appended to a segment.
    pub(crate) fn grow_segment(&mut self, seq: u64, bytes: u64) {
        if let Some(segment) = self.segments.get_mut(&seq) {
            segment.bytes += bytes;
        }
    }

    /// Adds a message record to its (registered) segment. A second record
    /// with the same id replaces the first. Returns whether it was new.
    pub(crate) fn insert(&mut self, id: MessageId, location: Location, recipients: u32) -> bool {
        let replaced = self.remove_message(id);
        let entry = Entry {
            location,
            recipients,
            progress: ProgressState::default(),
            complete: false,
        };
        self.messages.insert(id, entry);
        if let Some(segment) = self.segments.get_mut(&location.seq) {
            segment.ids.push(id);
            segment.incomplete += 1;
        }
        self.incomplete += 1;
        !replaced
    }

    /// Forgets a message; returns whether it was there.
    fn remove_message(&mut self, id: MessageId) -> bool {
        let Some(old) = self.messages.remove(&id) else {
            return false;
        };
        if let Some(segment) = self.segments.get_mut(&old.location.seq) {
            segment.ids.retain(|&other| other != id);
            if !old.complete {
                segment.incomplete -= 1;
            }
        }
        if !old.complete {
            self.incomplete -= 1;
        }
        true
    }

    /// Folds one progress record into a message.
    pub(crate) fn apply(&mut self, id: MessageId, progress: &Progress) -> Applied {
        let Some(entry) = self.messages.get_mut(&id) else {
            return Applied::Unknown;
        };
        entry.progress.apply(progress);
        if entry.complete || !entry.progress.is_complete(entry.recipients) {
            return Applied::Recorded;
        }
        entry.complete = true;
        self.incomplete -= 1;
        let seq = entry.location.seq;
        let segment_done = match self.segments.get_mut(&seq) {
            Some(segment) => {
                segment.incomplete -= 1;
                segment.incomplete == 0
            }
            None => false,
        };
        Applied::Completed {
            segment: seq,
            segment_done,
        }
    }

    /// Forgets a segment that was unlinked, and every message in it.
    pub(crate) fn remove_segment(&mut self, seq: u64) {
        if let Some(segment) = self.segments.remove(&seq) {
            for id in segment.ids {
                if let Some(entry) = self.messages.remove(&id)
                    && !entry.complete
                {
                    self.incomplete -= 1;
                }
            }
        }
    }

    /// No segment exists: nothing is on disk.
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Incomplete messages on disk.
    pub(crate) fn incomplete(&self) -> u64 {
        self.incomplete
    }

    /// An incomplete message.
    pub(crate) fn get_incomplete(&self, id: &MessageId) -> Option<&Entry> {
        self.messages.get(id).filter(|e| !e.complete)
    }

    /// A segment.
    pub(crate) fn segment(&self, seq: u64) -> Option<&SegmentEntry> {
        self.segments.get(&seq)
    }

    /// The segments with no incomplete message, oldest first.
    pub(crate) fn done_segments(&self) -> Vec<u64> {
        let done = self.segments.iter().filter(|(_, s)| s.incomplete == 0);
        done.map(|(&seq, _)| seq).collect()
    }

    /// Bytes of every segment.
    pub(crate) fn segment_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Every message with recorded progress: the content of a compacted
    /// progress log. Complete messages whose segment still exists are
    /// included, so their completion survives the compaction.
    pub(crate) fn progress_snapshot(&self) -> Vec<(MessageId, Progress)> {
        let mut out: Vec<_> = self
            .messages
            .iter()
            .filter(|(_, e)| e.progress.recorded)
            .map(|(&id, e)| (id, e.progress.as_progress()))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Every incomplete message, oldest first.
    pub(crate) fn incomplete_entries(&self) -> Vec<(MessageId, Entry)> {
        let mut out: Vec<_> = self
            .messages
            .iter()
            .filter(|(_, e)| !e.complete)
            .map(|(&id, e)| (id, e.clone()))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(seq: u64) -> Location {
        Location {
            seq,
            offset: 48,
            len: 100,
            envelope_len: 10,
        }
    }

    fn finished(indices: &[u32]) -> Progress {
        Progress {
            finished: indices.to_vec(),
            attempts: 1,
            next_due: None,
        }
    }

    #[test]
    fn a_segment_is_done_when_its_last_message_completes() {
        let mut index = Index::default();
        let key = FileKey::from_bytes([1; 32]);
        index.add_segment(1, key.clone(), 48);
        index.add_segment(2, key, 48);
        let (a, b, c) = (
            MessageId::generate(),
            MessageId::generate(),
            MessageId::generate(),
        );
        assert!(index.insert(a, location(1), 2));
        assert!(index.insert(b, location(1), 1));
        assert!(index.insert(c, location(2), 1));
        assert_eq!(index.incomplete(), 3);
        assert_eq!(index.apply(a, &finished(&[0])), Applied::Recorded);
        assert_eq!(
            index.apply(b, &finished(&[0])),
            Applied::Completed {
                segment: 1,
                segment_done: false
            }
        );
        assert_eq!(index.done_segments(), Vec::<u64>::new());
        assert_eq!(
            index.apply(a, &finished(&[1])),
            Applied::Completed {
                segment: 1,
                segment_done: true
            }
        );
        assert_eq!(index.apply(a, &finished(&[1])), Applied::Recorded);
        assert_eq!(index.done_segments(), vec![1]);
        assert_eq!(index.incomplete(), 1);
        assert_eq!(index.progress_snapshot().len(), 2);
        index.remove_segment(1);
        assert!(index.get_incomplete(&a).is_none());
        assert_eq!(index.apply(a, &finished(&[0])), Applied::Unknown);
        assert_eq!(index.incomplete(), 1);
        assert_eq!(index.incomplete_entries()[0].0, c);
        assert_eq!(index.segment_bytes(), 48);
    }

    #[test]
    fn a_duplicate_id_replaces_the_first_copy() {
        let mut index = Index::default();
        index.add_segment(1, FileKey::from_bytes([1; 32]), 0);
        let a = MessageId::generate();
        assert!(index.insert(a, location(1), 1));
        assert!(!index.insert(a, location(1), 1));
        assert_eq!(index.incomplete(), 1);
        assert_eq!(index.segment(1).unwrap().ids, vec![a]);
    }
}

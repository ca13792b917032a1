//! What the runner needs from the spool, as a small trait, with an in-memory
//! implementation for tests of the runner.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use chrono::{DateTime, Utc};
use postern_spool::MessageId;
use serde_json::{Map, Value};

/// A message waiting for delivery, as the runner knows it (its bytes stay in the store).
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedMessage {
    /// The message id.
    pub id: MessageId,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// Every recipient of the envelope, in order; progress names them by index.
    pub recipients: Vec<String>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Octets.
    pub size: u64,
    /// The metadata stored at reception (copied into the records).
    pub meta: Map<String, Value>,
    /// The index of the listener that received it (its `delivery` section applies).
    pub listener: usize,
}

/// A message found by the store's recovery, with its delivery state.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveredMessage {
    /// The message.
    pub message: QueuedMessage,
    /// Indices of recipients already finished: never attempted again.
    pub finished: Vec<u32>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due; `None`: at once.
    pub next_due: Option<DateTime<Utc>>,
}

/// The outcome of one attempt, to be made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempted {
    /// Indices of recipients finished by this attempt: delivered, bounced or expired.
    pub finished: Vec<u32>,
    /// The schedule of the message's recipients still to deliver, when some are
    /// waiting: the most attempts made and the earliest next due time.
    pub retry: Option<(u32, DateTime<Utc>)>,
}

/// A store failure, described.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The spool, as the runner uses it.
pub trait QueueStore: Send + Sync + 'static {
    /// The message's bytes, exactly as received.
    fn load(&self, id: MessageId) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Makes the outcome of an attempt durable (with group commit) before returning.
    /// A message held only in memory (`deferredSpool`) is written by the first
    /// record that does not finish it (its first transient failure, for a message to
    /// one domain); once every recipient is finished, the message is removed.
    fn record(
        &self,
        id: MessageId,
        attempted: Attempted,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a new message (a delivery status notification) durably.
    fn insert(
        &self,
        message: &QueuedMessage,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One message in a [`MemoryStore`].
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    /// The message.
    pub message: QueuedMessage,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Whether it was "written" (a durable store, or a deferred one after a `Retry`).
    pub written: bool,
    /// Indices of the recipients finished so far.
    pub finished: BTreeSet<u32>,
    /// The last retry schedule recorded.
    pub retry: Option<(u32, DateTime<Utc>)>,
}

/// An in-memory [`QueueStore`] that remembers everything, for tests.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<HashMap<MessageId, StoredMessage>>>,
}

impl MemoryStore {
    /// Adds a received message; `deferred` ones count as unwritten until their first retry.
    pub fn add(&self, message: &QueuedMessage, data: Vec<u8>, deferred: bool) {
        self.lock().insert(
            message.id,
            StoredMessage {
                message: message.clone(),
                data,
                written: !deferred,
                finished: BTreeSet::new(),
                retry: None,
            },
        );
    }

    /// The message as stored now (None once every recipient is done).
    pub fn get(&self, id: MessageId) -> Option<StoredMessage> {
        self.lock().get(&id).cloned()
    }

    /// Every message held.
    pub fn all(&self) -> Vec<StoredMessage> {
        self.lock().values().cloned().collect()
    }

    /// What a restart would find: the held messages with their schedules.
    pub fn recover(&self) -> Vec<RecoveredMessage> {
        self.lock()
            .values()
            .filter(|m| m.written)
            .map(|m| RecoveredMessage {
                message: m.message.clone(),
                finished: m.finished.iter().copied().collect(),
                attempts: m.retry.map_or(0, |r| r.0),
                next_due: m.retry.map(|r| r.1),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, StoredMessage>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl QueueStore for MemoryStore {
    async fn load(&self, id: MessageId) -> Result<Vec<u8>, StoreError> {
        self.lock()
            .get(&id)
            .map(|m| m.data.clone())
            .ok_or_else(|| StoreError(format!("message {id} not found")))
    }

    async fn record(&self, id: MessageId, attempted: Attempted) -> Result<(), StoreError> {
        let mut all = self.lock();
        let stored = all
            .get_mut(&id)
            .ok_or_else(|| StoreError(format!("message {id} not found")))?;
        stored.finished.extend(attempted.finished);
        stored.retry = attempted.retry;
        if stored.finished.len() >= stored.message.recipients.len() {
            all.remove(&id);
        } else {
            // Like the spool: progress that does not complete a held message writes it.
            stored.written = true;
        }
        Ok(())
    }

    async fn insert(&self, message: &QueuedMessage, data: Vec<u8>) -> Result<(), StoreError> {
        self.add(message, data, false);
        Ok(())
    }
}

//! What the runner needs from the spool, as a small trait, with an in-memory
//! implementation for tests of the runner.

use std::{
    collections::{BTreeMap, HashMap},
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
    /// The recipients still to deliver.
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

/// A message found by the store's recovery, with the schedule of its recipients.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveredMessage {
    /// The message, with only the recipients not yet done.
    pub message: QueuedMessage,
    /// Per recipient, the attempts made and when the next is due; a recipient
    /// missing here was never attempted and is due now.
    pub schedule: BTreeMap<String, (u32, DateTime<Utc>)>,
}

/// The outcome of an attempt for one recipient, to be made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientUpdate {
    /// Delivered, bounced or expired: never to be attempted again.
    Done {
        /// The recipient.
        recipient: String,
    },
    /// A transient failure: attempt again at `next_due`.
    Retry {
        /// The recipient.
        recipient: String,
        /// Attempts made so far.
        num_attempts: u32,
        /// When the next attempt is due.
        next_due: DateTime<Utc>,
    },
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
    /// A message held only in memory (`deferredSpool`) is written on its first
    /// `Retry`; once every recipient is done, the message is removed.
    fn record(
        &self,
        id: MessageId,
        updates: Vec<RecipientUpdate>,
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
    /// The recipients done so far.
    pub done: Vec<String>,
    /// The last retry schedule per recipient.
    pub retries: BTreeMap<String, (u32, DateTime<Utc>)>,
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
                done: Vec::new(),
                retries: BTreeMap::new(),
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
            .map(|m| {
                let mut message = m.message.clone();
                message.recipients.retain(|r| !m.done.contains(r));
                RecoveredMessage {
                    message,
                    schedule: m.retries.clone(),
                }
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

    async fn record(&self, id: MessageId, updates: Vec<RecipientUpdate>) -> Result<(), StoreError> {
        let mut all = self.lock();
        let stored = all
            .get_mut(&id)
            .ok_or_else(|| StoreError(format!("message {id} not found")))?;
        for update in updates {
            match update {
                RecipientUpdate::Done { recipient } => {
                    stored.retries.remove(&recipient);
                    stored.done.push(recipient);
                }
                RecipientUpdate::Retry {
                    recipient,
                    num_attempts,
                    next_due,
                } => {
                    stored.written = true;
                    stored.retries.insert(recipient, (num_attempts, next_due));
                }
            }
        }
        if stored
            .message
            .recipients
            .iter()
            .all(|r| stored.done.contains(r))
        {
            all.remove(&id);
        }
        Ok(())
    }

    async fn insert(&self, message: &QueuedMessage, data: Vec<u8>) -> Result<(), StoreError> {
        self.add(message, data, false);
        Ok(())
    }
}

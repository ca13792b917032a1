//! The [`QueueStore`] over `postern-spool`: loads read the message through the
//! spool's index, attempts become progress records (same writer, same group commit),
//! reports are stored like received mail.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use postern_spool::{Envelope, MessageId, Progress, Spool};
use serde_json::Value;

use crate::store::{Attempted, QueueStore, QueuedMessage, RecoveredMessage, StoreError};

/// The envelope field naming the listener that received a message.
pub const LISTENER_FIELD: &str = "listener";

/// The spool as the runner's store.
#[derive(Clone, Debug)]
pub struct SpoolStore {
    spool: Spool,
}

impl SpoolStore {
    /// Wraps an open spool.
    pub fn new(spool: Spool) -> Self {
        Self { spool }
    }

    /// Every incomplete message on disk with its delivery state, for
    /// [`Runner::resume`](crate::Runner::resume); `listener_of` maps the envelope's
    /// `listener` field to a listener index (None: that listener holds its mail).
    pub fn recovered(
        &self,
        listener_of: impl Fn(Option<&str>) -> Option<usize>,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let queued = self.spool.queued().map_err(|e| StoreError(e.to_string()))?;
        Ok(queued
            .into_iter()
            .filter_map(|q| {
                let listener =
                    listener_of(q.envelope.extra.get(LISTENER_FIELD).and_then(Value::as_str))?;
                Some(RecoveredMessage {
                    message: queued_message(q.envelope, listener),
                    finished: q.finished,
                    attempts: q.attempts,
                    next_due: q.next_due.map(DateTime::<Utc>::from),
                })
            })
            .collect())
    }
}

/// The runner's view of a stored envelope.
pub fn queued_message(envelope: Envelope, listener: usize) -> QueuedMessage {
    let meta = match envelope.extra.get("meta") {
        Some(Value::Object(meta)) => meta.clone(),
        _ => serde_json::Map::new(),
    };
    QueuedMessage {
        id: envelope.id,
        sender: envelope.sender,
        recipients: envelope.recipients,
        received_at: envelope.received_at,
        size: envelope.size,
        meta,
        listener,
    }
}

impl QueueStore for SpoolStore {
    async fn load(&self, id: MessageId) -> Result<Vec<u8>, StoreError> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.load(&id))
            .await
            .map_err(|e| StoreError(e.to_string()))?
            .map(|(_, data)| data)
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn record(&self, id: MessageId, attempted: Attempted) -> Result<(), StoreError> {
        let progress = Progress {
            finished: attempted.finished,
            attempts: attempted.retry.map_or(0, |(n, _)| n),
            next_due: attempted.retry.map(|(_, due)| SystemTime::from(due)),
        };
        self.spool
            .record_progress(&id, progress)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn insert(&self, message: &QueuedMessage, data: Vec<u8>) -> Result<(), StoreError> {
        let mut envelope = Envelope::new(
            message.id,
            message.sender.clone(),
            message.recipients.clone(),
        );
        envelope.received_at = message.received_at;
        envelope
            .extra
            .insert("meta".into(), Value::Object(message.meta.clone()));
        self.spool
            .store(envelope, data)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }
}

//! Delivery as the listener sees it: the queue runner behind one object-safe trait,
//! so that sessions, the admin endpoint and shutdown need not know its dispatcher
//! and store; and the record log as the runner's record sink.

use std::{future::Future, pin::Pin, time::Duration};

use postern_delivery::{
    DeliveryRecord, Dispatcher, QueueSnapshot, QueueStore, QueuedMessage, RecordSink, Runner,
};
use postern_spool::MessageId;
use serde_json::Value;
use tokio::sync::watch;

use crate::{log::RecordLog, session::Delivery};

/// The envelope field naming the listener that received a message (its configured
/// `listen`), so that a restart routes it with that listener's `delivery` section.
pub use postern_delivery::spool_store::LISTENER_FIELD;

/// The queue runner, type-erased.
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Queues an accepted message.
    fn submit(&self, message: QueuedMessage);
    /// The queue per destination.
    fn snapshot(&self) -> QueueSnapshot;
    /// Follows the number of queued messages.
    fn watch_depth(&self) -> watch::Receiver<u64>;
    /// Stops delivering; attempts under way may finish within `grace`.
    fn shutdown(&self, grace: Duration) -> Pin<Box<dyn Future<Output = usize> + Send + '_>>;
}

impl<D: Dispatcher, S: QueueStore> DeliveryQueue for Runner<D, S> {
    fn submit(&self, message: QueuedMessage) {
        Runner::submit(self, message);
    }

    fn snapshot(&self) -> QueueSnapshot {
        Runner::snapshot(self)
    }

    fn watch_depth(&self) -> watch::Receiver<u64> {
        Runner::watch_depth(self)
    }

    fn shutdown(&self, grace: Duration) -> Pin<Box<dyn Future<Output = usize> + Send + '_>> {
        Box::pin(Runner::shutdown(self, grace))
    }
}

/// The record log as the runner's sink, closable at shutdown (the log's writer
/// finishes only once every handle is gone, and the runner may outlive shutdown in
/// the admin endpoint's state).
#[derive(Debug)]
pub struct LogSink {
    log: std::sync::Mutex<Option<RecordLog>>,
}

impl LogSink {
    /// A sink writing to `log`.
    pub fn new(log: RecordLog) -> Self {
        Self {
            log: std::sync::Mutex::new(Some(log)),
        }
    }

    /// Drops the log handle; later records are discarded.
    pub fn close(&self) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

impl RecordSink for LogSink {
    fn write(&self, record: &DeliveryRecord) {
        if let Some(log) = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            log.write_or_queue(record);
        }
    }
}

/// The queue entry of a message the spool accepted from listener `listener`.
pub fn queued_message(delivery: &Delivery, listener: usize) -> Option<QueuedMessage> {
    let id: MessageId = delivery.id.parse().ok()?;
    let meta = match delivery.extra.get("meta") {
        Some(Value::Object(meta)) => meta.clone(),
        _ => serde_json::Map::new(),
    };
    Some(QueuedMessage {
        id,
        sender: delivery.sender.clone(),
        recipients: delivery.recipients.clone(),
        received_at: delivery.received_at,
        size: delivery.size,
        meta,
        listener,
    })
}

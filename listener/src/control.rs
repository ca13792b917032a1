//! The running process as the admin endpoint sees it: readiness with reasons,
//! the queue, and drain.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use postern_config::ListenerConfig;
use tokio::{sync::watch, time::Instant};

use crate::{
    admin::{AdminControl, QueueStatus},
    backpressure::{self, Load},
    delivery::DeliveryQueue,
};

/// Readiness, backpressure, the queue and drain of one process.
pub struct Control {
    /// The listeners (their backpressure thresholds).
    pub listeners: Vec<ListenerConfig>,
    /// The measured load.
    pub load: Arc<Load>,
    /// The queue runner.
    pub queue: Arc<dyn DeliveryQueue>,
    /// `None` while taking mail; the deadline for sessions once draining or
    /// shutting down (new connections then get 421).
    pub stop_sessions: watch::Sender<Option<Instant>>,
    /// How long sessions in a transaction may finish after drain or shutdown.
    pub grace: std::time::Duration,
    /// Set by drain.
    pub draining: AtomicBool,
}

impl Control {
    /// Stops taking mail: sessions finish their transaction within the grace period,
    /// new connections get `421 4.3.2`. Delivery goes on.
    pub fn stop_taking_mail(&self) {
        self.stop_sessions.send_if_modified(|deadline| {
            if deadline.is_some() {
                return false;
            }
            *deadline = Some(Instant::now() + self.grace);
            true
        });
    }
}

impl AdminControl for Control {
    fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            reasons.push("draining: new connections get 421; delivering what is queued".into());
        }
        let reading = self.load.read();
        for l in &self.listeners {
            if let Some(why) = backpressure::refusal(reading, &l.delivery_or_default()) {
                reasons.push(format!("listener {}: backpressure: {why}", l.listen));
            }
        }
        reasons
    }

    fn queue(&self) -> QueueStatus {
        QueueStatus {
            draining: self.draining.load(Ordering::SeqCst),
            queue: self.queue.snapshot(),
        }
    }

    fn drain(&self) -> QueueStatus {
        if !self.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("drain requested: no new mail; delivering what is queued");
        }
        self.stop_taking_mail();
        self.queue()
    }
}

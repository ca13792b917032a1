//! Postern's outbound delivery.
//!
//! Pure parts: [`classify`] (a reply or a typed error → an outcome per recipient),
//! [`schedule`] (the retry schedule as arithmetic), [`timeq`] (a timer queue that says
//! how long to sleep), [`route`] (recipient domain → queue, site and next hop) and
//! [`dsn`] (RFC 3464 reports). The [`runner`] drives them over a [`Dispatcher`] and a
//! [`QueueStore`]; [`MemoryDispatcher`] and [`MemoryStore`] stand in for SMTP and the
//! spool in tests of the runner.

pub mod classify;
pub mod dispatcher;
pub mod dsn;
mod error;
pub mod memory_dispatcher;
pub mod metrics;
pub mod record;
pub mod route;
pub mod runner;
pub mod schedule;
pub mod smtp_dispatcher;
pub mod spool_store;
pub mod store;
pub mod timeq;

pub use dispatcher::{Dispatcher, OutboundMessage, PeerInfo, RecipientResult, SendResult};
pub use error::{DispatchError, Phase};
pub use memory_dispatcher::{Delivered, MemoryDispatcher};
pub use metrics::DeliveryMetrics;
pub use record::{DeliveryRecord, DeliveryRecordType, RecordSink};
pub use route::{Destination, NextHop, Route, Router};
pub use runner::{ListenerDelivery, QueueSnapshot, Runner, SiteSnapshot};
pub use schedule::RetrySchedule;
pub use smtp_dispatcher::{SmtpConnection, SmtpDispatcher};
pub use spool_store::SpoolStore;
pub use store::{Attempted, MemoryStore, QueueStore, QueuedMessage, RecoveredMessage, StoreError};

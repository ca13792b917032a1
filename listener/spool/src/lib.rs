//! Postern listener: the durable message spool.
//!
//! Every message the listener accepts is appended to a segment log under the
//! spool directory and fsynced before [`Spool::store`] returns, so the `250`
//! reply that names its id is only sent for a message that survives a crash.
//! One writer thread appends for everybody: concurrent stores share one
//! `fdatasync` per batch (group commit).
//!
//! The on-disk format, the durability argument and the recovery rules are
//! described in `docs/spool.md` at the root of the repository.
//!
//! ```no_run
//! # async fn demo() -> Result<(), postern_spool::SpoolError> {
//! use postern_spool::{Envelope, MessageId, Spool, SpoolOptions};
//!
//! let (spool, report) = Spool::open("postern-spool".as_ref(), SpoolOptions::default())?;
//! println!("recovered {} messages", report.messages);
//! let envelope = Envelope::new(MessageId::generate(), "a@example.com", vec!["b@example.org".into()]);
//! spool.store(envelope, b"Subject: hi\r\n\r\nhello\r\n".to_vec()).await?;
//! spool.close().await?;
//! # Ok(())
//! # }
//! ```

mod envelope;
mod error;
mod id;
mod index;
mod metrics;
mod progress;
mod reader;
pub mod record;
mod recovery;
pub mod robustness;
mod segment;
mod space;
mod spool;
mod writer;

pub use envelope::Envelope;
pub use error::SpoolError;
pub use id::MessageId;
pub use metrics::SpoolMetrics;
pub use progress::{Progress, QueuedMessage};
pub use reader::{list, show};
pub use recovery::RecoveryReport;
pub use space::SpaceReport;
pub use spool::{Deferral, Spool, SpoolOptions};

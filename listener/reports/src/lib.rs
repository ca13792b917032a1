//! Postern listener: parsing of the reports that come back to a sending
//! platform.
//!
//! - [`parse_dsn`]: RFC 3464 delivery status notifications (bounces), also
//!   RFC 6533 `message/global-delivery-status`; [`DeliveryReport::oob_records`]
//!   gives the fields of the listener's `OOB` log records.
//! - [`parse_arf`]: RFC 5965 ARF feedback reports (complaints), giving the
//!   `feedback_report` of the listener's `Feedback` log record.
//! - [`supplemental_trace`]: the `X-KumoRef`-style trace header that ties a
//!   returned message to its original recipient and metadata.
//!
//! The crate is pure: bytes in, typed values out, no I/O. MIME is parsed
//! with `mail-parser`; the header-style field blocks of the
//! machine-readable parts by a small parser of its own.
//!
//! Both parsers share one contract: `Ok(None)` when the message is not a
//! report of their kind, `Err` when it claims to be one but is malformed.

mod arf;
mod dsn;
mod error;
mod fields;
mod mime;
mod trace;
mod typed;

pub use arf::{FeedbackReport, parse_arf};
pub use dsn::{
    DEFAULT_DIAGNOSTIC_CODE, DeliveryReport, DiagnosticCode, OobRecord, RecipientReport, parse_dsn,
};
pub use error::ReportError;
pub use trace::supplemental_trace;
pub use typed::{Mta, TypedAddress};

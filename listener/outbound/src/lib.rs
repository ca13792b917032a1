//! `postern-outbound`: carries messages to one next hop.
//!
//! [`MxResolver`] finds the next hops for a recipient domain (RFC 5321 §5.1 MX order,
//! implicit MX, RFC 7505 null MX) or a smarthost's addresses. [`OutboundConnection`]
//! connects to the first hop that answers (TCP with a timeout per address, TLS per
//! [`TlsMode`], AUTH only over TLS), then sends messages one after another with
//! [`OutboundConnection::send`], each giving a per-recipient [`MessageOutcome`]. The
//! SMTP conversation itself is `postern-smtp`'s pure [`client`](postern_smtp::client)
//! state machine; this crate only moves its bytes and enforces the per-phase
//! [`Timeouts`]. Failures are typed ([`OutboundError`], [`DnsError`]) and each becomes
//! one SMTP reply with [`OutboundError::to_reply`] for the delivery crate's classifier.
//!
//! See `docs/outbound.md`.

mod connection;
mod error;
mod resolve;
mod timeouts;
mod tls;
mod tls_session;

pub use connection::{ConnectOptions, OutboundConnection};
pub use error::{ConnectFailure, OutboundError};
pub use resolve::{DnsError, MxResolver, NextHop, order_mx};
pub use timeouts::Timeouts;
pub use tls::{AnyServerCertificate, TlsClients, TlsMode};
pub use tls_session::{TlsSession, subject_name};

pub use postern_smtp::client::{Envelope, Phase};
pub use postern_smtp::credentials::Credentials;
pub use postern_smtp::outcome::{MessageOutcome, RecipientOutcome, Stage};

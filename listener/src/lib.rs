//! `postern-listener`: Postern's ESMTP relay listener.
//!
//! The SMTP protocol ([`smtp`]) and the [`session`] are pure state machines; the
//! [`connection`] driver does the socket I/O; [`relay`] decides relaying, [`trace`]
//! writes the trace headers, [`received`] turns a received message into a spool entry
//! and log records; [`server`] starts and stops the whole process.

pub mod admin;
pub mod admin_client;
pub mod admission;
pub mod auth_failures;
pub mod authenticator;
pub mod backpressure;
pub mod budget;
pub mod cli;
pub mod connection;
pub mod context;
pub mod control;
pub mod credential_store;
pub mod delivery;
pub mod log;
pub mod metrics;
pub mod proxy_protocol;
pub mod received;
pub mod records;
pub mod rejection_limit;
pub mod relay;
pub mod server;
pub mod session;
pub mod trace;

/// The SMTP wire protocol, from the [`postern_smtp`] crate.
pub use postern_smtp as smtp;

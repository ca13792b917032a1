//! `postern-smtp`: the SMTP wire protocol as pure functions over bytes, both directions.
//! Nothing here does I/O. The listener parses commands and frames DATA with it
//! ([`command`], [`data`]); outbound delivery drives the [`client`] state machine,
//! parses replies with [`reply_parser`] and dot-stuffs bodies with [`dot_stuff`], over
//! the same [`reply`] and [`address`] types.

pub mod address;
pub mod capabilities;
pub mod client;
pub mod command;
pub mod credentials;
pub mod data;
pub mod dot_stuff;
pub mod invariants;
pub mod line;
pub mod outcome;
pub mod proxy_header;
pub mod reply;
pub mod reply_parser;
pub mod sasl;
pub mod xclient;

/// Longest command or body line, in octets, not counting CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

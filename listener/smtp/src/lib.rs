//! `postern-smtp`: the SMTP wire protocol as pure functions over bytes: command lines,
//! addresses, replies and the DATA framer. Nothing here does I/O. The listener parses
//! commands and frames DATA with it; outbound delivery parses replies with the same
//! [`reply`] types.

pub mod address;
pub mod command;
pub mod data;
pub mod invariants;
pub mod line;
pub mod reply;

/// Longest command or body line, in octets, not counting CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

//! Real peers on loopback for the outbound tests: a scripted SMTP server ([`peer`]);
//! the DNS server ([`dns`]), test CA ([`pki`]) and aiosmtpd smarthost come from
//! `postern-test-peers`, which the listener's tests share.
#![allow(dead_code)]

pub mod peer;

#[allow(unused_imports)]
pub use postern_test_peers::{dns, pki, require_tool};

use std::time::Duration;

use postern_outbound::{ConnectOptions, Envelope, TlsMode};
use postern_smtp::address::parse_mailbox;

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// An envelope from `from` (empty for `<>`) to `to`.
pub fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        sender: (!from.is_empty()).then(|| parse_mailbox(from).expect("a sender")),
        recipients: to
            .iter()
            .map(|r| parse_mailbox(r).expect("a recipient"))
            .collect(),
        smtputf8: false,
    }
}

/// Options for a test connection: short timeouts, the given port and TLS mode.
pub fn options(port: u16, tls: TlsMode) -> ConnectOptions {
    let mut options = ConnectOptions::new("relay.test", port, tls);
    options.timeouts = postern_outbound::Timeouts::all(WAIT);
    options
}

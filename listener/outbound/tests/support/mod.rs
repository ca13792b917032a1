//! Real peers on loopback for the outbound tests: a scripted SMTP server ([`peer`]), a
//! DNS server ([`dns`]), a test CA ([`pki`]), and finding external tools.
#![allow(dead_code)]

pub mod dns;
pub mod peer;
pub mod pki;

use std::path::PathBuf;
use std::time::Duration;

use postern_outbound::{ConnectOptions, Envelope, TlsMode};
use postern_smtp::address::parse_mailbox;

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Finds an external tool. When it is missing it reports the skip ([`postern_skip::skip`]:
/// a failure under CI) and returns `None`, so the caller can return.
pub fn require_tool(path: &str) -> Option<PathBuf> {
    let found = Some(PathBuf::from(path)).filter(|p| p.is_file());
    if found.is_none() {
        postern_skip::skip(&format!("{path} is not installed (scripts/install-deps)"));
    }
    found
}

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

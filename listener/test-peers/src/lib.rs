//! `postern-test-peers`: real peers on loopback that more than one crate's tests use.
//!
//! - [`dns`]: a DNS server on 127.0.0.1 answering from a fixed table over the real wire
//!   format (MX, A/AAAA, null MX, NXDOMAIN, SERVFAIL);
//! - [`pki`]: a test CA and a server certificate it signs, as PEM files;
//! - [`aiosmtpd`]: an SMTP smarthost (Python's aiosmtpd) that checks AUTH credentials
//!   read from files, over STARTTLS and implicit TLS.
//!
//! A peer that needs an external tool reports a missing tool with
//! [`postern_skip::skip`] (a failure under `CI`) and returns `None`.

pub mod aiosmtpd;
pub mod dns;
pub mod pki;

use std::path::PathBuf;
use std::time::Duration;

/// The longest a peer may take to start.
pub const START_WAIT: Duration = Duration::from_secs(10);

/// Finds an external tool. When it is missing it reports the skip
/// ([`postern_skip::skip`]: a failure under CI) and returns `None`, so the caller can
/// return.
pub fn require_tool(path: &str) -> Option<PathBuf> {
    let found = Some(PathBuf::from(path)).filter(|p| p.is_file());
    if found.is_none() {
        postern_skip::skip(&format!("{path} is not installed (scripts/install-deps)"));
    }
    found
}

//! Authenticated submission: SMTP AUTH PLAIN and LOGIN against password hashes, and how
//! a listener speaks TLS (STARTTLS, or implicit TLS from the first byte).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{HumanDuration, KeySource};

/// The key of a Kubernetes Secret that holds the credentials unless told otherwise.
pub const DEFAULT_CREDENTIALS_KEY: &str = "credentials";
/// Default `auth.maxFailures`.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 5;

/// How a listener speaks TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ListenerTls {
    /// Plaintext first; STARTTLS is offered (the default).
    #[default]
    Starttls,
    /// TLS from the first byte (RFC 8314 implicit TLS, e.g. port 465); the greeting
    /// comes after the handshake and STARTTLS is not offered.
    Implicit,
}

impl ListenerTls {
    /// Whether this is the default (kept out of rendered files).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// SMTP AUTH for a listener: `AUTH PLAIN` and `AUTH LOGIN`, offered and accepted only
/// over TLS, checked against argon2 or bcrypt password hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the credentials are read: a file path, a Vault source (field `vaultKey`),
    /// or (in an `EsmtpListener`) `{secretName, key}` with `key` defaulting to
    /// `credentials`. The text has one `username:hash` per line, the hash a PHC string
    /// (`$argon2id$…`) or a bcrypt hash (`$2b$…`); blank lines and `#` comments are
    /// skipped. Re-read every `refreshInterval`.
    pub credentials: KeySource,
    /// An authenticated client may relay to any domain (KumoMTA's `relay_from_authz`
    /// for every domain). When false, only domains whose `relayFromAuthz` lists the
    /// client's identity let it relay.
    #[serde(default = "yes")]
    pub relay: bool,
    /// Failed AUTH attempts allowed from one client address within `failureWindow`;
    /// past that, AUTH from that address is refused with `454 4.7.0` until the window
    /// has moved on.
    #[serde(default = "default_max_failures")]
    #[schemars(range(min = 1))]
    pub max_failures: u32,
    /// The window over which failed attempts are counted.
    #[serde(default = "default_failure_window")]
    pub failure_window: HumanDuration,
    /// How long a failed attempt waits before its `535 5.7.8`.
    #[serde(default = "default_failure_delay")]
    pub failure_delay: HumanDuration,
    /// How often the credentials are read again.
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: HumanDuration,
}

impl AuthConfig {
    /// An AUTH section with the default limits.
    pub fn new(credentials: KeySource) -> Self {
        Self {
            credentials,
            relay: true,
            max_failures: default_max_failures(),
            failure_window: default_failure_window(),
            failure_delay: default_failure_delay(),
            refresh_interval: default_refresh_interval(),
        }
    }
}

const fn yes() -> bool {
    true
}
const fn default_max_failures() -> u32 {
    DEFAULT_MAX_AUTH_FAILURES
}
const fn default_failure_window() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}
const fn default_failure_delay() -> HumanDuration {
    HumanDuration::from_secs(1)
}
const fn default_refresh_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_forms() {
        let auth: AuthConfig = serde_yaml::from_str("credentials: /etc/postern/users").unwrap();
        assert_eq!(
            auth,
            AuthConfig::new(KeySource::File {
                path: "/etc/postern/users".into()
            })
        );
        let auth: AuthConfig = serde_yaml::from_str(
            "{credentials: {secretName: users}, relay: false, maxFailures: 3}",
        )
        .unwrap();
        assert!(!auth.relay);
        assert_eq!(auth.max_failures, 3);
        assert!(serde_yaml::from_str::<AuthConfig>("{credentials: /x, password: y}").is_err());
        let tls: ListenerTls = serde_yaml::from_str("implicit").unwrap();
        assert_eq!(tls, ListenerTls::Implicit);
    }
}

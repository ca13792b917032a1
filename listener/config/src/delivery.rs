//! A listener's `delivery` section: where accepted mail goes next and how it is retried.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{HumanDuration, KeySource};

/// Default `retryInterval`: KumoMTA's 20 minutes.
pub const DEFAULT_RETRY_INTERVAL_SECS: u64 = 20 * 60;
/// Default `maxAge`: KumoMTA's 7 days.
pub const DEFAULT_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
/// Default `connectionLimit`: concurrent connections to one destination.
pub const DEFAULT_CONNECTION_LIMIT: u32 = 32;
/// Default `maxMessagesPerConnection`: KumoMTA's `max_deliveries_per_connection`.
pub const DEFAULT_MAX_MESSAGES_PER_CONNECTION: u32 = 1024;
/// Default `spoolHighWaterPercent`: MAIL gets `452 4.3.1` past this use of the spool's file system.
pub const DEFAULT_SPOOL_HIGH_WATER_PERCENT: u8 = 90;
/// Default key of the password in a Secret named by `auth.password.secretName`.
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// Where a listener's accepted mail is delivered, and the retry schedule.
///
/// Without a `smarthost`, mail goes straight to the recipient domain's MX hosts;
/// `routes` override that per recipient domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Relay every message through this host instead of the recipient domains' MX hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smarthost: Option<Smarthost>,
    /// The TCP port of MX hosts (KumoMTA's egress path `smtp_port`): 25 on the
    /// internet; another for a private network whose MX hosts listen elsewhere.
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1))]
    pub smtp_port: u16,
    /// Next hops per recipient domain, overriding `smarthost`; keys are domains or
    /// `*.`-wildcards as in `domains` (an exact key beats a wildcard).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteConfig>,
    /// Delay before the first retry after a transient failure; it doubles on each retry.
    #[serde(default = "default_retry_interval")]
    pub retry_interval: HumanDuration,
    /// Longest delay between two retries; unbounded doubling when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_interval: Option<HumanDuration>,
    /// How long a message may stay queued before it expires (an `Expiration` record).
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
    /// Concurrent connections to one destination.
    #[serde(default = "default_connection_limit")]
    #[schemars(range(min = 1))]
    pub connection_limit: u32,
    /// Messages sent over one connection before it is closed and a new one opened.
    #[serde(default = "default_max_messages_per_connection")]
    #[schemars(range(min = 1))]
    pub max_messages_per_connection: u32,
    /// `notifySender` mails an RFC 3464 report to the envelope sender when a recipient
    /// bounces or expires (never to the null sender); `none` only logs it.
    #[serde(default)]
    pub bounces: BounceMode,
    /// PEM file of CA certificates that this listener's verified outbound TLS trusts
    /// instead of the system roots (each listener uses its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Queued messages (all destinations) past which MAIL gets `452 4.3.1`; unbounded when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_queue_depth: Option<u64>,
    /// Use of the spool's file system, in percent, past which MAIL gets `452 4.3.1`.
    #[serde(default = "default_spool_high_water_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub spool_high_water_percent: u8,
}

/// The next hop for the recipient domains of one `routes` key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// Relay through this host; without it, deliver to the domain's MX hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smarthost: Option<Smarthost>,
    /// Concurrent connections to this destination (default: the section's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub connection_limit: Option<u32>,
    /// Messages per connection to this destination (default: the section's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages_per_connection: Option<u32>,
}

/// A relay host that takes all the mail of a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Smarthost {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 25; use 465 with `tls: implicit`, 587 for submission).
    #[serde(default = "default_smarthost_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// How TLS is used toward this host.
    #[serde(default)]
    pub tls: OutboundTls,
    /// SMTP AUTH (PLAIN or LOGIN), sent only over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SmarthostAuth>,
}

/// TLS toward a next hop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OutboundTls {
    /// STARTTLS must be offered and succeed, with a verified certificate; otherwise a
    /// transient failure.
    Required,
    /// STARTTLS when offered (the certificate must verify); plaintext when not offered.
    #[default]
    Opportunistic,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Never TLS.
    None,
}

/// Credentials for a smarthost.
///
/// `Debug` shows where the password comes from, never an inline Vault token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmarthostAuth {
    /// The user name.
    pub username: String,
    /// Where the password is read: a file path, a Vault source, or (in an
    /// `EsmtpListener`) `{secretName, key}` with `key` defaulting to `password`.
    /// Surrounding whitespace, such as a file's final newline, is ignored.
    pub password: KeySource,
}

impl fmt::Debug for SmarthostAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.password {
            KeySource::File { path } => format!("file {}", path.display()),
            KeySource::Vault(v) => format!("vault {}/{}#{}", v.mount, v.path, v.key),
            KeySource::Secret(s) => format!("secret {}", s.secret_name),
        };
        f.debug_struct("SmarthostAuth")
            .field("username", &self.username)
            .field("password", &source)
            .finish()
    }
}

/// What happens when a recipient bounces or expires, besides the log record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BounceMode {
    /// Only the `Bounce` or `Expiration` record.
    #[default]
    None,
    /// Also an RFC 3464 delivery status notification to the envelope sender.
    NotifySender,
}

impl DeliveryConfig {
    /// Every smarthost of this section, `(field path below the section, smarthost)`: the
    /// default one, then each route's.
    pub fn smarthosts(&self) -> impl Iterator<Item = (String, &Smarthost)> {
        let routes = self.routes.iter().filter_map(|(domain, route)| {
            let smarthost = route.smarthost.as_ref()?;
            Some((format!("routes[{domain:?}].smarthost"), smarthost))
        });
        self.smarthost
            .iter()
            .map(|smarthost| ("smarthost".to_owned(), smarthost))
            .chain(routes)
    }

    /// Every smarthost of this section, mutably, in the order of [`Self::smarthosts`].
    pub fn smarthosts_mut(&mut self) -> impl Iterator<Item = &mut Smarthost> {
        let routes = self
            .routes
            .values_mut()
            .filter_map(|route| route.smarthost.as_mut());
        self.smarthost.iter_mut().chain(routes)
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            smarthost: None,
            smtp_port: default_smtp_port(),
            routes: BTreeMap::new(),
            retry_interval: default_retry_interval(),
            max_retry_interval: None,
            max_age: default_max_age(),
            connection_limit: default_connection_limit(),
            max_messages_per_connection: default_max_messages_per_connection(),
            bounces: BounceMode::None,
            ca_file: None,
            max_queue_depth: None,
            spool_high_water_percent: default_spool_high_water_percent(),
        }
    }
}

const fn default_retry_interval() -> HumanDuration {
    HumanDuration::from_secs(DEFAULT_RETRY_INTERVAL_SECS)
}
const fn default_max_age() -> HumanDuration {
    HumanDuration::from_secs(DEFAULT_MAX_AGE_SECS)
}
const fn default_connection_limit() -> u32 {
    DEFAULT_CONNECTION_LIMIT
}
const fn default_max_messages_per_connection() -> u32 {
    DEFAULT_MAX_MESSAGES_PER_CONNECTION
}
const fn default_spool_high_water_percent() -> u8 {
    DEFAULT_SPOOL_HIGH_WATER_PERCENT
}
const fn default_smarthost_port() -> u16 {
    25
}
const fn default_smtp_port() -> u16 {
    25
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_smarthost_form() {
        let d: DeliveryConfig = serde_yaml::from_str(
            "{smarthost: {host: 127.0.0.1, port: 2527, tls: none}, retryInterval: 1s}",
        )
        .unwrap();
        let s = d.smarthost.as_ref().unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("127.0.0.1", 2527, OutboundTls::None)
        );
        assert!(s.auth.is_none());
        assert_eq!(d.retry_interval.get().as_secs(), 1);
        assert_eq!(d.max_age.get().as_secs(), 7 * 24 * 3600);
        assert_eq!(d.bounces, BounceMode::None);
    }

    #[test]
    fn defaults_are_kumomta_queue_defaults() {
        let d = DeliveryConfig::default();
        assert_eq!(d.retry_interval.get().as_secs(), 20 * 60);
        assert_eq!(d.max_retry_interval, None);
        assert_eq!(d.max_age.get().as_secs(), 7 * 24 * 3600);
        assert!(d.smarthost.is_none() && d.routes.is_empty());
        assert_eq!(serde_yaml::from_str::<DeliveryConfig>("{}").unwrap(), d);
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let auth: SmarthostAuth = serde_yaml::from_str(
            "{username: relay, password: {vaultMount: s, vaultPath: p, vaultToken: hunter2}}",
        )
        .unwrap();
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("vault s/p#key"), "{shown}");
    }

    #[test]
    fn bounce_and_tls_names() {
        let d: DeliveryConfig = serde_yaml::from_str(
            "{bounces: notifySender, smarthost: {host: relay.example, tls: implicit, port: 465}}",
        )
        .unwrap();
        assert_eq!(d.bounces, BounceMode::NotifySender);
        assert_eq!(d.smarthost.unwrap().tls, OutboundTls::Implicit);
        assert!(serde_yaml::from_str::<DeliveryConfig>("{bounces: sometimes}").is_err());
    }
}

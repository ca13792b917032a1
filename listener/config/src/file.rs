//! The listener process's YAML file: listeners, spool, log and admin endpoint.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::{DeserializeFromStr, SerializeDisplay};

use crate::{ConfigError, HumanDuration, ListenAddr, ListenerConfig, validate};

/// Default spool directory, relative to the working directory.
pub const DEFAULT_SPOOL_PATH: &str = "./postern-spool";
/// Default address of the admin HTTP endpoint (`/livez`, `/readyz`, `/metrics`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8025";
/// Default `admin.maxConnections`.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 64;
/// Default `maxDataInFlight`: 128 MiB of message data held by all sessions together.
pub const DEFAULT_MAX_DATA_IN_FLIGHT: u64 = 128 * 1024 * 1024;

/// A whole `postern-listener` configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The listeners; each item is one `start_esmtp_listener` call.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    /// Where accepted messages are stored.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Where reception and rejection records go: `stdout` or a file path.
    #[serde(default)]
    pub log: LogTarget,
    /// The admin HTTP endpoint.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How long sessions in a transaction may go on after SIGTERM; the process exits
    /// within it whatever clients do.
    #[serde(default = "default_grace")]
    pub shutdown_grace_period: HumanDuration,
    /// Octets of message data all sessions of all listeners may hold in memory
    /// together while it arrives. A session that finds it used up stops reading (TCP
    /// flow control) and, after `clientTimeout` without room, is told `421 4.3.1`.
    #[serde(default = "default_max_data_in_flight")]
    #[schemars(range(min = 1))]
    pub max_data_in_flight: u64,
    /// How delivery resolves MX hosts and smarthost names.
    #[serde(default, skip_serializing_if = "DnsConfig::is_default")]
    pub dns: DnsConfig,
}

/// The DNS resolver of delivery (KumoMTA's `kumo.dns.configure_resolver`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers (`ip:port`, or an IP for port 53) queried over UDP and TCP, in
    /// order; empty (the default): those of `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<NameServer>,
    /// How long one query may take.
    #[serde(default = "default_dns_timeout")]
    pub timeout: HumanDuration,
}

impl DnsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: default_dns_timeout(),
        }
    }
}

/// A name server's address: `ip:port` (`[v6]:port`), or an IP address for port 53.
#[derive(Clone, Copy, Debug, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub struct NameServer(pub std::net::SocketAddr);

impl FromStr for NameServer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
            return Ok(Self(addr));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| Self(std::net::SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{s:?} is not an address: expected ip:port or an IP address"))
    }
}

impl fmt::Display for NameServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for NameServer {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NameServer".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// The spool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the spool; created when missing.
    #[serde(default = "default_spool_path")]
    pub path: PathBuf,
}

/// The admin HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    /// Address serving `/livez`, `/readyz` and `/metrics`.
    #[serde(default = "default_admin_listen")]
    pub listen: ListenAddr,
    /// Concurrent admin connections; further ones are closed at once.
    #[serde(default = "default_admin_max_connections")]
    #[schemars(range(min = 1))]
    pub max_connections: u32,
    /// An admin connection is closed this long after it was accepted, whatever the
    /// client does.
    #[serde(default = "default_admin_timeout")]
    pub timeout: HumanDuration,
}

/// Where log records go.
#[derive(Clone, Debug, Default, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub enum LogTarget {
    /// Standard output, one JSON object per line.
    #[default]
    Stdout,
    /// A file, appended to, one JSON object per line.
    File(PathBuf),
}

impl Config {
    /// The embedded default: one listener on 127.0.0.1:2525 relaying from loopback,
    /// spool in `./postern-spool`, logs to stdout, admin on 127.0.0.1:8025.
    pub fn embedded_default() -> Self {
        serde_yaml::from_str("{}").expect("the empty config takes every default")
    }

    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = match e.path().to_string() {
                root if root == "." || root == "?" => "config".to_owned(),
                field => field,
            };
            let message = without_path_prefix(&e.into_inner().to_string(), &field);
            ConfigError::Parse { field, message }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot: unique listen addresses, domain keys, TLS pairs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::invalid(
                "listeners",
                "is empty; expected at least one listener",
            ));
        }
        for (field, value) in [
            ("maxDataInFlight", self.max_data_in_flight),
            (
                "admin.maxConnections",
                u64::from(self.admin.max_connections),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(
                    field,
                    "'0' is not allowed; expected at least 1",
                ));
            }
        }
        validate::validate_listeners(&self.listeners, "listeners", validate::Context::File)
    }
}

/// serde_yaml starts its messages with the path it knows (`listeners[0].relayHosts: …`);
/// the field is already named in front, so that prefix goes.
fn without_path_prefix(message: &str, field: &str) -> String {
    match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') && field.starts_with(prefix) => {
            rest.to_owned()
        }
        _ => message.to_owned(),
    }
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File(path) => path.display().fmt(f),
        }
    }
}

impl FromStr for LogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("is empty; expected 'stdout' or a file path".into()),
            "stdout" | "-" => Ok(Self::Stdout),
            path => Ok(Self::File(path.into())),
        }
    }
}

impl JsonSchema for LogTarget {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LogTarget".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "'stdout' or the path of a file to append JSON lines to.",
            "minLength": 1,
        })
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            path: default_spool_path(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            max_connections: default_admin_max_connections(),
            timeout: default_admin_timeout(),
        }
    }
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig::default()]
}
fn default_spool_path() -> PathBuf {
    DEFAULT_SPOOL_PATH.into()
}
fn default_admin_listen() -> ListenAddr {
    DEFAULT_ADMIN_LISTEN
        .parse()
        .expect("the default admin address parses")
}
const fn default_admin_max_connections() -> u32 {
    DEFAULT_ADMIN_MAX_CONNECTIONS
}
const fn default_admin_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
const fn default_max_data_in_flight() -> u64 {
    DEFAULT_MAX_DATA_IN_FLIGHT
}
const fn default_dns_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
const fn default_grace() -> HumanDuration {
    HumanDuration::from_secs(30)
}

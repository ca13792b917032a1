//! One listener: the parameters of one `kumo.start_esmtp_listener` call.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AuthConfig, CidrMap, DeliveryConfig, HumanDuration, IpNetwork, KeySource, ListenAddr,
    ListenerOverrides, ListenerTls,
};

/// Default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2525";
/// Default `banner` text, shown after the hostname in the 220 greeting.
pub const DEFAULT_BANNER: &str = "Postern ESMTP";
/// Default `maxMessageSize`: 20 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 20 * 1024 * 1024;
/// Default supplemental trace header name.
pub const DEFAULT_HEADER_NAME: &str = "X-KumoRef";
/// Default `maxConnections` (KumoMTA's): about half the ports of one address.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 32_768;
/// Default `lineLengthHardLimit`: RFC 5321's 998 octets, not counting CRLF.
pub const DEFAULT_LINE_LENGTH_HARD_LIMIT: u32 = 998;

/// One ESMTP listener. Field names are the seed's parameters in camelCase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerConfig {
    /// Postfix's XCLIENT extension: a peer in `xclientFrom` (a trusted proxy or content
    /// filter) may tell the real client's address, name, HELO and login, which then
    /// stand for the client everywhere (relay rules, trace headers, records). Off by
    /// default; on, it needs `xclientFrom`.
    #[serde(default)]
    pub allow_xclient: bool,
    /// SMTP AUTH PLAIN and LOGIN over TLS against password hashes; no AUTH when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Text after the hostname in the 220 greeting; do not include a hostname.
    #[serde(default = "default_banner")]
    pub banner: String,
    /// How long to wait for data from the client (at a command or inside DATA) before `421 4.4.2`.
    #[serde(default = "default_client_timeout")]
    pub client_timeout: HumanDuration,
    /// The whole of one command line must arrive within this, however the client
    /// trickles it (each read still has `clientTimeout`); then `421 4.4.2`.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: HumanDuration,
    /// The whole message data, from the 354 to the final dot, must arrive within this;
    /// then `421 4.4.2`.
    #[serde(default = "default_data_timeout")]
    pub data_timeout: HumanDuration,
    /// Upper bound on the work after the final dot (trace headers, spool write); past
    /// it the client gets `451 4.4.5` instead of 250 (KumoMTA's `data_processing_timeout`).
    #[serde(default = "default_data_processing_timeout")]
    pub data_processing_timeout: HumanDuration,
    /// Acknowledge messages after holding them in memory only, without a disk write.
    /// DANGER: messages are lost if the process dies before they are written.
    #[serde(default)]
    pub deferred_spool: bool,
    /// Where accepted mail is delivered and how it is retried; `{}` delivers straight to
    /// the recipient domains' MX hosts. Without this section accepted mail is held in
    /// the spool and not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryConfig>,
    /// Per-domain relay and report rules; keys are domains or `*.`-wildcards.
    #[serde(default)]
    pub domains: BTreeMap<String, DomainConfig>,
    /// Hostname for the banner, EHLO and Received headers; the machine's hostname when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// What to do with a bare CR or LF in message data: `Deny` (refuse the message
    /// with `552 5.6.0`), `Allow` (keep it as is) or `Fix` (turn it into CRLF). Only
    /// CRLF `.` CRLF ever ends the data, whatever this says.
    #[serde(default)]
    pub invalid_line_endings: InvalidLineEndings,
    /// Longest command or message line, in octets without CRLF; longer lines get
    /// `500 5.5.2`.
    #[serde(default = "default_line_length_hard_limit")]
    #[schemars(range(min = 1))]
    pub line_length_hard_limit: u32,
    /// Address to bind: `IP:PORT`, `[IPv6]:PORT` or `0:PORT`.
    #[serde(default = "default_listen")]
    pub listen: ListenAddr,
    /// Concurrent connections this listener serves; one more is told
    /// `421 4.3.2 {hostname} too many concurrent sessions. Try later` and closed.
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = 1))]
    pub max_connections: u32,
    /// MAIL FROM commands allowed on one connection; further ones get a transient failure.
    #[serde(default = "default_max_messages_per_connection")]
    #[schemars(range(min = 1))]
    pub max_messages_per_connection: u32,
    /// RCPT TO commands allowed in one transaction; further ones get `452 4.5.3`.
    #[serde(default = "default_max_recipients_per_message")]
    #[schemars(range(min = 1))]
    pub max_recipients_per_message: u32,
    /// Largest message accepted, in bytes; advertised with SIZE.
    #[serde(default = "default_max_message_size")]
    #[schemars(range(min = 1))]
    pub max_message_size: u64,
    /// Static metadata merged into every message received on this listener.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// The load balancers (IPs or CIDR blocks) allowed to connect when
    /// `requireProxyProtocol` is on; a connection from any other peer is closed without
    /// a banner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_protocol_from: Vec<IpNetwork>,
    /// Parameters for clients from some networks: keys are client IPs or CIDR blocks,
    /// values override this listener's parameters (the most specific block applies).
    #[serde(default, skip_serializing_if = "CidrMap::is_empty")]
    pub peer: CidrMap<ListenerOverrides>,
    /// Peers (IPs or CIDR blocks) that may relay to any domain.
    #[serde(default = "default_relay_hosts")]
    pub relay_hosts: Vec<IpNetwork>,
    /// `starttls` (plaintext, STARTTLS offered) or `implicit` (TLS from the first byte,
    /// as on port 465).
    #[serde(default, skip_serializing_if = "ListenerTls::is_default")]
    pub tls: ListenerTls,
    /// Every connection must begin with a PROXY protocol header (version 1 or 2) from a
    /// peer in `proxyProtocolFrom`; the client address in it is the one relay rules,
    /// trace headers, records and metrics use. A missing or malformed header closes the
    /// connection without a banner.
    #[serde(default)]
    pub require_proxy_protocol: bool,
    /// Certificate chain for STARTTLS; a self-signed certificate when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<KeySource>,
    /// Private key for STARTTLS; a self-signed certificate when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_private_key: Option<KeySource>,
    /// CA certificates (PEM) that a client's certificate must chain to: the STARTTLS
    /// handshake fails without such a certificate. Unset: no client certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_required_client_ca: Option<KeySource>,
    /// The STARTTLS handshake must finish within this, else the connection is closed.
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout: HumanDuration,
    /// How often Vault sources are read again (files are re-read when they change).
    #[serde(default = "default_tls_refresh_interval")]
    pub tls_refresh_interval: HumanDuration,
    /// The `Received` and supplemental trace headers.
    #[serde(default)]
    pub trace_headers: TraceHeaders,
    /// Parameters for connections that arrived on some local addresses: keys are local
    /// IPs or CIDR blocks, values override this listener's parameters, after `peer`'s.
    #[serde(default, skip_serializing_if = "CidrMap::is_empty")]
    pub via: CidrMap<ListenerOverrides>,
    /// A reply must be taken by the client within this; a client that sends and never
    /// reads is dropped.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: HumanDuration,
    /// The peers (IPs or CIDR blocks) that may use XCLIENT when `allowXclient` is on;
    /// every other peer is told `550 5.7.0` and is not offered it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xclient_from: Vec<IpNetwork>,
}

/// KumoMTA's `invalid_line_endings`: what to do with a bare CR or LF in message data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InvalidLineEndings {
    /// Refuse the message with `552 5.6.0` (the default).
    #[default]
    Deny,
    /// Accept the message with its line endings as they came.
    Allow,
    /// Accept the message with every bare CR or LF turned into CRLF.
    Fix,
}

/// Relay and report rules for one recipient (or sender) domain.
///
/// An exact key wins over a wildcard, so an entry with every value `false` excludes a
/// domain from a wildcard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainConfig {
    /// Anyone may relay mail addressed to this domain.
    #[serde(default)]
    pub relay_to: bool,
    /// Peers in these networks may relay to anywhere when the sender's domain is this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay_from: Vec<IpNetwork>,
    /// Clients authenticated (SMTP AUTH) as one of these identities may relay to
    /// anywhere when the sender's domain is this one (KumoMTA's `relay_from_authz`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay_from_authz: Vec<String>,
    /// Accept and log RFC 3464 bounce reports addressed to this domain.
    #[serde(default)]
    pub log_oob: bool,
    /// Accept and log RFC 5965 feedback reports addressed to this domain.
    #[serde(default)]
    pub log_arf: bool,
}

/// The trace headers added to each received message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceHeaders {
    /// Add the standard `Received:` header.
    #[serde(default = "yes")]
    pub received_header: bool,
    /// Add the supplemental header that ties feedback reports to the original mailing.
    #[serde(default = "yes")]
    pub supplemental_header: bool,
    /// Name of the supplemental header.
    #[serde(default = "default_header_name")]
    pub header_name: String,
    /// Metadata fields copied into the supplemental header (base64, not encrypted: public).
    #[serde(default)]
    pub include_meta_names: Vec<String>,
}

impl Default for TraceHeaders {
    fn default() -> Self {
        Self {
            received_header: true,
            supplemental_header: true,
            header_name: default_header_name(),
            include_meta_names: Vec::new(),
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            allow_xclient: false,
            auth: None,
            banner: default_banner(),
            client_timeout: default_client_timeout(),
            command_timeout: default_command_timeout(),
            data_timeout: default_data_timeout(),
            data_processing_timeout: default_data_processing_timeout(),
            deferred_spool: false,
            delivery: None,
            domains: BTreeMap::new(),
            hostname: None,
            invalid_line_endings: InvalidLineEndings::Deny,
            line_length_hard_limit: default_line_length_hard_limit(),
            listen: default_listen(),
            max_connections: default_max_connections(),
            max_messages_per_connection: default_max_messages_per_connection(),
            max_recipients_per_message: default_max_recipients_per_message(),
            max_message_size: default_max_message_size(),
            meta: BTreeMap::new(),
            proxy_protocol_from: Vec::new(),
            peer: CidrMap::default(),
            relay_hosts: default_relay_hosts(),
            tls: ListenerTls::default(),
            require_proxy_protocol: false,
            tls_certificate: None,
            tls_private_key: None,
            tls_required_client_ca: None,
            tls_handshake_timeout: default_tls_handshake_timeout(),
            tls_refresh_interval: default_tls_refresh_interval(),
            trace_headers: TraceHeaders::default(),
            via: CidrMap::default(),
            write_timeout: default_write_timeout(),
            xclient_from: Vec::new(),
        }
    }
}

impl ListenerConfig {
    /// The `delivery` section, or its defaults (for the backpressure thresholds of a
    /// listener that holds its mail).
    pub fn delivery_or_default(&self) -> std::borrow::Cow<'_, DeliveryConfig> {
        match &self.delivery {
            Some(delivery) => std::borrow::Cow::Borrowed(delivery),
            None => std::borrow::Cow::Owned(DeliveryConfig::default()),
        }
    }

    /// The configured hostname, else this machine's.
    pub fn effective_hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }
}

const fn yes() -> bool {
    true
}
fn default_banner() -> String {
    DEFAULT_BANNER.into()
}
const fn default_client_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
const fn default_command_timeout() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}
const fn default_data_timeout() -> HumanDuration {
    HumanDuration::from_secs(10 * 60)
}
const fn default_data_processing_timeout() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}
const fn default_line_length_hard_limit() -> u32 {
    DEFAULT_LINE_LENGTH_HARD_LIMIT
}
const fn default_max_connections() -> u32 {
    DEFAULT_MAX_CONNECTIONS
}
const fn default_tls_handshake_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
const fn default_write_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_listen() -> ListenAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("the default listen address parses")
}
const fn default_max_messages_per_connection() -> u32 {
    10_000
}
const fn default_max_recipients_per_message() -> u32 {
    1024
}
const fn default_max_message_size() -> u64 {
    DEFAULT_MAX_MESSAGE_SIZE
}
fn default_relay_hosts() -> Vec<IpNetwork> {
    ["127.0.0.1", "::1"]
        .map(|h| h.parse().expect("default relay hosts parse"))
        .to_vec()
}
const fn default_tls_refresh_interval() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_header_name() -> String {
    DEFAULT_HEADER_NAME.into()
}

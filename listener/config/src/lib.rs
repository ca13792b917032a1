//! Postern's listener configuration.
//!
//! One YAML file configures a `postern-listener` process; its `listeners` items are the
//! parameters of KumoMTA's `kumo.start_esmtp_listener`, in camelCase. The same
//! [`ListenerConfig`] type is embedded in the operator's `EsmtpListener` CRD, so the file
//! format and the Kubernetes API cannot drift apart.

mod auth;
mod delivery;
mod domain_map;
mod duration;
mod error;
mod file;
mod invariants;
mod key_source;
mod listener;
mod net;
mod overlay;
mod validate;

pub use auth::{AuthConfig, DEFAULT_CREDENTIALS_KEY, DEFAULT_MAX_AUTH_FAILURES, ListenerTls};
pub use delivery::{
    BounceMode, DEFAULT_CONNECTION_LIMIT, DEFAULT_MAX_AGE_SECS,
    DEFAULT_MAX_MESSAGES_PER_CONNECTION, DEFAULT_PASSWORD_KEY, DEFAULT_RETRY_INTERVAL_SECS,
    DEFAULT_SPOOL_HIGH_WATER_PERCENT, DeliveryConfig, OutboundTls, RouteConfig, Smarthost,
    SmarthostAuth,
};
pub use domain_map::DomainMap;
pub use duration::HumanDuration;
pub use error::ConfigError;
pub use file::{
    AdminConfig, Config, DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_MAX_CONNECTIONS,
    DEFAULT_MAX_DATA_IN_FLIGHT, DEFAULT_SPOOL_PATH, DnsConfig, LogTarget, NameServer, SpoolConfig,
};
pub use invariants::check_loader_input;
pub use key_source::{
    DEFAULT_VAULT_AUTH_MOUNT, DEFAULT_VAULT_KEY, KeySource, KeySourceFields, SecretKeyRef,
    SecretSource, VaultAuth, VaultSource,
};
pub use listener::{
    DEFAULT_BANNER, DEFAULT_HEADER_NAME, DEFAULT_LINE_LENGTH_HARD_LIMIT, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE_SIZE, DomainConfig, InvalidLineEndings,
    ListenerConfig, TraceHeaders,
};
pub use net::{IpNetwork, ListenAddr};
pub use overlay::{CidrMap, ListenerOverrides};
pub use validate::{Context, validate_listeners};

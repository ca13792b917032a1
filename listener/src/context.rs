//! What every session of one listener shares.

use postern_config::ListenerConfig;

use crate::relay::RelayPolicy;

/// A listener's configuration with its derived, ready-to-use parts.
#[derive(Debug)]
pub struct ListenerContext {
    /// The listener's parameters.
    pub config: ListenerConfig,
    /// The hostname for the banner, EHLO and trace headers.
    pub hostname: String,
    /// The relay rules.
    pub policy: RelayPolicy,
}

impl ListenerContext {
    /// Derives the context of one listener.
    pub fn new(config: ListenerConfig) -> Self {
        Self {
            hostname: config.effective_hostname(),
            policy: RelayPolicy::new(&config),
            config,
        }
    }
}

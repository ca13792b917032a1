//! What every session of one listener shares.

use std::sync::Arc;

use postern_config::ListenerConfig;

use crate::{backpressure::Load, relay::RelayPolicy};

/// A listener's configuration with its derived, ready-to-use parts.
#[derive(Debug)]
pub struct ListenerContext {
    /// The listener's parameters.
    pub config: ListenerConfig,
    /// The hostname for the banner, EHLO and trace headers.
    pub hostname: String,
    /// The relay rules.
    pub policy: RelayPolicy,
    /// The process's load, for backpressure.
    pub load: Arc<Load>,
}

impl ListenerContext {
    /// Derives the context of one listener, with a load of its own.
    pub fn new(config: ListenerConfig) -> Self {
        Self::with_load(config, Arc::default())
    }

    /// Derives the context of one listener sharing the process's `load`.
    pub fn with_load(config: ListenerConfig, load: Arc<Load>) -> Self {
        Self {
            hostname: config.effective_hostname(),
            policy: RelayPolicy::new(&config),
            config,
            load,
        }
    }

    /// Why new mail must be refused now (backpressure), if it must.
    pub fn refusal(&self) -> Option<String> {
        crate::backpressure::refusal(self.load.read(), &self.config.delivery_or_default())
    }
}

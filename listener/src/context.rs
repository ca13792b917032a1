//! What every session of one listener shares.

use std::{net::IpAddr, sync::Arc};

use postern_config::ListenerConfig;

use crate::{authenticator::Authenticator, backpressure::Load, relay::RelayPolicy};

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
    /// SMTP AUTH, when the listener has an `auth` section.
    pub auth: Option<Arc<Authenticator>>,
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
            auth: None,
        }
    }

    /// This context with AUTH served by `auth`.
    pub fn with_auth(mut self, auth: Option<Arc<Authenticator>>) -> Self {
        self.auth = auth;
        self
    }

    /// The context of one connection from `peer` to `local`: this one, or, when a
    /// `peer` or `via` entry applies, one derived from the overridden parameters that
    /// shares this one's load and AUTH.
    pub fn for_connection(self: &Arc<Self>, peer: IpAddr, local: IpAddr) -> Arc<Self> {
        match self.config.for_connection(peer, local) {
            std::borrow::Cow::Borrowed(_) => Arc::clone(self),
            std::borrow::Cow::Owned(config) => Arc::new(
                Self::with_load(config, Arc::clone(&self.load)).with_auth(self.auth.clone()),
            ),
        }
    }

    /// Why new mail must be refused now (backpressure), if it must.
    pub fn refusal(&self) -> Option<String> {
        crate::backpressure::refusal(self.load.read(), &self.config.delivery_or_default())
    }
}

//! Knobs that are not part of the listener's configuration: environment fallbacks and
//! intervals that tests shorten.

use std::path::PathBuf;
use std::time::Duration;

/// Where the pod's service-account token is mounted.
pub const DEFAULT_SA_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// How often file sources are checked for a change.
pub const DEFAULT_FILE_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Process-level settings for [`TlsProvider::start_with`](crate::TlsProvider::start_with).
///
/// [`TlsOptions::from_env`] (what [`TlsProvider::start`](crate::TlsProvider::start) uses)
/// reads `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_CACERT` and `POSTERN_SA_TOKEN_FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// How often file sources are re-read and compared with what is being served.
    pub file_poll_interval: Duration,
    /// The service-account token presented to Vault's Kubernetes auth method
    /// (`$POSTERN_SA_TOKEN_FILE`, else [`DEFAULT_SA_TOKEN_FILE`]).
    pub service_account_token_file: PathBuf,
    /// Vault's address when a source has no `vaultAddress` (`$VAULT_ADDR`).
    pub vault_addr: Option<String>,
    /// The token when a source names no other authentication (`$VAULT_TOKEN`).
    pub vault_token: Option<String>,
    /// A PEM bundle of extra roots trusted for `https://` Vault addresses (`$VAULT_CACERT`).
    pub vault_ca_cert: Option<PathBuf>,
}

impl TlsOptions {
    /// Defaults, with the environment variables above applied.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            file_poll_interval: DEFAULT_FILE_POLL_INTERVAL,
            service_account_token_file: var("POSTERN_SA_TOKEN_FILE")
                .map_or_else(|| PathBuf::from(DEFAULT_SA_TOKEN_FILE), PathBuf::from),
            vault_addr: var("VAULT_ADDR"),
            vault_token: var("VAULT_TOKEN"),
            vault_ca_cert: var("VAULT_CACERT").map(PathBuf::from),
        }
    }
}

impl Default for TlsOptions {
    /// The built-in defaults, ignoring the environment.
    fn default() -> Self {
        Self {
            file_poll_interval: DEFAULT_FILE_POLL_INTERVAL,
            service_account_token_file: PathBuf::from(DEFAULT_SA_TOKEN_FILE),
            vault_addr: None,
            vault_token: None,
            vault_ca_cert: None,
        }
    }
}

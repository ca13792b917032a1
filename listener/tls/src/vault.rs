//! A PEM read from a Vault (or OpenBao) KV version 2 secret.
//!
//! Requests go through `vaultrs`, but on a `reqwest` client that this module builds with
//! rustls and the ring provider: `vaultrs`' own constructor would need either aws-lc-rs or a
//! process-wide default provider, and this crate wants neither.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::{VaultAuth, VaultSource};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::error::{io_cause, one_line, strip_os_error};
use crate::options::TlsOptions;

/// How long one Vault request may take before the read fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A configured Vault source, ready to be read again and again.
pub(crate) struct VaultReader {
    source: VaultSource,
    address: String,
    auth: Auth,
    http: reqwest::Client,
    settings: VaultClientSettings,
    /// A token obtained with the Kubernetes auth method, reused until two thirds of its
    /// lease have passed.
    login: Mutex<Option<Login>>,
}

enum Auth {
    Token(String),
    TokenFile(PathBuf),
    Kubernetes {
        role: String,
        mount: String,
        jwt_file: PathBuf,
    },
}

struct Login {
    token: String,
    renew_at: Option<Instant>,
}

impl VaultReader {
    /// Resolves the address and the authentication method; fails with the cause alone (the
    /// caller adds the field and [`describe_unresolved`]).
    pub(crate) fn new(source: &VaultSource, options: &TlsOptions) -> Result<Self, String> {
        let address = source
            .address
            .clone()
            .or_else(|| options.vault_addr.clone())
            .filter(|a| !a.trim().is_empty())
            .ok_or("no Vault address: set vaultAddress or $VAULT_ADDR")?;
        let address = address.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&address)
            .map_err(|e| format!("Vault address '{address}' is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "Vault address '{address}' must start with http:// or https://"
            ));
        }
        let auth = match &source.auth {
            VaultAuth::Token(t) => Auth::Token(t.clone()),
            VaultAuth::TokenFile(p) => Auth::TokenFile(p.clone()),
            VaultAuth::Environment => Auth::Token(
                options
                    .vault_token
                    .clone()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or(
                        "no Vault token: set vaultToken, vaultTokenFile or vaultRole, or $VAULT_TOKEN",
                    )?,
            ),
            VaultAuth::Kubernetes { role, mount } => Auth::Kubernetes {
                role: role.clone(),
                mount: mount.clone(),
                jwt_file: options.service_account_token_file.clone(),
            },
            VaultAuth::TokenSecret(s) => {
                return Err(format!(
                    "vaultTokenSecret {}/{} is resolved by the operator to vaultTokenFile; it cannot be read here",
                    s.name, s.key
                ));
            }
        };
        let settings = VaultClientSettingsBuilder::default()
            .address(&address)
            .token("")
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .timeout(Some(REQUEST_TIMEOUT))
            .namespace(None)
            .build()
            .map_err(|e| format!("Vault client settings: {e}"))?;
        Ok(Self {
            source: source.clone(),
            address,
            auth,
            http: http_client(options)?,
            settings,
            login: Mutex::new(None),
        })
    }

    /// `vault MOUNT/PATH at ADDRESS`, plus the field when it is not the default `key`.
    pub(crate) fn describe(&self) -> String {
        format!("{} at {}", describe_unresolved(&self.source), self.address)
    }

    /// Reads the secret and returns the PEM held in its field.
    pub(crate) async fn read(&self) -> Result<Vec<u8>, String> {
        let token = self.token().await?;
        let data = match self.read_secret(&token).await {
            // A cached login token may have been revoked: log in again, once.
            Err(ClientError::APIError { code: 403, .. }) if self.uses_login() => {
                *self.login.lock().await = None;
                let token = self.token().await?;
                self.read_secret(&token).await
            }
            other => other,
        }
        .map_err(|e| {
            api_cause(
                &e,
                &format!("{}/data/{}", self.source.mount, self.source.path),
            )
        })?;
        match data.get(&self.source.key) {
            Some(Value::String(pem)) if !pem.trim().is_empty() => Ok(pem.clone().into_bytes()),
            Some(Value::String(_)) => Err(format!("field '{}' is empty", self.source.key)),
            Some(_) => Err(format!("field '{}' is not a string", self.source.key)),
            None => {
                let fields: Vec<&str> = data.keys().map(String::as_str).collect();
                Err(format!(
                    "the secret has no field '{}' (it has: {}); set vaultKey",
                    self.source.key,
                    if fields.is_empty() {
                        "none".to_string()
                    } else {
                        fields.join(", ")
                    }
                ))
            }
        }
    }

    fn uses_login(&self) -> bool {
        matches!(self.auth, Auth::Kubernetes { .. })
    }

    async fn read_secret(&self, token: &str) -> Result<Map<String, Value>, ClientError> {
        let client = self.client(token);
        vaultrs::kv2::read(&client, &self.source.mount, &self.source.path).await
    }

    async fn token(&self) -> Result<String, String> {
        match &self.auth {
            Auth::Token(t) => Ok(t.clone()),
            Auth::TokenFile(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    format!("Vault token file {}: {}", path.display(), io_cause(&e))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(format!("Vault token file {} is empty", path.display()));
                }
                Ok(token.to_string())
            }
            Auth::Kubernetes {
                role,
                mount,
                jwt_file,
            } => {
                let mut cached = self.login.lock().await;
                if let Some(login) = cached.as_ref()
                    && login.renew_at.is_none_or(|at| Instant::now() < at)
                {
                    return Ok(login.token.clone());
                }
                let login = self.kubernetes_login(role, mount, jwt_file).await?;
                let token = login.token.clone();
                *cached = Some(login);
                Ok(token)
            }
        }
    }

    async fn kubernetes_login(
        &self,
        role: &str,
        mount: &str,
        jwt_file: &PathBuf,
    ) -> Result<Login, String> {
        let what = format!("Kubernetes login as role '{role}' at auth/{mount}");
        let jwt = tokio::fs::read_to_string(jwt_file).await.map_err(|e| {
            format!(
                "{what}: service-account token {}: {}",
                jwt_file.display(),
                io_cause(&e)
            )
        })?;
        let client = self.client("");
        let started = Instant::now();
        let auth = vaultrs::auth::kubernetes::login(&client, mount, role, jwt.trim())
            .await
            .map_err(|e| format!("{what}: {}", api_cause(&e, &format!("auth/{mount}/login"))))?;
        let renew_at = (auth.lease_duration > 0)
            .then(|| started + Duration::from_secs(auth.lease_duration) * 2 / 3);
        tracing::debug!(
            role,
            mount,
            lease = auth.lease_duration,
            "logged in to Vault"
        );
        Ok(Login {
            token: auth.client_token,
            renew_at,
        })
    }

    fn client(&self, token: &str) -> VaultClient {
        VaultClient {
            http: rustify::clients::reqwest::Client::new(&self.address, self.http.clone()),
            middle: EndpointMiddleware {
                token: token.to_string(),
                version: "v1".into(),
                wrap: None,
                namespace: None,
            },
            settings: self.settings.clone(),
        }
    }
}

/// `vault MOUNT/PATH` (and `#FIELD` when the field is not `key`), before the address is known.
pub(crate) fn describe_unresolved(source: &VaultSource) -> String {
    let field = if source.key == postern_config::DEFAULT_VAULT_KEY {
        String::new()
    } else {
        format!("#{}", source.key)
    };
    format!("vault {}/{}{field}", source.mount, source.path)
}

/// The HTTP client: rustls with ring, the platform's roots plus `$VAULT_CACERT`. One per
/// source (not per process): a client's pooled connections belong to the runtime that
/// opened them.
fn http_client(options: &TlsOptions) -> Result<reqwest::Client, String> {
    build_http_client(options.vault_ca_cert.as_ref())
}

fn build_http_client(ca_cert: Option<&PathBuf>) -> Result<reqwest::Client, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};

    let provider = crate::crypto_provider();
    let extra_roots = match ca_cert {
        None => Vec::new(),
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("$VAULT_CACERT {}: {e}", path.display()))?,
    };
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots,
        Arc::clone(&provider),
    )
    .map_err(|e| format!("TLS verifier for Vault: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client for Vault: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client for Vault: {}", chain(&e)))
}

/// One line for a failed Vault call: `403 permission denied`, `404 no secret at
/// secret/data/x`, `cannot connect: Connection refused`, ...
fn api_cause(err: &ClientError, route: &str) -> String {
    match err {
        ClientError::APIError { code, errors } if errors.is_empty() => match code {
            404 => format!("404 not found (no secret at {route})"),
            _ => format!("{code} (no error text)"),
        },
        ClientError::APIError { code, errors } => {
            let errors: Vec<String> = errors.iter().map(|e| tidy(e)).collect();
            format!("{code} {}", errors.join("; "))
        }
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, content },
        } => one_line(&format!(
            "{code} {}",
            content.as_deref().unwrap_or("(no body)")
        )),
        other => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(other);
            while let Some(e) = source {
                if let Some(r) = e.downcast_ref::<reqwest::Error>() {
                    let detail = innermost(r);
                    return if r.is_timeout() {
                        format!("timed out after {}s", REQUEST_TIMEOUT.as_secs())
                    } else if r.is_connect() {
                        format!("cannot connect: {detail}")
                    } else {
                        detail
                    };
                }
                source = e.source();
            }
            chain(other)
        }
    }
}

/// Vault wraps some messages as `1 error occurred:\n\t* permission denied\n\n`; keep the items.
fn tidy(message: &str) -> String {
    let items: Vec<&str> = message
        .lines()
        .filter_map(|l| l.trim().strip_prefix("* "))
        .collect();
    let wrapped = message
        .split_whitespace()
        .nth(1)
        .is_some_and(|w| w.starts_with("error"));
    if wrapped && !items.is_empty() {
        one_line(&items.join("; "))
    } else {
        one_line(message)
    }
}

/// The deepest cause, which for network errors is the useful one.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = last.source() {
        last = next;
    }
    one_line(&strip_os_error(&last.to_string()))
}

/// Every message in the cause chain, joined with `: `.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = strip_os_error(&e.to_string());
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    one_line(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::tidy;

    #[test]
    fn wrapped_vault_errors_are_unwrapped() {
        assert_eq!(
            tidy("1 error occurred:\n\t* permission denied\n\n"),
            "permission denied"
        );
        assert_eq!(tidy("2 errors occurred:\n\t* a\n\t* b\n\n"), "a; b");
        assert_eq!(tidy("invalid role name \"x\""), "invalid role name \"x\"");
    }
}

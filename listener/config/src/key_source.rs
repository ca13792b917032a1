//! Where a TLS certificate or private key comes from.

use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The KV version 2 key under which Vault stores the PEM unless told otherwise.
pub const DEFAULT_VAULT_KEY: &str = "key";
/// Where Vault's Kubernetes auth method is mounted unless told otherwise.
pub const DEFAULT_VAULT_AUTH_MOUNT: &str = "kubernetes";

/// A source of PEM data for `tlsCertificate` or `tlsPrivateKey`.
///
/// In the YAML file a plain string is a file path; the object form names exactly one of
/// `path`, `vaultMount` (with `vaultPath`) or `secretName`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeySourceRepr", into = "KeySourceFields")]
pub enum KeySource {
    /// A PEM file, re-read when it changes.
    File {
        /// Path of the PEM file.
        path: PathBuf,
    },
    /// A KV version 2 secret in HashiCorp Vault (or OpenBao).
    Vault(VaultSource),
    /// A key of a Kubernetes Secret: only meaningful in an `EsmtpListener`, whose
    /// operator mounts the Secret and hands the listener a [`KeySource::File`].
    Secret(SecretSource),
}

/// A PEM read from Vault's KV version 2 engine: `GET /v1/{mount}/data/{path}`, field `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSource {
    /// The KV v2 mount, e.g. `secret`.
    pub mount: String,
    /// The secret's path under the mount.
    pub path: String,
    /// The field holding the PEM (default `key`).
    pub key: String,
    /// Vault's address; `$VAULT_ADDR` when unset.
    pub address: Option<String>,
    /// How to authenticate.
    pub auth: VaultAuth,
}

/// How the listener authenticates to Vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultAuth {
    /// A token given inline; discouraged outside tests.
    Token(String),
    /// A token read from a file at each refresh (a mounted Secret).
    TokenFile(PathBuf),
    /// A token from a Kubernetes Secret; the operator mounts it and passes a [`VaultAuth::TokenFile`].
    TokenSecret(SecretKeyRef),
    /// Vault's Kubernetes auth method: log in with the pod's service-account token.
    Kubernetes {
        /// The Vault role to log in as.
        role: String,
        /// Where the auth method is mounted (default `kubernetes`).
        mount: String,
    },
    /// `$VAULT_TOKEN` from the environment.
    Environment,
}

/// A key of a `kubernetes.io/tls` Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// The Secret's name, in the listener's namespace.
    pub secret_name: String,
    /// The key in the Secret; `tls.crt` for a certificate and `tls.key` for a key when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A reference to one key of a Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name, in the listener's namespace.
    pub name: String,
    /// The key in the Secret.
    pub key: String,
}

/// The object form of a key source, as written in YAML and in the CRD.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "KeySource")]
pub struct KeySourceFields {
    /// Path of a PEM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Vault KV v2 mount, e.g. `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_mount: Option<String>,
    /// Path of the secret under `vaultMount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_path: Option<String>,
    /// Field of the secret that holds the PEM (default `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_key: Option<String>,
    /// Vault's address (default `$VAULT_ADDR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_address: Option<String>,
    /// A Vault token (default `$VAULT_TOKEN`); prefer `vaultTokenFile`, `vaultTokenSecret` or `vaultRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_token: Option<String>,
    /// A file holding the Vault token, re-read at each refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_token_file: Option<PathBuf>,
    /// A Secret key holding the Vault token (EsmtpListener only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_token_secret: Option<SecretKeyRef>,
    /// Log in with Vault's Kubernetes auth method as this role, using the pod's service-account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_role: Option<String>,
    /// Mount of Vault's Kubernetes auth method (default `kubernetes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_auth_mount: Option<String>,
    /// Name of a `kubernetes.io/tls` Secret (EsmtpListener only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Key in `secretName` (default `tls.crt` or `tls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeySourceRepr {
    Path(PathBuf),
    Fields(Box<KeySourceFields>),
}

impl TryFrom<KeySourceRepr> for KeySource {
    type Error = String;

    fn try_from(repr: KeySourceRepr) -> Result<Self, Self::Error> {
        match repr {
            KeySourceRepr::Path(path) => Ok(Self::File { path }),
            KeySourceRepr::Fields(fields) => Self::try_from(*fields),
        }
    }
}

impl TryFrom<KeySourceFields> for KeySource {
    type Error = String;

    fn try_from(f: KeySourceFields) -> Result<Self, Self::Error> {
        let chosen = [
            f.path.is_some(),
            f.vault_mount.is_some(),
            f.secret_name.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            return Err("a key source needs exactly one of 'path', 'vaultMount' (with 'vaultPath') or 'secretName'".into());
        }
        let vault_only = f.vault_path.is_some()
            || f.vault_key.is_some()
            || f.vault_address.is_some()
            || f.vault_token.is_some()
            || f.vault_token_file.is_some()
            || f.vault_token_secret.is_some()
            || f.vault_role.is_some()
            || f.vault_auth_mount.is_some();
        if let Some(path) = f.path {
            if vault_only || f.key.is_some() {
                return Err("'path' takes no other fields".into());
            }
            return Ok(Self::File { path });
        }
        if let Some(secret_name) = f.secret_name {
            if vault_only {
                return Err("'secretName' takes only 'key'".into());
            }
            return Ok(Self::Secret(SecretSource {
                secret_name,
                key: f.key,
            }));
        }
        if f.key.is_some() {
            return Err("'key' belongs to 'secretName'; Vault sources use 'vaultKey'".into());
        }
        let mount = f.vault_mount.unwrap_or_default();
        let path = f
            .vault_path
            .ok_or_else(|| format!("vault source with vaultMount '{mount}' needs 'vaultPath'"))?;
        let auth = vault_auth(
            f.vault_token,
            f.vault_token_file,
            f.vault_token_secret,
            f.vault_role,
            f.vault_auth_mount,
        )?;
        Ok(Self::Vault(VaultSource {
            mount,
            path,
            key: f.vault_key.unwrap_or_else(|| DEFAULT_VAULT_KEY.into()),
            address: f.vault_address,
            auth,
        }))
    }
}

fn vault_auth(
    token: Option<String>,
    token_file: Option<PathBuf>,
    token_secret: Option<SecretKeyRef>,
    role: Option<String>,
    auth_mount: Option<String>,
) -> Result<VaultAuth, String> {
    let given = [
        token.is_some(),
        token_file.is_some(),
        token_secret.is_some(),
        role.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(
            "give at most one of 'vaultToken', 'vaultTokenFile', 'vaultTokenSecret' and 'vaultRole'".into(),
        );
    }
    if auth_mount.is_some() && role.is_none() {
        return Err("'vaultAuthMount' goes with 'vaultRole'".into());
    }
    Ok(match (token, token_file, token_secret, role) {
        (Some(t), ..) => VaultAuth::Token(t),
        (_, Some(f), ..) => VaultAuth::TokenFile(f),
        (_, _, Some(s), _) => VaultAuth::TokenSecret(s),
        (_, _, _, Some(role)) => VaultAuth::Kubernetes {
            role,
            mount: auth_mount.unwrap_or_else(|| DEFAULT_VAULT_AUTH_MOUNT.into()),
        },
        _ => VaultAuth::Environment,
    })
}

impl From<KeySource> for KeySourceFields {
    fn from(source: KeySource) -> Self {
        match source {
            KeySource::File { path } => Self {
                path: Some(path),
                ..Self::default()
            },
            KeySource::Secret(s) => Self {
                secret_name: Some(s.secret_name),
                key: s.key,
                ..Self::default()
            },
            KeySource::Vault(v) => {
                let mut fields = Self {
                    vault_mount: Some(v.mount),
                    vault_path: Some(v.path),
                    vault_key: (v.key != DEFAULT_VAULT_KEY).then_some(v.key),
                    vault_address: v.address,
                    ..Self::default()
                };
                match v.auth {
                    VaultAuth::Token(t) => fields.vault_token = Some(t),
                    VaultAuth::TokenFile(f) => fields.vault_token_file = Some(f),
                    VaultAuth::TokenSecret(s) => fields.vault_token_secret = Some(s),
                    VaultAuth::Kubernetes { role, mount } => {
                        fields.vault_role = Some(role);
                        fields.vault_auth_mount =
                            (mount != DEFAULT_VAULT_AUTH_MOUNT).then_some(mount);
                    }
                    VaultAuth::Environment => {}
                }
                fields
            }
        }
    }
}

impl JsonSchema for KeySource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KeySource".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = KeySourceFields::json_schema(generator);
        schema.insert(
            "x-kubernetes-validations".into(),
            serde_json::json!([{
                "rule": "[has(self.path), has(self.vaultMount), has(self.secretName)].filter(x, x).size() == 1",
                "message": "set exactly one of path, vaultMount (with vaultPath) or secretName",
            }, {
                "rule": "!has(self.vaultMount) || has(self.vaultPath)",
                "message": "a Vault source needs vaultPath",
            }, {
                "rule": "!has(self.path) || !(has(self.vaultPath) || has(self.vaultKey) || has(self.vaultAddress) || has(self.vaultToken) || has(self.vaultTokenFile) || has(self.vaultTokenSecret) || has(self.vaultRole) || has(self.vaultAuthMount) || has(self.key))",
                "message": "'path' takes no other fields",
            }, {
                "rule": "!has(self.secretName) || !(has(self.vaultPath) || has(self.vaultKey) || has(self.vaultAddress) || has(self.vaultToken) || has(self.vaultTokenFile) || has(self.vaultTokenSecret) || has(self.vaultRole) || has(self.vaultAuthMount))",
                "message": "'secretName' takes only 'key'",
            }, {
                "rule": "!has(self.key) || has(self.secretName)",
                "message": "'key' belongs to 'secretName'; Vault sources use 'vaultKey'",
            }, {
                "rule": "[has(self.vaultToken), has(self.vaultTokenFile), has(self.vaultTokenSecret), has(self.vaultRole)].filter(x, x).size() <= 1",
                "message": "give at most one of 'vaultToken', 'vaultTokenFile', 'vaultTokenSecret' and 'vaultRole'",
            }, {
                "rule": "!has(self.vaultAuthMount) || has(self.vaultRole)",
                "message": "'vaultAuthMount' goes with 'vaultRole'",
            }]),
        );
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<KeySource, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_string_is_a_path() {
        assert_eq!(
            parse("/etc/tls/tls.crt").unwrap(),
            KeySource::File {
                path: "/etc/tls/tls.crt".into()
            }
        );
    }

    #[test]
    fn vault_defaults_to_key_and_environment() {
        let KeySource::Vault(v) = parse("{vaultMount: secret, vaultPath: tls/mx.cert}").unwrap()
        else {
            panic!("not vault");
        };
        assert_eq!(
            (v.mount.as_str(), v.path.as_str(), v.key.as_str()),
            ("secret", "tls/mx.cert", "key")
        );
        assert_eq!(v.auth, VaultAuth::Environment);
    }

    #[test]
    fn vault_kubernetes_auth() {
        let KeySource::Vault(v) =
            parse("{vaultMount: s, vaultPath: p, vaultRole: postern}").unwrap()
        else {
            panic!("not vault");
        };
        assert_eq!(
            v.auth,
            VaultAuth::Kubernetes {
                role: "postern".into(),
                mount: "kubernetes".into()
            }
        );
    }

    #[test]
    fn ambiguous_or_incomplete_sources_are_refused() {
        assert!(parse("{path: /a, secretName: b}").is_err());
        assert!(parse("{vaultMount: secret}").is_err());
        assert!(parse("{vaultMount: s, vaultPath: p, vaultToken: t, vaultRole: r}").is_err());
        assert!(parse("{}").is_err());
    }

    #[test]
    fn round_trips_through_the_object_form() {
        for yaml in [
            "{path: /a}",
            "{secretName: mx-tls, key: tls.crt}",
            "{vaultMount: s, vaultPath: p, vaultKey: pem, vaultRole: r, vaultAuthMount: k8s}",
            "{vaultMount: s, vaultPath: p, vaultTokenFile: /t}",
        ] {
            let source = parse(yaml).unwrap();
            let back = serde_yaml::to_string(&source).unwrap();
            assert_eq!(parse(&back).unwrap(), source, "{yaml}");
        }
    }
}

//! What admission cannot check: rules that span listeners, pod port clashes, key sources
//! a pod cannot use, and Secrets that must exist. A failure here is a [`Stall`]: the spec
//! cannot be realised until a person changes it (or creates what it names).

use std::collections::{BTreeMap, BTreeSet};

use postern_config::{
    Context, DEFAULT_CREDENTIALS_KEY, DEFAULT_PASSWORD_KEY, KeySource, VaultAuth,
    validate_listeners,
};

use crate::crd::{
    EsmtpListener, EsmtpListenerSpec, INLINE_TOKEN_MESSAGE, MAX_NAME_LEN, MAX_REPLICAS,
};

/// Port of the listener's admin endpoint (`/livez`, `/readyz`, `/metrics`) inside the pod.
pub const ADMIN_PORT: u16 = 8025;
/// Pod ports below 1024 are moved up by this much, so the pod needs no privilege.
pub const UNPRIVILEGED_OFFSET: u16 = 10_000;

/// Default key of a certificate in a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Default key of a private key in a `kubernetes.io/tls` Secret.
pub const TLS_KEY_KEY: &str = "tls.key";
/// Default key of the CA certificate in a Secret named by `tlsRequiredClientCa`
/// (where cert-manager puts a CA).
pub const TLS_CA_KEY: &str = "ca.crt";

/// Why a spec cannot be realised: `reason` is a CamelCase word for the `Stalled`
/// condition, `message` says what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// CamelCase reason, e.g. `SecretNotFound`.
    pub reason: &'static str,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Stall {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// How one listener's declared port reaches its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMap {
    /// The port in `listen`, exposed by the Service.
    pub service_port: u16,
    /// The unprivileged port the listener binds inside the pod.
    pub pod_port: u16,
    /// Whether `listen` is an IPv6 address (the pod then binds `[::]`).
    pub ipv6: bool,
}

/// A validated spec, ready to build: one [`PortMap`] per listener, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Port mappings, one per `spec.listeners` item.
    pub ports: Vec<PortMap>,
    /// Whether any Vault source logs in with the pod's service-account token.
    pub vault_kubernetes_auth: bool,
}

/// A Secret key that the spec names, and the field that names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// The key the pod reads.
    pub key: String,
    /// The spec field, e.g. `spec.listeners[0].tlsCertificate`.
    pub field: String,
}

/// What the dereference step found: the referenced Secrets that exist. (Their keys are
/// not known: the operator reads Secret metadata only. A missing key shows as the pod
/// failing, which the operator reports as a stall.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretLookup(pub BTreeSet<String>);

impl SecretLookup {
    /// A lookup in which every Secret the spec names exists.
    pub fn all_present(spec: &EsmtpListenerSpec) -> Self {
        Self(secret_refs(spec).into_iter().map(|r| r.name).collect())
    }
}

/// The pod port for a declared port.
pub const fn pod_port(port: u16) -> u16 {
    if port < 1024 {
        port + UNPRIVILEGED_OFFSET
    } else {
        port
    }
}

/// Every Secret key the spec references, in spec order.
pub fn secret_refs(spec: &EsmtpListenerSpec) -> Vec<SecretRef> {
    let mut refs = Vec::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        for (field, source, default_key) in [
            ("tlsCertificate", l.tls_certificate.as_ref(), TLS_CERT_KEY),
            ("tlsPrivateKey", l.tls_private_key.as_ref(), TLS_KEY_KEY),
            (
                "auth.credentials",
                l.auth.as_ref().map(|a| &a.credentials),
                DEFAULT_CREDENTIALS_KEY,
            ),
            (
                "tlsRequiredClientCa",
                l.tls_required_client_ca.as_ref(),
                TLS_CA_KEY,
            ),
        ] {
            let field = format!("spec.listeners[{i}].{field}");
            match source {
                Some(KeySource::Secret(s)) => refs.push(SecretRef {
                    name: s.secret_name.clone(),
                    key: s.key.clone().unwrap_or_else(|| default_key.into()),
                    field,
                }),
                Some(KeySource::Vault(v)) => {
                    if let VaultAuth::TokenSecret(s) = &v.auth {
                        refs.push(SecretRef {
                            name: s.name.clone(),
                            key: s.key.clone(),
                            field: format!("{field}.vaultTokenSecret"),
                        });
                    }
                }
                _ => {}
            }
        }
        let smarthosts = l.delivery.iter().flat_map(|d| d.smarthosts());
        for (path, smarthost) in smarthosts {
            if let Some(KeySource::Secret(s)) = smarthost.auth.as_ref().map(|a| &a.password) {
                refs.push(SecretRef {
                    name: s.secret_name.clone(),
                    key: s.key.clone().unwrap_or_else(|| DEFAULT_PASSWORD_KEY.into()),
                    field: format!("spec.listeners[{i}].delivery.{path}.auth.password"),
                });
            }
        }
    }
    refs
}

/// Checks `listener` against what admission cannot see; `secrets` is what dereference found.
pub fn validate(listener: &EsmtpListener, secrets: &SecretLookup) -> Result<Plan, Stall> {
    let name = listener.metadata.name.as_deref().unwrap_or_default();
    let ns = listener.metadata.namespace.as_deref().unwrap_or_default();
    if name.len() > MAX_NAME_LEN {
        return Err(Stall::new(
            "InvalidName",
            format!(
                "metadata.name '{name}' is longer than {MAX_NAME_LEN} characters; recreate it with a shorter name"
            ),
        ));
    }
    let spec = &listener.spec;
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        return Err(Stall::new(
            "InvalidReplicas",
            format!(
                "spec.replicas: {} is outside 0-{MAX_REPLICAS}",
                spec.replicas
            ),
        ));
    }
    if spec.listeners.is_empty() {
        return Err(Stall::new(
            "NoListeners",
            "spec.listeners is empty; add at least one listener",
        ));
    }
    validate_listeners(&spec.listeners, "spec.listeners", Context::Kubernetes)
        .map_err(|e| Stall::new("InvalidListener", e.to_string()))?;

    let mut ports = Vec::with_capacity(spec.listeners.len());
    let mut pod_ports: BTreeMap<u16, String> = BTreeMap::from([(
        ADMIN_PORT,
        "the admin endpoint (probes and metrics)".to_string(),
    )]);
    for (i, l) in spec.listeners.iter().enumerate() {
        let addr = l.listen.socket_addr();
        let field = format!("spec.listeners[{i}].listen");
        if addr.port() == 0 {
            return Err(Stall::new(
                "InvalidPort",
                format!(
                    "{field}: port 0 cannot be exposed by a Service; give a fixed port such as 0.0.0.0:25"
                ),
            ));
        }
        let map = PortMap {
            service_port: addr.port(),
            pod_port: pod_port(addr.port()),
            ipv6: addr.is_ipv6(),
        };
        if let Some(user) =
            pod_ports.insert(map.pod_port, format!("{field} (port {})", addr.port()))
        {
            return Err(Stall::new(
                "PortClash",
                format!(
                    "{field}: port {} binds pod port {} inside the pod, which {user} already uses; choose another port",
                    addr.port(),
                    map.pod_port
                ),
            ));
        }
        ports.push(map);
    }

    let mut vault_kubernetes_auth = false;
    for (i, l) in spec.listeners.iter().enumerate() {
        for (field, source) in [
            ("tlsCertificate", l.tls_certificate.as_ref()),
            ("tlsPrivateKey", l.tls_private_key.as_ref()),
            ("auth.credentials", l.auth.as_ref().map(|a| &a.credentials)),
            ("tlsRequiredClientCa", l.tls_required_client_ca.as_ref()),
        ] {
            let field = format!("spec.listeners[{i}].{field}");
            match source {
                Some(KeySource::File { path }) => {
                    return Err(Stall::new(
                        "UnsupportedKeySource",
                        format!(
                            "{field}: path '{}' is not in the listener pod; use secretName (a kubernetes.io/tls Secret) or a Vault source",
                            path.display()
                        ),
                    ));
                }
                Some(KeySource::Vault(v)) => {
                    if v.address.is_none() {
                        return Err(Stall::new(
                            "IncompleteVaultSource",
                            format!(
                                "{field}: set vaultAddress; the listener pod has no VAULT_ADDR"
                            ),
                        ));
                    }
                    match &v.auth {
                        VaultAuth::TokenFile(p) => {
                            return Err(Stall::new(
                                "UnsupportedKeySource",
                                format!(
                                    "{field}: vaultTokenFile '{}' is not in the listener pod; use vaultTokenSecret or vaultRole",
                                    p.display()
                                ),
                            ));
                        }
                        VaultAuth::Environment => {
                            return Err(Stall::new(
                                "IncompleteVaultSource",
                                format!(
                                    "{field}: the listener pod has no VAULT_TOKEN; set vaultTokenSecret or vaultRole"
                                ),
                            ));
                        }
                        VaultAuth::Token(_) => {
                            return Err(Stall::new(
                                "InlineVaultToken",
                                format!("{field}: {INLINE_TOKEN_MESSAGE}"),
                            ));
                        }
                        VaultAuth::Kubernetes { .. } => vault_kubernetes_auth = true,
                        VaultAuth::TokenSecret(_) => {}
                    }
                }
                Some(KeySource::Secret(_)) | None => {}
            }
        }
    }

    for r in secret_refs(spec) {
        if !secrets.0.contains(&r.name) {
            return Err(Stall::new(
                "SecretNotFound",
                format!(
                    "{}: Secret '{}' not found in namespace '{ns}'; create it or change the reference",
                    r.field, r.name
                ),
            ));
        }
    }

    Ok(Plan {
        ports,
        vault_kubernetes_auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{MX, listener};

    fn stall(yaml: &str) -> Stall {
        let l = listener(yaml);
        validate(&l, &SecretLookup::all_present(&l.spec)).unwrap_err()
    }

    #[test]
    fn low_ports_move_up_and_high_ports_stay() {
        let l = listener(MX);
        let plan = validate(&l, &SecretLookup::all_present(&l.spec)).unwrap();
        assert_eq!(
            plan.ports,
            [
                PortMap {
                    service_port: 25,
                    pod_port: 10025,
                    ipv6: false
                },
                PortMap {
                    service_port: 2026,
                    pod_port: 2026,
                    ipv6: false
                }
            ]
        );
        assert!(!plan.vault_kubernetes_auth);
    }

    #[test]
    fn a_port_that_lands_on_another_listeners_pod_port_is_a_clash() {
        let s = stall("listeners: [{listen: '0:25'}, {listen: '0:10025'}]");
        assert_eq!(s.reason, "PortClash");
        assert!(
            s.message.contains("spec.listeners[1].listen")
                && s.message.contains("spec.listeners[0].listen (port 25)"),
            "{}",
            s.message
        );
    }

    #[test]
    fn the_admin_port_is_reserved() {
        let s = stall("listeners: [{listen: '0:8025'}]");
        assert_eq!(s.reason, "PortClash");
        assert!(s.message.contains("admin endpoint"), "{}", s.message);
    }

    #[test]
    fn listener_rules_use_the_listeners_own_messages() {
        let s = stall("listeners: [{listen: '0:25', banner: \"a\\nb\"}]");
        assert_eq!(s.reason, "InvalidListener");
        assert!(
            s.message.starts_with("spec.listeners[0].banner:"),
            "{}",
            s.message
        );
        let s = stall("listeners: [{listen: '0:25'}, {listen: '0:25'}]");
        assert!(s.message.contains("already used"), "{}", s.message);
    }

    #[test]
    fn port_zero_cannot_be_served() {
        assert_eq!(stall("listeners: [{listen: '0:0'}]").reason, "InvalidPort");
    }

    #[test]
    fn a_missing_secret_is_named_with_its_field_and_namespace() {
        let l = listener(MX);
        let s = validate(&l, &SecretLookup::default()).unwrap_err();
        assert_eq!(s.reason, "SecretNotFound");
        assert_eq!(
            s.message,
            "spec.listeners[0].tlsCertificate: Secret 'mx-tls' not found in namespace 'mail'; create it or change the reference"
        );
    }

    #[test]
    fn an_inline_vault_token_is_refused() {
        let s = stall(
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultAddress: 'https://v:8200', vaultToken: hvs.x}, tlsPrivateKey: {secretName: k}}]",
        );
        assert_eq!(s.reason, "InlineVaultToken");
        assert!(
            s.message
                .starts_with("spec.listeners[0].tlsCertificate: vaultToken is not allowed"),
            "{}",
            s.message
        );
    }

    #[test]
    fn sources_a_pod_cannot_read_are_refused_with_what_to_use() {
        let s =
            stall("listeners: [{listen: '0:25', tlsCertificate: /c.pem, tlsPrivateKey: /k.pem}]");
        assert_eq!(s.reason, "UnsupportedKeySource");
        assert!(s.message.contains("use secretName"), "{}", s.message);
        let s = stall(
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultRole: r}, tlsPrivateKey: {vaultMount: s, vaultPath: k, vaultRole: r}}]",
        );
        assert_eq!(s.reason, "IncompleteVaultSource");
        assert!(s.message.contains("vaultAddress"), "{}", s.message);
        let s = stall(
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultAddress: 'https://v:8200'}, tlsPrivateKey: {vaultMount: s, vaultPath: k, vaultAddress: 'https://v:8200'}}]",
        );
        assert!(
            s.message.contains("vaultTokenSecret or vaultRole"),
            "{}",
            s.message
        );
    }

    #[test]
    fn vault_sources_with_a_token_secret_or_role_pass() {
        let l = listener(
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultAddress: 'https://v:8200', vaultRole: mx}, tlsPrivateKey: {vaultMount: s, vaultPath: k, vaultAddress: 'https://v:8200', vaultTokenSecret: {name: vault, key: token}}}]",
        );
        let refs = secret_refs(&l.spec);
        assert_eq!(refs.len(), 1);
        assert_eq!(
            refs[0].field,
            "spec.listeners[0].tlsPrivateKey.vaultTokenSecret"
        );
        let plan = validate(&l, &SecretLookup::all_present(&l.spec)).unwrap();
        assert!(plan.vault_kubernetes_auth);
    }
    #[test]
    fn auth_credentials_secrets_are_referenced_by_their_field() {
        let l = listener(
            "listeners: [{listen: '0:587', auth: {credentials: {secretName: submitters}}}, {listen: '0:465', tls: implicit, auth: {credentials: {secretName: other, key: users}}}]",
        );
        let refs: Vec<_> = secret_refs(&l.spec)
            .into_iter()
            .map(|r| (r.name, r.key, r.field))
            .collect();
        assert_eq!(
            refs,
            [
                (
                    "submitters".to_string(),
                    "credentials".to_string(),
                    "spec.listeners[0].auth.credentials".to_string()
                ),
                (
                    "other".into(),
                    "users".into(),
                    "spec.listeners[1].auth.credentials".into()
                ),
            ]
        );
        let missing = validate(&l, &SecretLookup::default()).unwrap_err();
        assert!(
            missing
                .message
                .contains("spec.listeners[0].auth.credentials"),
            "{missing:?}"
        );
    }

    #[test]
    fn a_client_ca_comes_from_a_secret_or_vault_not_a_path() {
        let l =
            listener("listeners: [{listen: '0:25', tlsRequiredClientCa: {secretName: clients}}]");
        let refs = secret_refs(&l.spec);
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (
                refs[0].name.as_str(),
                refs[0].key.as_str(),
                refs[0].field.as_str()
            ),
            ("clients", "ca.crt", "spec.listeners[0].tlsRequiredClientCa")
        );
        let s = stall("listeners: [{listen: '0:25', tlsRequiredClientCa: /ca.pem}]");
        assert_eq!(s.reason, "UnsupportedKeySource");
        assert!(
            s.message
                .starts_with("spec.listeners[0].tlsRequiredClientCa: path"),
            "{}",
            s.message
        );
    }

    #[test]
    fn trust_lists_go_with_their_switches() {
        let s = stall("listeners: [{listen: '0:25', requireProxyProtocol: true}]");
        assert!(
            s.message
                .starts_with("spec.listeners[0].proxyProtocolFrom: requireProxyProtocol needs"),
            "{}",
            s.message
        );
        let l = listener(
            "listeners: [{listen: '0:25', requireProxyProtocol: true, proxyProtocolFrom: [10.0.0.0/8]}]",
        );
        assert!(validate(&l, &SecretLookup::all_present(&l.spec)).is_ok());
        let s = stall("listeners: [{listen: '0:25', allowXclient: true}]");
        assert!(
            s.message
                .starts_with("spec.listeners[0].xclientFrom: allowXclient needs xclientFrom"),
            "{}",
            s.message
        );
        let l = listener(
            "listeners: [{listen: '0:25', allowXclient: true, xclientFrom: [10.0.0.0/8]}]",
        );
        assert!(validate(&l, &SecretLookup::all_present(&l.spec)).is_ok());
    }

    #[test]
    fn smarthost_password_secrets_are_referenced_by_their_field() {
        let l = listener(
            "listeners: [{listen: '0:25', delivery: {smarthost: {host: relay.test, tls: required, auth: {username: u, password: {secretName: relay}}}}}]",
        );
        let refs = secret_refs(&l.spec);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].name, "relay");
        assert_eq!(refs[0].key, "password");
        assert_eq!(
            refs[0].field,
            "spec.listeners[0].delivery.smarthost.auth.password"
        );
    }
}

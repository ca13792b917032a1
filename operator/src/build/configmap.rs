//! The ConfigMap with the listener's YAML file, rendered from the spec.
//!
//! Secret sources become paths of mounted Secret files, listen addresses become the
//! pod's unprivileged ports on every address, and the spool, admin endpoint and log
//! take the pod's fixed places.

use std::{collections::BTreeMap, path::PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use postern_config::{
    AdminConfig, AuthConfig, Config, DEFAULT_CREDENTIALS_KEY, DEFAULT_PASSWORD_KEY, DeliveryConfig,
    HumanDuration, KeySource, ListenAddr, ListenerConfig, LogTarget, SpoolConfig, VaultAuth,
};

use crate::{
    build::{child_meta, config_map_name, labels, sha256_hex},
    crd::EsmtpListener,
    validate::{ADMIN_PORT, Plan, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY},
};

/// The key of the config file in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";
/// Where the config file is mounted in the pod.
pub const CONFIG_PATH: &str = "/etc/postern/config.yaml";
/// Where each referenced Secret is mounted: `{SECRETS_DIR}/{secretName}/{key}`.
pub const SECRETS_DIR: &str = "/etc/postern/secrets";
/// Where the spool claim is mounted.
pub const SPOOL_DIR: &str = "/var/spool/postern";
/// How long sessions may finish after SIGTERM; the pod's grace period is longer.
pub const SHUTDOWN_GRACE_SECS: u64 = 30;

/// The path of `key` of Secret `name` inside the pod.
pub fn secret_path(name: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("{SECRETS_DIR}/{name}/{key}"))
}

/// The listener configuration file for `listener`'s pods.
pub fn render(listener: &EsmtpListener, plan: &Plan) -> Config {
    let listeners = listener
        .spec
        .listeners
        .iter()
        .zip(&plan.ports)
        .map(|(l, port)| {
            let ip = if port.ipv6 { "[::]" } else { "0.0.0.0" };
            ListenerConfig {
                listen: format!("{ip}:{}", port.pod_port)
                    .parse::<ListenAddr>()
                    .expect("an all-addresses listen address parses"),
                tls_certificate: l.tls_certificate.clone().map(|s| resolve(s, TLS_CERT_KEY)),
                tls_private_key: l.tls_private_key.clone().map(|s| resolve(s, TLS_KEY_KEY)),
                tls_required_client_ca: l
                    .tls_required_client_ca
                    .clone()
                    .map(|s| resolve(s, TLS_CA_KEY)),
                delivery: l.delivery.clone().map(resolve_passwords),
                auth: l.auth.clone().map(|auth| AuthConfig {
                    credentials: resolve(auth.credentials.clone(), DEFAULT_CREDENTIALS_KEY),
                    ..auth
                }),
                ..l.clone()
            }
        })
        .collect();
    Config {
        listeners,
        spool: SpoolConfig {
            path: SPOOL_DIR.into(),
        },
        log: LogTarget::Stdout,
        admin: AdminConfig {
            listen: format!("0.0.0.0:{ADMIN_PORT}")
                .parse()
                .expect("an all-addresses admin address parses"),
            ..AdminConfig::default()
        },
        shutdown_grace_period: HumanDuration::from_secs(SHUTDOWN_GRACE_SECS),
        max_data_in_flight: postern_config::DEFAULT_MAX_DATA_IN_FLIGHT,
        dns: postern_config::DnsConfig::default(),
    }
}

/// A key source as the pod sees it: Secrets become their mounted files.
fn resolve(source: KeySource, default_key: &str) -> KeySource {
    match source {
        KeySource::Secret(s) => KeySource::File {
            path: secret_path(&s.secret_name, s.key.as_deref().unwrap_or(default_key)),
        },
        KeySource::Vault(mut v) => {
            if let VaultAuth::TokenSecret(s) = &v.auth {
                v.auth = VaultAuth::TokenFile(secret_path(&s.name, &s.key));
            }
            KeySource::Vault(v)
        }
        file => file,
    }
}

/// A delivery section as the pod sees it: smarthost passwords from Secrets become their
/// mounted files (the password never enters the ConfigMap).
fn resolve_passwords(mut delivery: DeliveryConfig) -> DeliveryConfig {
    for smarthost in delivery.smarthosts_mut() {
        if let Some(auth) = &mut smarthost.auth {
            auth.password = resolve(auth.password.clone(), DEFAULT_PASSWORD_KEY);
        }
    }
    delivery
}

/// The rendered file's text and its SHA-256 in hex.
pub fn render_text(listener: &EsmtpListener, plan: &Plan) -> (String, String) {
    let text = serde_yaml::to_string(&render(listener, plan)).expect("a config serializes");
    let hash = sha256_hex(text.as_bytes());
    (text, hash)
}

/// The ConfigMap and the hash of the config it holds: immutable and named by the hash,
/// so a rollout never changes the file under a running or restarting pod.
pub fn build(listener: &EsmtpListener, plan: &Plan) -> (ConfigMap, String) {
    let name = listener.metadata.name.as_deref().unwrap_or_default();
    let (text, hash) = render_text(listener, plan);
    let config_map = ConfigMap {
        metadata: child_meta(listener, config_map_name(name, &hash), labels(name), true),
        data: Some(BTreeMap::from([(CONFIG_KEY.into(), text)])),
        immutable: Some(true),
        ..ConfigMap::default()
    };
    (config_map, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{MX, listener, plan};

    fn rendered(yaml: &str) -> Config {
        let l = listener(yaml);
        let (cm, _) = build(&l, &plan(&l));
        let text = &cm.data.unwrap()[CONFIG_KEY];
        // The listener itself must accept the file the operator writes.
        Config::parse(text).unwrap_or_else(|e| panic!("listener refuses {text}: {e}"))
    }

    #[test]
    fn the_file_binds_unprivileged_ports_on_every_address() {
        let c = rendered(MX);
        let listens: Vec<_> = c.listeners.iter().map(|l| l.listen.to_string()).collect();
        assert_eq!(listens, ["0.0.0.0:10025", "0.0.0.0:2026"]);
        assert_eq!(c.admin.listen.to_string(), "0.0.0.0:8025");
        assert_eq!(c.spool.path, PathBuf::from(SPOOL_DIR));
    }

    #[test]
    fn xclient_fields_reach_the_file() {
        let c = rendered(
            "listeners: [{listen: '0:25', allowXclient: true, xclientFrom: [10.0.0.0/8], peer: {10.1.0.0/16: {allowXclient: false}}}]",
        );
        let l = &c.listeners[0];
        assert!(l.allow_xclient);
        assert_eq!(l.xclient_from[0].to_string(), "10.0.0.0/8");
        let overlay = l.peer.0.values().next().unwrap();
        assert_eq!(overlay.allow_xclient, Some(false));
    }

    #[test]
    fn ipv6_listeners_bind_every_ipv6_address() {
        let c = rendered("listeners: [{listen: '[::1]:587'}]");
        assert_eq!(c.listeners[0].listen.to_string(), "[::]:10587");
    }

    #[test]
    fn secret_sources_become_mounted_files() {
        let c = rendered(MX);
        assert_eq!(
            c.listeners[0].tls_certificate,
            Some(KeySource::File {
                path: "/etc/postern/secrets/mx-tls/tls.crt".into()
            })
        );
        assert_eq!(
            c.listeners[0].tls_private_key,
            Some(KeySource::File {
                path: "/etc/postern/secrets/mx-tls/tls.key".into()
            })
        );
    }

    #[test]
    fn a_client_ca_secret_becomes_its_mounted_ca_crt() {
        let c = rendered(
            "listeners: [{listen: '0:25', tlsRequiredClientCa: {secretName: clients}}, {listen: '0:26', tlsRequiredClientCa: {secretName: other, key: bundle.pem}}]",
        );
        let cas: Vec<_> = c
            .listeners
            .iter()
            .map(|l| l.tls_required_client_ca.clone())
            .collect();
        assert_eq!(
            cas,
            [
                Some(KeySource::File {
                    path: "/etc/postern/secrets/clients/ca.crt".into()
                }),
                Some(KeySource::File {
                    path: "/etc/postern/secrets/other/bundle.pem".into()
                }),
            ]
        );
    }

    #[test]
    fn smarthost_passwords_from_secrets_become_mounted_files() {
        let c = rendered(
            "listeners: [{listen: '0:25', delivery: {smarthost: {host: relay.test, port: 465, tls: implicit, auth: {username: u, password: {secretName: relay}}}, routes: {example.org: {smarthost: {host: r2.test, tls: required, auth: {username: v, password: {secretName: other, key: pw}}}}}}}]",
        );
        let delivery = c.listeners[0]
            .delivery
            .as_ref()
            .expect("a delivery section");
        let passwords: Vec<_> = delivery
            .smarthosts()
            .map(|(_, s)| s.auth.as_ref().expect("auth").password.clone())
            .collect();
        assert_eq!(
            passwords,
            [
                KeySource::File {
                    path: "/etc/postern/secrets/relay/password".into()
                },
                KeySource::File {
                    path: "/etc/postern/secrets/other/pw".into()
                },
            ]
        );
    }

    #[test]
    fn auth_credentials_from_secrets_become_mounted_files() {
        let c = rendered(
            "listeners: [{listen: '0:465', tls: implicit, auth: {credentials: {secretName: submitters}}}]",
        );
        let auth = c.listeners[0].auth.as_ref().expect("an auth section");
        assert_eq!(
            auth.credentials,
            KeySource::File {
                path: "/etc/postern/secrets/submitters/credentials".into()
            }
        );
        assert_eq!(c.listeners[0].tls, postern_config::ListenerTls::Implicit);
    }

    #[test]
    fn vault_sources_pass_through_with_a_token_file() {
        let c = rendered(
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultAddress: 'https://v:8200', vaultRole: mx}, tlsPrivateKey: {vaultMount: s, vaultPath: k, vaultAddress: 'https://v:8200', vaultTokenSecret: {name: vault, key: token}}}]",
        );
        let Some(KeySource::Vault(cert)) = &c.listeners[0].tls_certificate else {
            panic!("not vault")
        };
        assert_eq!(
            cert.auth,
            VaultAuth::Kubernetes {
                role: "mx".into(),
                mount: "kubernetes".into()
            }
        );
        assert_eq!(cert.address.as_deref(), Some("https://v:8200"));
        let Some(KeySource::Vault(key)) = &c.listeners[0].tls_private_key else {
            panic!("not vault")
        };
        assert_eq!(
            key.auth,
            VaultAuth::TokenFile("/etc/postern/secrets/vault/token".into())
        );
    }

    #[test]
    fn every_other_field_is_carried_over() {
        let c = rendered(
            "listeners: [{listen: '0:25', banner: Hi, maxMessageSize: 1000, domains: {example.com: {relayTo: true}}, meta: {tenant: a}}]",
        );
        let l = &c.listeners[0];
        assert_eq!(
            (
                l.banner.as_str(),
                l.max_message_size,
                l.meta["tenant"].as_str()
            ),
            ("Hi", 1000, "a")
        );
        assert!(l.domains["example.com"].relay_to);
    }

    #[test]
    fn the_hash_follows_the_config() {
        let a = listener(MX);
        let (_, h1) = render_text(&a, &plan(&a));
        let (_, h1_again) = render_text(&a, &plan(&a));
        assert_eq!(h1, h1_again);
        assert_eq!(h1.len(), 64);
        let mut b = a.clone();
        b.spec.listeners[0].banner = "changed".into();
        let (_, h2) = render_text(&b, &plan(&b));
        assert_ne!(h1, h2);
        // Pod-level settings do not touch the file.
        let mut c = a.clone();
        c.spec.replicas = 5;
        assert_eq!(render_text(&c, &plan(&c)).1, h1);
    }
}

//! Vault (KV v2) sources against a real OpenBao dev server, proven with real handshakes.
//!
//! Without `bao` on PATH these tests fail when `$CI` is set and skip loudly otherwise.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use common::bao::{Bao, ROOT, token, vault};
use common::{Client, listener, serve, wait_for_leaf};
use postern_config::{KeySource, VaultAuth};
use postern_tls::{ReloadResult, SourceKind, TlsMetrics, TlsOptions, TlsProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

macro_rules! bao_or_skip {
    () => {
        bao_or_skip!(Bao::start)
    };
    ($start:expr) => {
        match tokio::task::spawn_blocking($start).await.unwrap() {
            Some(bao) => bao,
            None => return,
        }
    };
}

/// One secret holding both halves, in fields `cert` and `key`, so that one `kv put`
/// rotates both at once.
fn pair(path: &str, address: Option<&str>, auth: VaultAuth) -> (KeySource, KeySource) {
    let field = |name: &str| match vault(path, address, auth.clone()) {
        KeySource::Vault(mut v) => {
            v.key = name.into();
            KeySource::Vault(v)
        }
        _ => unreachable!(),
    };
    (field("cert"), field("key"))
}

async fn start_with(
    cert: KeySource,
    key: KeySource,
    options: TlsOptions,
    refresh: Duration,
) -> Result<(Arc<TlsProvider>, TlsMetrics), postern_tls::TlsError> {
    let mut config = listener(Some(cert), Some(key));
    config.tls_refresh_interval = postern_config::HumanDuration(refresh);
    let metrics = TlsMetrics::default();
    TlsProvider::start_with(&config, metrics.clone(), options)
        .await
        .map(|p| (p, metrics))
}

async fn start(cert: KeySource, key: KeySource) -> Result<Arc<TlsProvider>, String> {
    start_with(cert, key, common::options(), Duration::from_secs(300))
        .await
        .map(|(p, _)| p)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn token_token_file_and_environment() {
    let bao = bao_or_skip!();
    let pem = common::ecdsa_pkcs8("mx.test.example");
    // The layout of KumoMTA's documentation: one secret per half, the PEM under `key`.
    bao.put("tls/mx.cert", &[("key", &pem.cert)]);
    bao.put("tls/mx.key", &[("key", &pem.key)]);
    let addr = Some(bao.addr.as_str());

    // An inline token.
    let provider = start(
        vault("tls/mx.cert", addr, token(ROOT)),
        vault("tls/mx.key", addr, token(ROOT)),
    )
    .await
    .unwrap();
    assert_eq!(
        provider.origin(),
        format!(
            "certificate vault secret/tls/mx.cert at {0}, key vault secret/tls/mx.key at {0}",
            bao.addr
        )
    );
    assert_eq!(
        Client::connect(serve(provider).await).await.leaf(),
        pem.leaf
    );

    // A token file (trailing newline as `kubectl create secret` leaves it).
    let file = bao.write("token", &format!("{ROOT}\n"));
    let auth = VaultAuth::TokenFile(file);
    let provider = start(
        vault("tls/mx.cert", addr, auth.clone()),
        vault("tls/mx.key", addr, auth),
    )
    .await
    .unwrap();
    assert_eq!(
        Client::connect(serve(provider).await).await.leaf(),
        pem.leaf
    );

    // $VAULT_ADDR and $VAULT_TOKEN (as TlsOptions::from_env would read them).
    let options = TlsOptions {
        vault_addr: Some(bao.addr.clone()),
        vault_token: Some(ROOT.into()),
        ..common::options()
    };
    let (provider, _) = start_with(
        vault("tls/mx.cert", None, VaultAuth::Environment),
        vault("tls/mx.key", None, VaultAuth::Environment),
        options,
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert_eq!(
        Client::connect(serve(provider).await).await.leaf(),
        pem.leaf
    );

    // Both halves in one secret, in fields named by vaultKey.
    bao.put("tls/mx", &[("cert", &pem.cert), ("key", &pem.key)]);
    let (cert, key) = pair("tls/mx", addr, token(ROOT));
    let provider = start(cert, key).await.unwrap();
    assert_eq!(
        Client::connect(serve(provider).await).await.leaf(),
        pem.leaf
    );
}

#[tokio::test]
async fn errors_are_one_line_naming_source_and_cause() {
    let bao = bao_or_skip!();
    let a = common::ecdsa_pkcs8("mx.test.example");
    let b = common::ecdsa_pkcs8("mx.test.example");
    bao.put("tls/mx.cert", &[("key", &a.cert)]);
    bao.put("tls/mx.key", &[("key", &a.key)]);
    bao.put("tls/other.key", &[("key", &b.key)]);
    let at = &bao.addr;
    let addr = Some(at.as_str());
    let good_key = || vault("tls/mx.key", addr, token(ROOT));

    let err = start(vault("tls/nope", addr, token(ROOT)), good_key())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: vault secret/tls/nope at {at}: 404 not found (no secret at secret/data/tls/nope)"
        )
    );

    let KeySource::Vault(mut wrong_field) = vault("tls/mx.cert", addr, token(ROOT)) else {
        unreachable!()
    };
    wrong_field.key = "pem".into();
    let err = start(KeySource::Vault(wrong_field), good_key())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: vault secret/tls/mx.cert#pem at {at}: the secret has no field 'pem' (it has: key); set vaultKey"
        )
    );

    let weak = bao.unprivileged_token();
    let err = start(
        vault("tls/mx.cert", addr, token(ROOT)),
        vault("tls/mx.key", addr, token(&weak)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!("tlsPrivateKey: vault secret/tls/mx.key at {at}: 403 permission denied")
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("http://{closed}");
    let err = start(
        vault("tls/mx.cert", Some(&nowhere), token(ROOT)),
        good_key(),
    )
    .await
    .unwrap_err();
    assert!(
        err.starts_with(&format!(
            "tlsCertificate: vault secret/tls/mx.cert at {nowhere}: cannot connect: "
        )),
        "{err}"
    );
    eprintln!("unreachable: {err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains('\n'));

    let err = start(
        vault("tls/mx.cert", None, VaultAuth::Environment),
        good_key(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "tlsCertificate: vault secret/tls/mx.cert: no Vault address: set vaultAddress or $VAULT_ADDR"
    );

    let err = start(
        vault("tls/mx.cert", addr, VaultAuth::Environment),
        good_key(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "tlsCertificate: vault secret/tls/mx.cert: no Vault token: set vaultToken, vaultTokenFile or vaultRole, or $VAULT_TOKEN"
    );

    let missing = bao.dir.path().join("no-such-token");
    let err = start(
        vault("tls/mx.cert", addr, VaultAuth::TokenFile(missing.clone())),
        good_key(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: vault secret/tls/mx.cert at {at}: Vault token file {}: No such file or directory",
            missing.display()
        )
    );

    let err = start(
        vault("tls/mx.cert", addr, token(ROOT)),
        vault("tls/other.key", addr, token(ROOT)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "tlsPrivateKey (vault secret/tls/other.key at {at}) does not match tlsCertificate (vault secret/tls/mx.cert at {at})"
        )
    );
}

/// An `https://` Vault: trusted through `$VAULT_CACERT` (`TlsOptions::vault_ca_cert`),
/// refused without it.
#[tokio::test]
async fn https_vault_with_its_ca() {
    let bao = bao_or_skip!(Bao::start_tls);
    let pem = common::ed25519("mx.test.example");
    bao.put("tls/mx", &[("cert", &pem.cert), ("key", &pem.key)]);
    let (cert, key) = pair("tls/mx", Some(&bao.addr), token(ROOT));
    let options = TlsOptions {
        vault_ca_cert: bao.ca.clone(),
        ..common::options()
    };
    let (provider, _) = start_with(cert.clone(), key.clone(), options, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(
        Client::connect(serve(provider).await).await.leaf(),
        pem.leaf
    );

    let err = start(cert, key).await.unwrap_err();
    eprintln!("untrusted Vault certificate: {err}");
    assert!(
        err.starts_with(&format!(
            "tlsCertificate: vault secret/tls/mx#cert at {}: cannot connect: ",
            bao.addr
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let err = start_with(
        vault("tls/mx", Some(&bao.addr), token(ROOT)),
        vault("tls/mx", Some(&bao.addr), token(ROOT)),
        TlsOptions {
            vault_ca_cert: Some(bao.dir.path().join("no-such-ca.pem")),
            ..common::options()
        },
        Duration::from_secs(300),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("$VAULT_CACERT"), "{err}");
}

/// A new version of the secret is served after one refresh interval; an established
/// session keeps going; a bad version keeps the last good certificate and is counted.
#[tokio::test]
async fn rotation_by_new_version() {
    let bao = bao_or_skip!();
    let old = common::ecdsa_pkcs8("mx.test.example");
    let new = common::ed25519("mx.test.example");
    bao.put("tls/mx", &[("cert", &old.cert), ("key", &old.key)]);
    let (cert, key) = pair("tls/mx", Some(&bao.addr), token(ROOT));
    let (provider, metrics) = start_with(cert, key, common::options(), Duration::from_secs(1))
        .await
        .unwrap();
    let addr = serve(provider).await;
    let mut established = Client::connect(addr).await;
    assert_eq!(established.leaf(), old.leaf);

    bao.put("tls/mx", &[("cert", &new.cert), ("key", &new.key)]);
    wait_for_leaf(addr, &new.leaf, Duration::from_secs(10)).await;
    assert!(
        established
            .echo("still here")
            .await
            .ends_with(" still here")
    );
    assert!(metrics.reloads(SourceKind::Vault, ReloadResult::Success) >= 1);
    assert_eq!(metrics.reloads(SourceKind::Vault, ReloadResult::Failure), 0);

    bao.put("tls/mx", &[("cert", "garbage"), ("key", &new.key)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.reloads(SourceKind::Vault, ReloadResult::Failure) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(Client::connect(addr).await.leaf(), new.leaf);
}

/// Answers the Kubernetes TokenReview API for one expected service-account token, the way
/// a kube-apiserver does; counts the reviews. (A stand-in for the apiserver only: OpenBao
/// and its Kubernetes auth method are real.)
async fn token_review_stub(expected_jwt: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reviews = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&reviews);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            let expected = expected_jwt.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = tcp.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break text[end + 4..].to_string();
                        }
                    }
                };
                count.fetch_add(1, Ordering::SeqCst);
                let review: serde_json::Value = serde_json::from_str(&body).unwrap();
                let ok = review["spec"]["token"].as_str() == Some(expected.as_str());
                let status = if ok {
                    serde_json::json!({"authenticated": true, "user": {
                        "username": "system:serviceaccount:mail:postern",
                        "uid": "0b5c1f3e-0000-4000-8000-000000000001",
                        "groups": ["system:serviceaccounts", "system:serviceaccounts:mail"]}})
                } else {
                    serde_json::json!({"authenticated": false, "error": "invalid bearer token"})
                };
                let reply = serde_json::json!({"apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview", "status": status})
                .to_string();
                let response = format!(
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), reviews)
}

/// A service-account JWT's shape (OpenBao reads its claims; the TokenReview vouches for it).
fn service_account_jwt() -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "RS256", "kid": "test"})),
        b64(serde_json::json!({
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:mail:postern",
            "kubernetes.io/serviceaccount/namespace": "mail",
            "kubernetes.io/serviceaccount/service-account.name": "postern",
            "kubernetes.io/serviceaccount/service-account.uid": "0b5c1f3e-0000-4000-8000-000000000001",
        })),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"not-checked-by-a-token-review")
    )
}

#[tokio::test]
async fn kubernetes_auth_method() {
    let bao = bao_or_skip!();
    let jwt = service_account_jwt();
    let (apiserver, reviews) = token_review_stub(jwt.clone()).await;
    let ca = bao.write("k8s-ca.crt", &common::ecdsa_pkcs8("kubernetes").cert);
    bao.cli(&["auth", "enable", "kubernetes"]);
    bao.cli(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={apiserver}"),
        &format!("kubernetes_ca_cert=@{}", ca.display()),
        "disable_local_ca_jwt=true",
    ]);
    let policy = bao.write(
        "tls-read.hcl",
        "path \"secret/data/tls/*\" { capabilities = [\"read\"] }\n",
    );
    bao.cli(&["policy", "write", "tls-read", &policy.display().to_string()]);
    bao.cli(&[
        "write",
        "auth/kubernetes/role/postern",
        "bound_service_account_names=postern",
        "bound_service_account_namespaces=mail",
        "token_policies=tls-read",
        "token_ttl=1h",
    ]);
    let pem = common::ecdsa_pkcs8("mx.test.example");
    bao.put("tls/mx", &[("cert", &pem.cert), ("key", &pem.key)]);

    let sa_token = bao.write("sa-token", &jwt);
    let options = TlsOptions {
        service_account_token_file: sa_token.clone(),
        ..common::options()
    };
    let role = |role: &str| VaultAuth::Kubernetes {
        role: role.into(),
        mount: "kubernetes".into(),
    };
    let at = bao.addr.clone();

    // Logged in with the service-account token; the secret read with the token obtained.
    let (cert, key) = pair("tls/mx", Some(&at), role("postern"));
    let (provider, metrics) = start_with(cert, key, options.clone(), Duration::from_millis(500))
        .await
        .unwrap();
    let addr = serve(provider).await;
    assert_eq!(Client::connect(addr).await.leaf(), pem.leaf);
    let logins = reviews.load(Ordering::SeqCst);
    assert_eq!(logins, 2, "one login per source");
    // Refreshes reuse the login token (its lease is an hour): no new TokenReview.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.reloads(SourceKind::Vault, ReloadResult::Success) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reviews.load(Ordering::SeqCst), logins);

    // An unknown role.
    let (cert, key) = pair("tls/mx", Some(&at), role("nope"));
    let err = start_with(cert, key, options.clone(), Duration::from_secs(300))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: vault secret/tls/mx#cert at {at}: Kubernetes login as role 'nope' at auth/kubernetes: 400 invalid role name \"nope\""
        )
    );

    // A service-account token the apiserver does not vouch for.
    let forged = bao.write("forged-token", &service_account_jwt().replace('.', ".x"));
    let (cert, key) = pair("tls/mx", Some(&at), role("postern"));
    let err = start_with(
        cert,
        key,
        TlsOptions {
            service_account_token_file: forged,
            ..options.clone()
        },
        Duration::from_secs(300),
    )
    .await
    .unwrap_err()
    .to_string();
    eprintln!("forged service-account token: {err}");
    assert!(
        err.starts_with(&format!("tlsCertificate: vault secret/tls/mx#cert at {at}: Kubernetes login as role 'postern' at auth/kubernetes: ")),
        "{err}"
    );

    // No service-account token mounted.
    let missing = bao.dir.path().join("no-sa-token");
    let (cert, key) = pair("tls/mx", Some(&at), role("postern"));
    let err = start_with(
        cert,
        key,
        TlsOptions {
            service_account_token_file: missing.clone(),
            ..options
        },
        Duration::from_secs(300),
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: vault secret/tls/mx#cert at {at}: Kubernetes login as role 'postern' at auth/kubernetes: service-account token {}: No such file or directory",
            missing.display()
        )
    );
}

/// Runs `kubectl ARGS` against `$KUBECONFIG`; panics with its output on failure.
fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl on PATH (eval \"$(e2e/cluster env)\")");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Deletes what the test created in the cluster, even when it fails.
struct ClusterCleanup {
    namespace: String,
}

impl Drop for ClusterCleanup {
    fn drop(&mut self) {
        let ns = &self.namespace;
        let _ = std::process::Command::new("kubectl")
            .args([
                "delete",
                "clusterrolebinding",
                &format!("{ns}-auth-delegator"),
            ])
            .output();
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "namespace", ns, "--wait=false"])
            .output();
    }
}

/// Vault's Kubernetes auth method end to end with a real kube-apiserver (the e2e control
/// plane: `eval "$(e2e/cluster env)"`, as scripts/test does): a real service account, a
/// token issued by the apiserver, OpenBao asking the apiserver's TokenReview API about it.
/// Without `$KUBECONFIG` it fails under `$CI` and skips loudly otherwise.
#[tokio::test]
async fn kubernetes_auth_with_a_real_apiserver() {
    let Some(kubeconfig) = std::env::var_os("KUBECONFIG") else {
        postern_skip::skip(
            "no $KUBECONFIG (run under scripts/test, or eval \"$(e2e/cluster env)\" with the cluster up)",
        );
        return;
    };
    assert!(
        std::path::Path::new(&kubeconfig).is_file(),
        "$KUBECONFIG {kubeconfig:?} does not exist: is the e2e cluster up?"
    );
    let bao = bao_or_skip!();
    let namespace = format!(
        "postern-tls-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    kubectl(&["create", "namespace", &namespace]);
    let _cleanup = ClusterCleanup {
        namespace: namespace.clone(),
    };
    kubectl(&["-n", &namespace, "create", "serviceaccount", "postern"]);
    // OpenBao presents the client's own token to TokenReview (no reviewer JWT configured),
    // so the service account may review tokens, as the Vault docs set it up.
    kubectl(&[
        "create",
        "clusterrolebinding",
        &format!("{namespace}-auth-delegator"),
        "--clusterrole=system:auth-delegator",
        &format!("--serviceaccount={namespace}:postern"),
    ]);
    let jwt = kubectl(&[
        "-n",
        &namespace,
        "create",
        "token",
        "postern",
        "--duration=10m",
    ]);
    let server = kubectl(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let ca_data = kubectl(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let ca = if ca_data.is_empty() {
        std::path::PathBuf::from(kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ]))
    } else {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_data)
            .unwrap();
        bao.write("apiserver-ca.crt", &String::from_utf8(pem).unwrap())
    };

    bao.cli(&["auth", "enable", "kubernetes"]);
    bao.cli(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={server}"),
        &format!("kubernetes_ca_cert=@{}", ca.display()),
        "disable_local_ca_jwt=true",
    ]);
    let policy = bao.write(
        "tls-read.hcl",
        "path \"secret/data/tls/*\" { capabilities = [\"read\"] }\n",
    );
    bao.cli(&["policy", "write", "tls-read", &policy.display().to_string()]);
    for (role, bound_namespace) in [("postern", namespace.as_str()), ("elsewhere", "other")] {
        bao.cli(&[
            "write",
            &format!("auth/kubernetes/role/{role}"),
            "bound_service_account_names=postern",
            &format!("bound_service_account_namespaces={bound_namespace}"),
            "token_policies=tls-read",
            "token_ttl=1h",
        ]);
    }
    let pem = common::ecdsa_pkcs8("mx.test.example");
    bao.put("tls/mx", &[("cert", &pem.cert), ("key", &pem.key)]);
    let options = TlsOptions {
        service_account_token_file: bao.write("sa-token", &jwt),
        ..common::options()
    };
    let role = |role: &str| VaultAuth::Kubernetes {
        role: role.into(),
        mount: "kubernetes".into(),
    };

    let (cert, key) = pair("tls/mx", Some(&bao.addr), role("postern"));
    let (provider, _) = start_with(cert, key, options.clone(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(
        Client::connect(serve(provider).await).await.leaf(),
        pem.leaf
    );

    // A role bound to another namespace refuses this service account.
    let (cert, key) = pair("tls/mx", Some(&bao.addr), role("elsewhere"));
    let err = start_with(cert, key, options, Duration::from_secs(300))
        .await
        .unwrap_err()
        .to_string();
    eprintln!("wrong namespace: {err}");
    assert!(
        err.starts_with(&format!(
            "tlsCertificate: vault secret/tls/mx#cert at {}: Kubernetes login as role 'elsewhere' at auth/kubernetes: 403 ",
            bao.addr
        )),
        "{err}"
    );
}

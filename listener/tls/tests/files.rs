//! PEM files and the self-signed default, proven with real handshakes over loopback.

mod common;

use std::time::Duration;

use common::{Client, Pem, SecretDir, file, listener, serve, start, wait_for_leaf};
use postern_tls::{ReloadResult, SourceKind};
use rustls::pki_types::ServerName;

async fn presents(pem: Pem) {
    let secret = SecretDir::new(&pem);
    let config = listener(
        Some(file(secret.cert_path())),
        Some(file(secret.key_path())),
    );
    let (provider, _) = start(&config).await.expect("start");
    let addr = serve(provider).await;
    let mut client = Client::connect(addr).await;
    assert_eq!(client.leaf(), pem.leaf);
    let reply = client.echo("hello").await;
    assert!(reply.starts_with("TLSv1_3 TLS13_"), "{reply}");
    assert!(reply.ends_with(" hello"), "{reply}");
}

#[tokio::test]
async fn rsa_pkcs1_key() {
    presents(common::rsa("mx.test.example", true)).await;
}

#[tokio::test]
async fn rsa_pkcs8_key() {
    presents(common::rsa("mx.test.example", false)).await;
}

#[tokio::test]
async fn ecdsa_sec1_key() {
    presents(common::ecdsa_sec1("mx.test.example")).await;
}

#[tokio::test]
async fn ecdsa_pkcs8_key() {
    presents(common::ecdsa_pkcs8("mx.test.example")).await;
}

#[tokio::test]
async fn ed25519_key() {
    presents(common::ed25519("mx.test.example")).await;
}

#[tokio::test]
async fn the_whole_chain_is_sent() {
    let (pem, ca) = common::chain("mx.test.example");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.pem"), &pem.cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &pem.key).unwrap();
    let config = listener(
        Some(file(dir.path().join("chain.pem"))),
        Some(file(dir.path().join("key.pem"))),
    );
    let (provider, _) = start(&config).await.unwrap();
    let client = Client::connect(serve(provider).await).await;
    assert_eq!(client.chain(), vec![pem.leaf, ca]);
}

#[tokio::test]
async fn self_signed_for_the_hostname_once_per_process() {
    let config = postern_config::ListenerConfig {
        hostname: Some("relay.selfsigned.example".into()),
        ..Default::default()
    };
    let (first, _) = start(&config).await.unwrap();
    assert_eq!(first.origin(), "self-signed for relay.selfsigned.example");
    let client = Client::connect(serve(first.clone()).await).await;
    let leaf = client.leaf();
    let cert = webpki::EndEntityCert::try_from(&leaf).unwrap();
    cert.verify_is_valid_for_subject_name(
        &ServerName::try_from("relay.selfsigned.example").unwrap(),
    )
    .expect("SAN is the hostname");
    assert!(
        cert.verify_is_valid_for_subject_name(&ServerName::try_from("other.example").unwrap())
            .is_err()
    );

    // A second listener with the same hostname shares the certificate; another does not.
    let (second, _) = start(&config).await.unwrap();
    assert_eq!(second.certificate_chain(), first.certificate_chain());
    let other = postern_config::ListenerConfig {
        hostname: Some("relay2.selfsigned.example".into()),
        ..Default::default()
    };
    let (third, _) = start(&other).await.unwrap();
    assert_ne!(third.certificate_chain(), first.certificate_chain());
}

#[tokio::test]
async fn mismatched_key_refuses_to_start() {
    let a = common::ecdsa_pkcs8("mx.test.example");
    let b = common::ecdsa_pkcs8("mx.test.example");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("a.crt"), dir.path().join("b.key"));
    std::fs::write(&cert, &a.cert).unwrap();
    std::fs::write(&key, &b.key).unwrap();
    let err = start(&listener(Some(file(&cert)), Some(file(&key))))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "tlsPrivateKey ({}) does not match tlsCertificate ({})",
            key.display(),
            cert.display()
        )
    );
}

#[tokio::test]
async fn missing_file_is_one_line_naming_the_path() {
    let pem = common::ecdsa_pkcs8("mx.test.example");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tls.key");
    std::fs::write(&key, &pem.key).unwrap();
    let missing = dir.path().join("nope/tls.crt");
    let err = start(&listener(Some(file(&missing)), Some(file(&key))))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: {}: No such file or directory",
            missing.display()
        )
    );
}

#[tokio::test]
async fn swapped_files_and_garbage_are_named() {
    let pem = common::ecdsa_pkcs8("mx.test.example");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    // The key given as the certificate, and vice versa.
    let err = start(&listener(Some(file(&key)), Some(file(&cert))))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "tlsCertificate: {}: no certificate found; expected PEM '-----BEGIN CERTIFICATE-----' blocks (found PRIVATE KEY)",
            key.display()
        )
    );
    std::fs::write(&key, "not a key\n").unwrap();
    let err = start(&listener(Some(file(&cert)), Some(file(&key))))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "tlsPrivateKey: {}: no private key found",
            key.display()
        )),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn only_one_of_the_pair_is_refused() {
    let err = start(&listener(Some(file("/etc/tls/tls.crt")), None))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "tlsCertificate and tlsPrivateKey go together; set both or neither"
    );
}

#[tokio::test]
async fn a_secret_source_is_refused_not_replaced_by_self_signed() {
    let secret = postern_config::KeySource::Secret(postern_config::SecretSource {
        secret_name: "mx-tls".into(),
        key: None,
    });
    let err = start(&listener(Some(secret.clone()), Some(secret)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tlsCertificate: secretName 'mx-tls'"),
        "{err}"
    );
}

/// A Kubernetes Secret update (symlink swap of `..data`): new handshakes get the new
/// certificate, a session established before keeps working.
#[tokio::test]
async fn rotation_by_symlink_swap() {
    let old = common::ecdsa_pkcs8("mx.test.example");
    let new = common::rsa("mx.test.example", true);
    let mut secret = SecretDir::new(&old);
    let config = listener(
        Some(file(secret.cert_path())),
        Some(file(secret.key_path())),
    );
    let (provider, metrics) = start(&config).await.unwrap();
    let addr = serve(provider.clone()).await;
    let mut established = Client::connect(addr).await;
    assert_eq!(established.leaf(), old.leaf);
    assert!(established.echo("before").await.ends_with(" before"));

    secret.swap(&new.cert, &new.key);
    wait_for_leaf(addr, &new.leaf, Duration::from_secs(10)).await;
    assert_eq!(provider.certificate_chain(), vec![new.leaf.clone()]);

    // The old session is untouched and still talks, with its old certificate.
    assert!(established.echo("after").await.ends_with(" after"));
    assert_eq!(established.leaf(), old.leaf);
    assert_eq!(metrics.reloads(SourceKind::File, ReloadResult::Success), 1);
    assert_eq!(metrics.reloads(SourceKind::File, ReloadResult::Failure), 0);
}

/// A bad update (garbage PEM) keeps the last good certificate and is counted once, then a
/// good update is picked up.
#[tokio::test]
async fn failed_reload_keeps_the_old_certificate() {
    let good = common::ecdsa_pkcs8("mx.test.example");
    let mut secret = SecretDir::new(&good);
    let config = listener(
        Some(file(secret.cert_path())),
        Some(file(secret.key_path())),
    );
    let (provider, metrics) = start(&config).await.unwrap();
    let addr = serve(provider).await;

    secret.swap("garbage\n", "more garbage\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.reloads(SourceKind::File, ReloadResult::Failure) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several more polls of the same garbage: still counted once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metrics.reloads(SourceKind::File, ReloadResult::Failure), 1);
    assert_eq!(Client::connect(addr).await.leaf(), good.leaf);

    // Missing files (the Secret's key removed) are a failure too, still serving the old one.
    std::fs::remove_file(secret.cert_path()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.reloads(SourceKind::File, ReloadResult::Failure) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing file not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(Client::connect(addr).await.leaf(), good.leaf);
    std::os::unix::fs::symlink("..data/tls.crt", secret.cert_path()).unwrap();

    let next = common::ed25519("mx.test.example");
    secret.swap(&next.cert, &next.key);
    wait_for_leaf(addr, &next.leaf, Duration::from_secs(10)).await;
    assert_eq!(metrics.reloads(SourceKind::File, ReloadResult::Success), 1);
}

#[tokio::test]
async fn metrics_are_exposed() {
    let metrics = postern_tls::TlsMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"postern_tls_reloads_total{source="file",result="failure"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"postern_tls_reloads_total{source="vault",result="success"} 0"#),
        "{text}"
    );
}

/// A TLS 1.2 client negotiates TLS 1.2, and the facts say so as rustls names them.
#[tokio::test]
async fn tls12_and_the_facts() {
    use std::sync::Arc;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let pem = common::ecdsa_pkcs8("mx.test.example");
    let secret = SecretDir::new(&pem);
    let config = listener(
        Some(file(secret.cert_path())),
        Some(file(secret.key_path())),
    );
    let (provider, _) = start(&config).await.unwrap();
    let addr = serve(provider).await;
    let client = rustls::ClientConfig::builder_with_provider(postern_tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(common::any_certificate())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("mx.test.example").unwrap(), tcp)
        .await
        .unwrap();
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"hi\n").await.unwrap();
    let mut reply = String::new();
    tls.read_line(&mut reply).await.unwrap();
    assert_eq!(
        reply.trim_end(),
        "TLSv1_2 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 hi"
    );
}

/// A certificate for mx.test.example valid until `year`-`month`-`day` (00:00 UTC).
fn expiring(year: i32, month: u8, day: u8) -> common::Pem {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["mx.test.example".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, month, day);
    let cert = params.self_signed(&key).unwrap();
    common::Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        leaf: cert.der().clone(),
    }
}

/// The expiry gauge holds the served leaf's notAfter from the start, follows a rotation,
/// and keeps the served certificate's date when a bad update is refused.
#[tokio::test]
async fn expiry_gauge_follows_the_served_certificate() {
    // `date -u -d 2030-01-01 +%s` and `date -u -d 2031-05-17 +%s`.
    const JAN_2030: i64 = 1_893_456_000;
    const MAY_2031: i64 = 1_936_742_400;
    let first = expiring(2030, 1, 1);
    let mut secret = SecretDir::new(&first);
    let config = listener(
        Some(file(secret.cert_path())),
        Some(file(secret.key_path())),
    );
    let listen = config.listen.to_string();
    let (provider, metrics) = start(&config).await.unwrap();
    assert_eq!(metrics.not_after(&listen), Some(JAN_2030));
    let addr = serve(provider).await;

    let second = expiring(2031, 5, 17);
    secret.swap(&second.cert, &second.key);
    wait_for_leaf(addr, &second.leaf, Duration::from_secs(10)).await;
    assert_eq!(metrics.not_after(&listen), Some(MAY_2031));

    secret.swap("garbage\n", "more garbage\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.reloads(SourceKind::File, ReloadResult::Failure) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics.not_after(&listen), Some(MAY_2031));

    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let line = format!(
        "postern_tls_certificate_not_after_timestamp_seconds{{listener=\"{listen}\"}} {MAY_2031}"
    );
    assert!(text.contains(&line), "{line} not in {text}");
}

/// The self-signed default reports its expiry too.
#[tokio::test]
async fn expiry_gauge_for_the_self_signed_default() {
    let config = listener(None, None);
    let (provider, metrics) = start(&config).await.unwrap();
    let at = metrics.not_after(&config.listen.to_string()).unwrap();
    assert_eq!(
        Some(at),
        postern_tls::not_after_unix(&provider.certificate_chain()).ok()
    );
}

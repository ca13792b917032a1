//! TLS toward a next hop: STARTTLS and implicit TLS verified against a configured CA,
//! a wrong name refused, opportunistic STARTTLS without verification.

mod support;

use std::net::SocketAddr;

use postern_outbound::{NextHop, OutboundConnection, OutboundError, TlsClients, TlsMode};
use support::peer::{EHLO_FULL, Peer, Session, usual};
use support::pki::TestPki;
use support::{envelope, options};

const EHLO_TLS: &str = "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n";

fn hop(name: &str, addr: SocketAddr) -> Vec<NextHop> {
    vec![NextHop {
        name: name.into(),
        addresses: vec![addr.ip()],
    }]
}

async fn starttls_peer(pki: &TestPki) -> Peer {
    Peer::start_tls(Some(pki.server_config()), |session: Session| {
        session.serve(|line| usual(line, EHLO_TLS))
    })
    .await
}

async fn implicit_peer(pki: &TestPki) -> Peer {
    Peer::start_tls(
        Some(pki.server_config()),
        |mut session: Session| async move {
            if session.tls().await {
                session.serve(|line| usual(line, EHLO_FULL)).await;
            }
        },
    )
    .await
}

#[tokio::test]
async fn starttls_verified_against_the_configured_ca() {
    let pki = TestPki::new(&["mx.test"]);
    let peer = starttls_peer(&pki).await;
    let tls = TlsClients::with_ca_file(&pki.ca_file).expect("the CA file");
    let options = options(peer.addr.port(), TlsMode::Required);
    let mut connection = OutboundConnection::connect(&hop("mx.test", peer.addr), &options, &tls)
        .await
        .expect("a verified STARTTLS session");
    assert!(connection.is_tls());
    let outcome = connection
        .send(&envelope("a@relay.test", &["b@mx.test"]), b"hi\r\n")
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    connection.quit().await;
    let log = &peer.log()[0];
    assert_eq!(
        &log[..4],
        ["EHLO relay.test", "STARTTLS", "<tls>", "EHLO relay.test"]
    );
}

#[tokio::test]
async fn implicit_tls_verified_against_the_configured_ca() {
    let pki = TestPki::new(&["smarthost.test"]);
    let peer = implicit_peer(&pki).await;
    let tls = TlsClients::with_ca_file(&pki.ca_file).expect("the CA file");
    let options = options(peer.addr.port(), TlsMode::Implicit);
    let mut connection =
        OutboundConnection::connect(&hop("smarthost.test", peer.addr), &options, &tls)
            .await
            .expect("an implicit TLS session");
    assert!(connection.is_tls());
    let outcome = connection
        .send(&envelope("a@relay.test", &["b@mx.test"]), b"hi\r\n")
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    connection.quit().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let pki = TestPki::new(&["mx.test"]);
    let tls = TlsClients::with_ca_file(&pki.ca_file).expect("the CA file");
    let peer = starttls_peer(&pki).await;
    let error = OutboundConnection::connect(
        &hop("other.test", peer.addr),
        &options(peer.addr.port(), TlsMode::Required),
        &tls,
    )
    .await
    .expect_err("the name does not match");
    assert!(matches!(error, OutboundError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("not valid for name"), "{error}");
    assert!(!error.is_permanent());

    let implicit = implicit_peer(&pki).await;
    let error = OutboundConnection::connect(
        &hop("other.test", implicit.addr),
        &options(implicit.addr.port(), TlsMode::Implicit),
        &tls,
    )
    .await
    .expect_err("the name does not match");
    assert!(matches!(error, OutboundError::Tls { .. }), "{error:?}");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_fails_required_but_not_opportunistic_tls() {
    let pki = TestPki::new(&["mx.test"]);
    let peer = starttls_peer(&pki).await;
    let system = TlsClients::system_roots().expect("system roots");
    let error = OutboundConnection::connect(
        &hop("mx.test", peer.addr),
        &options(peer.addr.port(), TlsMode::Required),
        &system,
    )
    .await
    .expect_err("the test CA is not a system root");
    assert!(matches!(error, OutboundError::Tls { .. }), "{error:?}");

    let mut connection = OutboundConnection::connect(
        &hop("mx.test", peer.addr),
        &options(peer.addr.port(), TlsMode::Opportunistic),
        &system,
    )
    .await
    .expect("opportunistic TLS does not verify");
    assert!(connection.is_tls());
    let outcome = connection
        .send(&envelope("a@relay.test", &["b@mx.test"]), b"hi\r\n")
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    connection.quit().await;
}

#[tokio::test]
async fn a_bad_ca_file_is_a_setup_error() {
    let dir = tempfile::tempdir().expect("a directory");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    assert!(matches!(
        TlsClients::with_ca_file(&empty),
        Err(OutboundError::TlsSetup(_))
    ));
    assert!(matches!(
        TlsClients::with_ca_file(&dir.path().join("missing.pem")),
        Err(OutboundError::TlsSetup(_))
    ));
}

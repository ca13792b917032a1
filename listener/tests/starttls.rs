//! STARTTLS over real TCP with a rustls client: the session restarts after the
//! handshake, pipelined plaintext is discarded (RFC 3207 §4.2), STARTTLS inside TLS is
//! refused, a failed handshake closes only its own connection, and the trace header
//! and log record name the TLS version and cipher.

mod common;

use std::sync::Arc;

use common::{Client, HOST, Harness};
use postern_outbound::AnyServerCertificate;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::{TlsConnector, client::TlsStream};

fn connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        // The listener's certificate is self-signed: these tests are about STARTTLS, not
        // about certificate validation (postern-tls tests that).
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate::new(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// An SMTP client over TLS.
struct TlsClient {
    reader: BufReader<TlsStream<tokio::net::TcpStream>>,
}

impl TlsClient {
    async fn upgrade(client: Client) -> Self {
        let tcp = client.into_inner();
        let tls = connector()
            .connect(ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .expect("TLS handshake");
        Self {
            reader: BufReader::new(tls),
        }
    }

    async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.unwrap();
    }

    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).await.unwrap() > 0,
                "closed"
            );
            text.push_str(&line[4..]);
            if line.as_bytes()[3] == b' ' {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }
}

#[tokio::test]
async fn starttls_restarts_the_session_and_marks_the_message_esmtps() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<before@tls.test>")
        .await
        .assert(250, "2.1.0");
    c.cmd("STARTTLS").await.assert(220, "2.0.0");
    let mut tls = TlsClient::upgrade(c).await;
    // The old EHLO and transaction are gone: EHLO is needed again.
    assert_eq!(tls.cmd("MAIL FROM:<a@b.test>").await.0, 503);
    let (code, ehlo) = tls.cmd("EHLO secure.test").await;
    assert_eq!(code, 250);
    assert!(
        !ehlo.contains("STARTTLS"),
        "STARTTLS is not offered inside TLS: {ehlo}"
    );
    assert_eq!(tls.cmd("STARTTLS").await.0, 503);
    assert_eq!(tls.cmd("MAIL FROM:<a@b.test>").await.0, 250);
    assert_eq!(tls.cmd("RCPT TO:<c@d.test>").await.0, 250);
    assert_eq!(tls.cmd("DATA").await.0, 354);
    tls.send(b"Subject: secret\r\n\r\nhi\r\n.\r\n").await;
    assert_eq!(tls.reply().await.0, 250);
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(
        message.contains("Received: from secure.test ([127.0.0.1])\r\n\tby mx.test (Postern) with ESMTPS (TLSv1_3:TLS13_"),
        "{message}"
    );
    let records = h.stop().await;
    let reception = records.iter().find(|r| r["type"] == "Reception").unwrap();
    assert_eq!(reception["reception_protocol"], "ESMTPS");
    assert_eq!(reception["tls_protocol_version"], "TLSv1_3");
    assert!(
        reception["tls_cipher"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_")
    );
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    // One write: STARTTLS and a MAIL FROM an attacker injected into the plaintext.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        .await;
    c.reply().await.assert(220, "2.0.0");
    let mut tls = TlsClient::upgrade(c).await;
    assert_eq!(tls.cmd("EHLO secure.test").await.0, 250);
    // Had the injected MAIL run, this would be "503 MAIL already given".
    assert_eq!(tls.cmd("MAIL FROM:<real@b.test>").await.0, 250);
    assert_eq!(tls.cmd("RCPT TO:<c@d.test>").await.0, 250);
    assert_eq!(tls.cmd("DATA").await.0, 354);
    tls.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(tls.reply().await.0, 250);
    let spooled = h.spooled();
    assert_eq!(spooled.len(), 1);
    assert_eq!(spooled[0].0.sender, "real@b.test");
    h.stop().await;
}

#[tokio::test]
async fn a_failed_handshake_closes_only_that_connection() {
    let mut h = Harness::start(|_| {}).await;
    let mut bystander = Client::hello(h.smtp).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("STARTTLS").await.assert(220, "2.0.0");
    c.send(b"this is not a TLS ClientHello\r\n\r\n").await;
    assert!(c.is_closed().await);
    bystander.cmd("NOOP").await.assert(250, "2.0.0");
    bystander
        .send_mail(
            "a@b.test",
            &["c@d.test"],
            "Subject: still here\r\n\r\nx\r\n",
        )
        .await
        .assert(250, "2.0.0");
    let (_, metrics) = h.admin_get("/metrics").await;
    assert!(
        metrics.contains("postern_tls_handshake_failures_total 1"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn openssl_s_client_negotiates_starttls_from_outside() {
    let mut h = Harness::start(|_| {}).await;
    let addr = h.smtp.to_string();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", "-starttls", "smtp", "-connect", &addr, "-servername", HOST, "-brief", "-crlf", "-ign_eof"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is installed (scripts/install-deps)");
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            b"EHLO openssl.test\nMAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\nDATA\nSubject: via openssl\n\nhi\n.\nQUIT\n",
        )
        .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Protocol version: TLSv1.3"), "{stderr}");
    assert!(stdout.contains("250 2.0.0 OK id="), "{stdout}\n{stderr}");
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(
        message.contains("from openssl.test ([127.0.0.1])")
            && message.contains("with ESMTPS (TLSv1_3:")
    );
    h.stop().await;
}

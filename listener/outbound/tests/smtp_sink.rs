//! Against Postfix's `smtp-sink` (Debian package `postfix`): reuse over one connection
//! with a count of what arrived, and its injected failures (4xx per RCPT, 421, a drop
//! after the final dot).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_outbound::{
    NextHop, OutboundConnection, OutboundError, Phase, Stage, TlsClients, TlsMode,
};
use support::{WAIT, envelope, options, require_tool};

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A running smtp-sink, killed when dropped.
struct Sink {
    child: Child,
    addr: SocketAddr,
    dumps: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    fn start(binary: &Path, extra: &[&str]) -> Self {
        let dumps = tempfile::tempdir().expect("a dump directory");
        // smtp-sink drops privileges to `nobody` when run as root; it writes there.
        std::fs::set_permissions(dumps.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod the dump directory");
        // Tests run in parallel and each starts sinks: a port that was free a moment
        // ago may be another sink's by the time this one binds. So each sink gets an
        // address of its own in 127.0.0.0/8, and one that exited (its bind failed) is
        // started again rather than mistaken for one that listens.
        let template = format!("{}/message.", dumps.path().display());
        let deadline = Instant::now() + WAIT;
        loop {
            let ip = Ipv4Addr::new(
                127,
                fastrand::u8(1..=254),
                fastrand::u8(..),
                fastrand::u8(1..=254),
            );
            let port = std::net::TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr = SocketAddr::from((ip, port));
            let mut command = Command::new(binary);
            if nix_is_root() {
                command.args(["-u", "nobody"]);
            }
            let mut child = command
                .args(["-d", &template])
                .args(extra)
                .arg(addr.to_string())
                .arg("64")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start smtp-sink");
            loop {
                assert!(
                    Instant::now() < deadline,
                    "smtp-sink did not start listening"
                );
                if child.try_wait().expect("smtp-sink's status").is_some() {
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Self { child, addr, dumps };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn hop(&self) -> Vec<NextHop> {
        vec![NextHop {
            name: "localhost".into(),
            addresses: vec![self.addr.ip()],
        }]
    }

    /// The messages dumped so far.
    fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<_> = std::fs::read_dir(self.dumps.path())
            .expect("read the dump directory")
            .map(|e| e.expect("an entry").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read(p).expect("read a dump"))
            .collect()
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn connect(sink: &Sink) -> OutboundConnection {
    let tls = TlsClients::system_roots().expect("system roots");
    OutboundConnection::connect(
        &sink.hop(),
        &options(sink.addr.port(), TlsMode::Opportunistic),
        &tls,
    )
    .await
    .expect("a connection to smtp-sink")
}

#[tokio::test]
async fn several_messages_over_one_connection_all_arrive() {
    let Some(binary) = require_tool(SMTP_SINK) else {
        return;
    };
    let sink = Sink::start(&binary, &[]);
    let mut connection = connect(&sink).await;
    assert!(connection.capabilities().pipelining);
    for n in 0..5 {
        let body = format!(
            "Subject: message {n}\r\n\r\nhello from postern {n}\r\n.leading dot\r\ncaf\u{e9}\r\n"
        );
        let outcome = connection
            .send(
                &envelope("sender@relay.test", &["one@sink.test", "two@sink.test"]),
                body.as_bytes(),
            )
            .await
            .expect("a transaction");
        assert!(
            outcome.recipients.iter().all(|r| r.is_delivered()),
            "{outcome:?}"
        );
    }
    connection.quit().await;
    let deadline = Instant::now() + WAIT;
    while sink.messages().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages = sink.messages();
    assert_eq!(messages.len(), 5);
    for n in 0..5 {
        let text = format!("hello from postern {n}");
        assert!(
            messages.iter().any(|m| contains(m, text.as_bytes())),
            "message {n} missing"
        );
    }
    assert!(
        messages.iter().all(|m| contains(m, b"\n.leading dot")),
        "dot-stuffing undone"
    );
}

#[tokio::test]
async fn soft_rejected_recipients_and_a_421_are_per_recipient_outcomes() {
    let Some(binary) = require_tool(SMTP_SINK) else {
        return;
    };
    let soft = Sink::start(&binary, &["-r", "rcpt", "-b", "451 4.7.1 greylisted"]);
    let mut connection = connect(&soft).await;
    let outcome = connection
        .send(
            &envelope("a@relay.test", &["b@sink.test", "c@sink.test"]),
            b"x\r\n",
        )
        .await
        .expect("an outcome");
    for r in &outcome.recipients {
        assert_eq!((r.reply.code, r.stage), (451, Stage::Rcpt));
        assert_eq!(r.reply.content(), "4.7.1 greylisted");
    }
    connection.quit().await;
    // smtp-sink opens a dump file at MAIL and removes it when the transaction ends
    // without data, which may be just after it answered QUIT: a message that arrived
    // would stay, an aborted transaction's file goes.
    let deadline = Instant::now() + WAIT;
    while !soft.messages().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        soft.messages().is_empty(),
        "a message arrived though every recipient got 451"
    );

    let closing = Sink::start(&binary, &["-Q", "rcpt"]);
    let mut connection = connect(&closing).await;
    let outcome = connection
        .send(&envelope("a@relay.test", &["b@sink.test"]), b"x\r\n")
        .await
        .expect("an outcome");
    assert_eq!(outcome.recipients[0].reply.code, 421);
    assert!(!connection.is_usable());
}

#[tokio::test]
async fn a_disconnect_after_the_final_dot_is_a_drop_in_data_dot() {
    let Some(binary) = require_tool(SMTP_SINK) else {
        return;
    };
    let sink = Sink::start(&binary, &["-q", "."]);
    let mut connection = connect(&sink).await;
    let error = connection
        .send(&envelope("a@relay.test", &["b@sink.test"]), b"x\r\n")
        .await
        .expect_err("smtp-sink hangs up after the dot");
    assert!(
        matches!(
            error,
            OutboundError::Dropped {
                phase: Phase::DataDot,
                ..
            }
        ),
        "{error:?}"
    );
}

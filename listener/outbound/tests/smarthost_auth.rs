//! AUTH toward a smarthost that really checks credentials: aiosmtpd with an
//! authenticator (PyPI, in the venv `~/.cache/postern/venv` that scripts/install-deps makes, or `$POSTERN_PYTHON`),
//! over STARTTLS and implicit TLS, PLAIN and LOGIN, credentials read from files like a
//! mounted Secret.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_outbound::{
    Credentials, NextHop, OutboundConnection, OutboundError, Phase, Stage, TlsClients, TlsMode,
};
use support::pki::TestPki;
use support::{WAIT, envelope, options, require_tool};

const USERNAME: &str = "relay@smarthost.test";
const PASSWORD: &str = "correct horse battery staple";

fn python() -> String {
    std::env::var("POSTERN_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/postern/venv/bin/python")
    })
}

/// The aiosmtpd smarthost, killed when dropped.
struct Smarthost {
    child: Child,
    starttls: SocketAddr,
    implicit: SocketAddr,
    login_only: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    pki: TestPki,
}

impl Drop for Smarthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smarthost {
    fn start() -> Option<Self> {
        let python = require_tool(&python())?;
        let pki = TestPki::new(&["smarthost.test"]);
        let user_file = pki.dir.path().join("username");
        let password_file = pki.dir.path().join("password");
        std::fs::write(&user_file, USERNAME).expect("write the username");
        std::fs::write(&password_file, PASSWORD).expect("write the password");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiosmtpd_auth.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&pki.server_cert_file)
            .arg(&pki.server_key_file)
            .arg(&user_file)
            .arg(&password_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the aiosmtpd smarthost");
        let stdout = child.stdout.take().expect("stdout");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let reader_lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                reader_lines.lock().expect("lines").push(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let ready = loop {
            if let Some(line) = lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.starts_with("READY"))
            {
                break line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start (is aiosmtpd installed in {}?)",
                self::python()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let ports: Vec<u16> = ready
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().expect("a port"))
            .collect();
        Some(Self {
            child,
            starttls: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            implicit: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            login_only: SocketAddr::from(([127, 0, 0, 1], ports[2])),
            lines,
            pki,
        })
    }

    fn tls(&self) -> TlsClients {
        TlsClients::with_ca_file(&self.pki.ca_file).expect("the test CA")
    }

    fn hop(addr: SocketAddr) -> Vec<NextHop> {
        vec![NextHop {
            name: "smarthost.test".into(),
            addresses: vec![addr.ip()],
        }]
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        mode: TlsMode,
        credentials: Option<Credentials>,
    ) -> Result<OutboundConnection, OutboundError> {
        let mut options = options(addr.port(), mode);
        options.credentials = credentials;
        OutboundConnection::connect(&Self::hop(addr), &options, &self.tls()).await
    }

    /// Waits until a line starting with `prefix` was printed.
    async fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no '{prefix}' line from aiosmtpd"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn printed(&self, prefix: &str) -> bool {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.starts_with(prefix))
    }
}

/// Credentials read from files, as from a mounted Secret.
fn credentials_from_files(dir: &std::path::Path) -> Credentials {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .expect("a credentials file")
            .trim_end()
            .to_string()
    };
    Credentials::new(read("username"), read("password"))
}

#[tokio::test]
async fn auth_plain_and_login_over_starttls_and_implicit_tls() {
    let Some(smarthost) = Smarthost::start() else {
        return;
    };
    let credentials = credentials_from_files(smarthost.pki.dir.path());
    for (addr, mode) in [
        (smarthost.starttls, TlsMode::Required),
        (smarthost.implicit, TlsMode::Implicit),
    ] {
        let mut connection = smarthost
            .connect(addr, mode, Some(credentials.clone()))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(connection.is_tls());
        let outcome = connection
            .send(
                &envelope("app@relay.test", &["user@example.test"]),
                format!("Subject: via {mode}\r\n\r\nhi\r\n").as_bytes(),
            )
            .await
            .expect("a transaction");
        assert!(outcome.recipients[0].is_delivered(), "{mode}: {outcome:?}");
        connection.quit().await;
    }
    let mut login = smarthost
        .connect(smarthost.login_only, TlsMode::Implicit, Some(credentials))
        .await
        .expect("AUTH LOGIN");
    assert!(!login.capabilities().auth_plain && login.capabilities().auth_login);
    let outcome = login
        .send(
            &envelope("app@relay.test", &["user@example.test"]),
            b"hi\r\n",
        )
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    login.quit().await;
    smarthost.wait_for("AUTH PLAIN ok").await;
    smarthost.wait_for("AUTH LOGIN ok").await;
    let delivered = smarthost.wait_for("DELIVERED").await;
    assert!(delivered.contains("auth=True"), "{delivered}");
    let count = smarthost
        .lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.starts_with("DELIVERED auth=True"))
        .count();
    assert!(count >= 1);
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_535() {
    let Some(smarthost) = Smarthost::start() else {
        return;
    };
    for (addr, mode) in [
        (smarthost.starttls, TlsMode::Required),
        (smarthost.implicit, TlsMode::Implicit),
    ] {
        let error = smarthost
            .connect(
                addr,
                mode,
                Some(Credentials::new(USERNAME, "wrong password")),
            )
            .await
            .expect_err("the smarthost checks the password");
        let OutboundError::Rejected {
            phase: Phase::Auth,
            ref reply,
            ..
        } = error
        else {
            panic!("{mode}: {error:?}");
        };
        assert_eq!(reply.code, 535, "{mode}");
        assert!(error.is_permanent());
    }
    smarthost.wait_for("AUTH PLAIN failed").await;
    assert!(!smarthost.printed("DELIVERED"));
}

#[tokio::test]
async fn credentials_are_never_sent_without_tls() {
    let Some(smarthost) = Smarthost::start() else {
        return;
    };
    let error = smarthost
        .connect(
            smarthost.starttls,
            TlsMode::None,
            Some(Credentials::new(USERNAME, PASSWORD)),
        )
        .await
        .expect_err("no AUTH over plaintext");
    assert!(
        matches!(error, OutboundError::AuthWithoutTls { .. }),
        "{error:?}"
    );
    assert!(!smarthost.printed("AUTH"));

    // Without credentials the smarthost refuses the mail itself.
    let mut connection = smarthost
        .connect(smarthost.starttls, TlsMode::Required, None)
        .await
        .expect("TLS without AUTH");
    let outcome = connection
        .send(
            &envelope("app@relay.test", &["user@example.test"]),
            b"hi\r\n",
        )
        .await
        .expect("an outcome");
    assert_eq!(outcome.recipients[0].stage, Stage::Mail);
    assert_eq!(outcome.recipients[0].reply.code, 530);
    connection.quit().await;
}

//! A smarthost that really checks credentials: `peers/aiosmtpd_auth.py` (aiosmtpd with
//! an authenticator) run as a child process, on three loopback ports: STARTTLS required
//! before AUTH, implicit TLS, and implicit TLS offering only AUTH LOGIN. Its
//! certificate is for `smarthost.test`, signed by a fresh [`TestPki`]; the username
//! and password are files, as a mounted Secret holds them. It prints one line per AUTH
//! (`AUTH PLAIN ok`) and per message (`DELIVERED auth=… from=… to=… bytes=…`).
//!
//! aiosmtpd comes from the project's venv `~/.cache/postern/venv` (made by
//! `scripts/install-deps`) or the Python in `$POSTERN_PYTHON`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{START_WAIT, pki::TestPki, require_tool};

/// The username the smarthost accepts.
pub const USERNAME: &str = "relay@smarthost.test";
/// The password the smarthost accepts.
pub const PASSWORD: &str = "correct horse battery staple";
/// The name in the smarthost's certificate.
pub const HOST_NAME: &str = "smarthost.test";

/// The Python that has aiosmtpd.
pub fn python() -> String {
    std::env::var("POSTERN_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/postern/venv/bin/python")
    })
}

/// The running smarthost; killed when dropped.
pub struct AuthSmarthost {
    child: Child,
    /// STARTTLS required before AUTH and mail.
    pub starttls: SocketAddr,
    /// TLS from the first byte.
    pub implicit: SocketAddr,
    /// Implicit TLS, AUTH LOGIN only.
    pub login_only: SocketAddr,
    /// Its CA and certificate; `pki.ca_file` verifies it.
    pub pki: TestPki,
    /// The file holding [`USERNAME`].
    pub username_file: PathBuf,
    /// The file holding [`PASSWORD`] (with a final newline, as a Secret often has).
    pub password_file: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for AuthSmarthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AuthSmarthost {
    /// Starts it; `None` (after a loud skip) when aiosmtpd's Python is missing.
    pub fn start() -> Option<Self> {
        let interpreter = require_tool(&python())?;
        let pki = TestPki::new(&[HOST_NAME]);
        let username_file = pki.dir.path().join("username");
        let password_file = pki.dir.path().join("password");
        std::fs::write(&username_file, USERNAME).expect("write the username");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write the password");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/aiosmtpd_auth.py");
        let mut child = Command::new(interpreter)
            .arg(script)
            .arg(&pki.server_cert_file)
            .arg(&pki.server_key_file)
            .arg(&username_file)
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
        let mut smarthost = Self {
            child,
            starttls: SocketAddr::from(([127, 0, 0, 1], 0)),
            implicit: SocketAddr::from(([127, 0, 0, 1], 0)),
            login_only: SocketAddr::from(([127, 0, 0, 1], 0)),
            pki,
            username_file,
            password_file,
            lines,
        };
        let deadline = Instant::now() + START_WAIT;
        let ready = loop {
            if let Some(line) = smarthost.find("READY") {
                break line;
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start (is aiosmtpd installed in {}?)",
                python()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let ports: Vec<u16> = ready
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().expect("a port"))
            .collect();
        smarthost.starttls.set_port(ports[0]);
        smarthost.implicit.set_port(ports[1]);
        smarthost.login_only.set_port(ports[2]);
        Some(smarthost)
    }

    /// The first line printed so far that starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    /// Every line printed so far that starts with `prefix`.
    pub fn printed(&self, prefix: &str) -> Vec<String> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits up to `within` until a line starting with `prefix` was printed.
    pub async fn wait_for(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.find(prefix) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no '{prefix}' line from aiosmtpd: {:?}",
                self.lines.lock().expect("lines")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

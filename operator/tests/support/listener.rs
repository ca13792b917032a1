//! The real `postern-listener` binary run on a config the operator rendered, standing in
//! for a pod kwok cannot run; Postfix's `smtp-sink` as a next hop; a small SMTP client.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_yaml::Value;

/// How long a process may take to start listening.
pub const START: Duration = Duration::from_secs(30);

/// The listener binary: `$POSTERN_LISTENER_BIN`, else built with cargo into the workspace target.
pub fn listener_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("POSTERN_LISTENER_BIN") {
        return Ok(bin.into());
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "postern-listener",
            "--bin",
            "postern-listener",
        ])
        .current_dir(&workspace)
        .status()
        .context("running cargo build -p postern-listener")?;
    ensure!(status.success(), "cargo build -p postern-listener failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    Ok(target.join("debug").join("postern-listener"))
}

/// `path` when it is installed; otherwise a loud skip (a failure under CI) and `None`.
pub fn require_tool(path: &str) -> Option<PathBuf> {
    let found = Path::new(path).is_file().then(|| PathBuf::from(path));
    if found.is_none() {
        postern_skip::skip(&format!("{path} is not installed (scripts/install-deps)"));
    }
    found
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real listener running a rendered config.
pub struct RunningListener {
    /// Where its spool, config and log are.
    pub dir: tempfile::TempDir,
    /// Its first SMTP listener.
    pub smtp: SocketAddr,
    /// Its admin endpoint.
    pub admin: SocketAddr,
    _process: Process,
}

impl RunningListener {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("listener.log")).unwrap_or_default()
    }
}

/// What a pod provides that a process on loopback gets elsewhere: the config with the
/// spool in a temporary directory, the admin endpoint on `admin`, every SMTP listener
/// on a free loopback port, and each path under `/etc/postern/…` the pod mounts
/// (`mounts`: mounted path prefix → local directory).
pub fn localise(
    rendered: &str,
    spool: &Path,
    admin: SocketAddr,
    mounts: &BTreeMap<String, PathBuf>,
) -> Result<(String, SocketAddr)> {
    let mut config: Value = serde_yaml::from_str(rendered)?;
    config["spool"]["path"] = Value::from(spool.to_string_lossy().into_owned());
    config["admin"]["listen"] = Value::from(admin.to_string());
    let listeners = config["listeners"]
        .as_sequence_mut()
        .context("the config has listeners")?;
    let mut first = None;
    for l in listeners.iter_mut() {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        first.get_or_insert(addr);
        l["listen"] = Value::from(addr.to_string());
    }
    let mut text = serde_yaml::to_string(&config)?;
    for (mounted, local) in mounts {
        text = text.replace(mounted.as_str(), &local.to_string_lossy());
    }
    Ok((text, first.context("at least one listener")?))
}

/// Runs the listener binary on `rendered` (see [`localise`]) with its admin endpoint
/// on `admin`, and waits until it is ready.
pub async fn run_rendered(
    rendered: &str,
    admin: SocketAddr,
    mounts: &BTreeMap<String, PathBuf>,
) -> Result<RunningListener> {
    let dir = tempfile::tempdir()?;
    let (config, smtp) = localise(rendered, &dir.path().join("spool"), admin, mounts)?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &config)?;
    let bin = listener_binary()?;
    let check = Command::new(&bin)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    ensure!(
        check.status.success(),
        "postern-listener check refused the operator's config: {}{}\n{config}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let log = std::fs::File::create(dir.path().join("listener.log"))?;
    let process = Process(
        Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?,
    );
    let listener = RunningListener {
        dir,
        smtp,
        admin,
        _process: process,
    };
    let deadline = Instant::now() + START;
    loop {
        if let Ok((200, _)) = http(admin, "GET", "/readyz") {
            return Ok(listener);
        }
        if Instant::now() > deadline {
            bail!(
                "the listener did not become ready on {admin}; its log:\n{}",
                listener.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut s, &mut response)?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:.80}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The listener's `GET /queue`: (draining, depth).
pub fn queue(admin: SocketAddr) -> Result<(bool, u64)> {
    let (status, body) = http(admin, "GET", "/queue")?;
    ensure!(status == 200, "GET /queue: {status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok((
        v["draining"].as_bool().context("draining")?,
        v["depth"].as_u64().context("depth")?,
    ))
}

/// Reads one SMTP reply (all its lines) and returns its code and text.
pub fn reply(reader: &mut BufReader<TcpStream>) -> Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        ensure!(
            reader.read_line(&mut line)? > 0,
            "connection closed; got so far: {text}"
        );
        text.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code = line
                .get(..3)
                .unwrap_or_default()
                .parse()
                .context("reply code")?;
            return Ok((code, text));
        }
    }
}

/// Reads a reply and checks its code.
pub fn expect(reader: &mut BufReader<TcpStream>, code: u16, after: &str) -> Result<String> {
    let (got, text) = reply(reader)?;
    ensure!(got == code, "after {after}: expected {code}, got {text}");
    Ok(text)
}

/// An SMTP session on `addr` after its greeting (returned too).
pub fn connect(addr: SocketAddr) -> Result<(BufReader<TcpStream>, TcpStream, String)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let (_, greeting) = reply(&mut reader)?;
    Ok((reader, writer, greeting))
}

/// Sends one message with `subject` from `sender@example.org` to `rcpt`; returns the
/// listener's 250 reply to the data.
pub fn send(addr: SocketAddr, rcpt: &str, subject: &str) -> Result<String> {
    let (mut reader, mut writer, greeting) = connect(addr)?;
    ensure!(greeting.starts_with("220"), "greeting: {greeting}");
    writer.write_all(b"EHLO client.example\r\n")?;
    expect(&mut reader, 250, "EHLO")?;
    writer.write_all(b"MAIL FROM:<sender@example.org>\r\n")?;
    expect(&mut reader, 250, "MAIL FROM")?;
    write!(writer, "RCPT TO:<{rcpt}>\r\n")?;
    expect(&mut reader, 250, "RCPT TO")?;
    writer.write_all(b"DATA\r\n")?;
    expect(&mut reader, 354, "DATA")?;
    write!(
        writer,
        "From: sender@example.org\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nBody of {subject}.\r\n.\r\n"
    )?;
    let accepted = expect(&mut reader, 250, "the message")?;
    writer.write_all(b"QUIT\r\n")?;
    expect(&mut reader, 221, "QUIT")?;
    Ok(accepted)
}

/// Postfix's `smtp-sink` on `addr`, dumping each transaction into a file of its own.
pub struct Sink {
    dumps: tempfile::TempDir,
    _process: Process,
}

impl Sink {
    /// Starts it on `addr` and waits until it listens; `None` (a loud skip) when
    /// smtp-sink is not installed.
    pub fn start(addr: SocketAddr) -> Result<Option<Self>> {
        let Some(bin) = require_tool("/usr/sbin/smtp-sink") else {
            return Ok(None);
        };
        let dumps = tempfile::tempdir()?;
        // smtp-sink drops privileges to `nobody` when run as root; it writes there.
        std::fs::set_permissions(dumps.path(), std::fs::Permissions::from_mode(0o777))?;
        let template = format!("{}/message.", dumps.path().display());
        let mut command = Command::new(bin);
        if std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
        {
            command.args(["-u", "nobody"]);
        }
        let process = Process(
            command
                .args(["-d", &template])
                .arg(addr.to_string())
                .arg("64")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting smtp-sink")?,
        );
        let deadline = Instant::now() + START;
        while TcpStream::connect(addr).is_err() {
            ensure!(
                Instant::now() < deadline,
                "smtp-sink did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(Self {
            dumps,
            _process: process,
        }))
    }

    /// The messages received so far, each as text.
    pub fn messages(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dumps.path())? {
            out.push(String::from_utf8_lossy(&std::fs::read(entry?.path())?).into_owned());
        }
        Ok(out)
    }

    /// How many received messages carry `Subject: <subject>` exactly.
    pub fn count(&self, subject: &str) -> Result<usize> {
        let line = format!("Subject: {subject}\r\n");
        Ok(self
            .messages()?
            .iter()
            .filter(|m| m.contains(&line) || m.contains(&line.replace('\r', "")))
            .count())
    }
}

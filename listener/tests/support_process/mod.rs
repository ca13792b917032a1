//! Support for the `process_*` tests, which run the real `postern-listener` binary as a
//! child process: a temporary working directory, free ports written into a YAML config,
//! the child with its output captured in files (and killed when dropped), the `check`
//! and `spool` subcommands, signals, a minimal HTTP GET and an SMTP client.
//!
//! The SMTP client here returns `io::Result` instead of panicking like the in-process
//! harness's client in `tests/common`: these tests kill the process under test while
//! clients are mid-conversation, and a dead peer must be an ordinary outcome.
#![allow(dead_code)]

pub mod sink;

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_postern-listener");

/// The hostname every test listener is configured with.
pub const HOST: &str = "mx.test";

/// The longest any single wait in these tests may take: a start, an exit, a reply.
pub const WAIT: Duration = Duration::from_secs(10);

/// `N` distinct addresses on 127.0.0.1 that were free a moment ago (each bound to
/// port 0, all held until every one is known, then released).
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("a bound address"))
}

/// Whether something accepts TCP connections at `addr` right now.
pub fn is_listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Takes a machine-wide lock serialising every test that uses the embedded default's
/// fixed ports (SMTP 127.0.0.1:2525, admin 127.0.0.1:8025). Held until dropped.
pub fn lock_default_ports() -> File {
    let path = std::env::temp_dir().join("postern-listener-default-ports.lock");
    let file = File::create(&path).expect("create the default-ports lock file");
    file.lock().expect("lock the default-ports lock file");
    file
}

/// A temporary working directory: config files, spool, record log and process output.
pub struct Workdir {
    dir: tempfile::TempDir,
}

/// One configuration file written by [`Workdir::config`] and what it points at.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The config file.
    pub config: PathBuf,
    /// `listeners[0].listen`.
    pub smtp: SocketAddr,
    /// `admin.listen`.
    pub admin: SocketAddr,
    /// `spool.path`.
    pub spool: PathBuf,
    /// `log` (the record log file).
    pub records: PathBuf,
}

impl Workdir {
    /// A fresh temporary directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("postern-process-")
                .tempdir()
                .expect("create a temporary directory"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write a file in the work directory");
        path
    }

    /// The spool every [`Workdir::config`] file shares.
    pub fn spool(&self) -> PathBuf {
        self.path().join("spool")
    }

    /// Writes `{name}.yaml`: one listener on a free port with hostname [`HOST`] plus
    /// `listener_keys` (YAML `key: value` lines of `listeners[0]`), the admin endpoint on
    /// another free port, the shared spool, the record log in `{name}.records.jsonl`,
    /// and `top_keys` (more top-level lines, e.g. `shutdownGracePeriod: 5s`).
    pub fn config(&self, name: &str, listener_keys: &[&str], top_keys: &[&str]) -> Setup {
        let [smtp, admin] = free_addrs();
        let spool = self.spool();
        let records = self.path().join(format!("{name}.records.jsonl"));
        let mut yaml = format!("listeners:\n  - listen: \"{smtp}\"\n    hostname: {HOST}\n");
        for key in listener_keys {
            yaml += &format!("    {key}\n");
        }
        yaml += &format!(
            "spool:\n  path: {spool:?}\nlog: {records:?}\nadmin:\n  listen: \"{admin}\"\n"
        );
        for key in top_keys {
            yaml += &format!("{key}\n");
        }
        let config = self.write(&format!("{name}.yaml"), &yaml);
        Setup {
            config,
            smtp,
            admin,
            spool,
            records,
        }
    }
}

impl Setup {
    /// The JSON records written to the record log so far.
    pub fn records(&self) -> Vec<Value> {
        read_records(&std::fs::read_to_string(&self.records).unwrap_or_default())
    }

    /// Waits until the record log holds `count` records of type `kind` (at most
    /// [`DELIVERY_WAIT`]); returns them.
    pub async fn wait_records(&self, kind: &str, count: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let found: Vec<Value> = self
                .records()
                .into_iter()
                .filter(|r| r["type"] == kind)
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                start.elapsed() < DELIVERY_WAIT,
                "{count} {kind} records expected, found {}: {:#?}",
                found.len(),
                self.records()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long a delivery the tests wait for may take.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// Parses JSON lines, skipping nothing: every line must be a JSON object.
pub fn read_records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("record log line is not JSON ({e}): {line}"));
            assert!(value.is_object(), "record is not an object: {line}");
            value
        })
        .collect()
}

/// A `postern-listener` child process. Killed (SIGKILL) when dropped while running.
pub struct Process {
    child: Child,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    /// Spawns the binary with `args` in `cwd`; stdout and stderr go to
    /// `{cwd}/{label}.stdout` and `.stderr`.
    pub fn spawn<S: AsRef<OsStr>>(cwd: &Path, label: &str, args: &[S]) -> Self {
        Self::spawn_wrapped(cwd, label, &[], args)
    }

    /// [`Process::spawn`] under `wrapper`, a command that runs the rest of its
    /// arguments (e.g. `["prlimit", "--nofile=400:400", "--"]`, which execs the binary
    /// so the pid is the listener's).
    pub fn spawn_wrapped<S: AsRef<OsStr>>(
        cwd: &Path,
        label: &str,
        wrapper: &[&str],
        args: &[S],
    ) -> Self {
        let stdout = cwd.join(format!("{label}.stdout"));
        let stderr = cwd.join(format!("{label}.stderr"));
        let mut command = match wrapper {
            [program, rest @ ..] => {
                let mut command = Command::new(program);
                command.args(rest).arg(BIN);
                command
            }
            [] => Command::new(BIN),
        };
        let child = command
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create the stdout file"))
            .stderr(File::create(&stderr).expect("create the stderr file"))
            .spawn()
            .expect("spawn postern-listener");
        Self {
            child,
            label: label.to_owned(),
            stdout,
            stderr,
        }
    }

    /// Runs `--config {setup.config}` and waits until `/readyz` answers 200.
    pub async fn start(work: &Workdir, setup: &Setup, label: &str) -> Self {
        let mut process = Self::spawn(
            work.path(),
            label,
            &[OsStr::new("--config"), setup.config.as_os_str()],
        );
        process.wait_ready(setup.admin).await;
        process
    }

    /// [`Process::start`] under `wrapper` (see [`Process::spawn_wrapped`]).
    pub async fn start_wrapped(
        work: &Workdir,
        setup: &Setup,
        label: &str,
        wrapper: &[&str],
    ) -> Self {
        let mut process = Self::spawn_wrapped(
            work.path(),
            label,
            wrapper,
            &[OsStr::new("--config"), setup.config.as_os_str()],
        );
        process.wait_ready(setup.admin).await;
        process
    }

    /// Resident memory now, in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// A `kB` field of /proc/PID/status, such as `VmRSS`, `VmHWM` or `VmSize`.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// Open file descriptors now (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Polls `/readyz` on `admin` until it answers 200; panics with the process's
    /// stderr when it exits first or takes longer than [`WAIT`].
    pub async fn wait_ready(&mut self, admin: SocketAddr) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.try_status() {
                panic!(
                    "{} exited with {status} before it was ready; stderr:\n{}",
                    self.label,
                    self.stderr()
                );
            }
            if let Ok((200, _)) = http_get(admin, "/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {WAIT:?}; stderr:\n{}",
                self.label,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (e.g. `INT`) with kill(1): the workspace forbids
    /// `unsafe`, so no libc call.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Sends SIGKILL and reaps the process.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL the listener");
        self.child.wait().expect("reap the listener");
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the child")
    }

    /// Waits up to `within` for the process to exit; panics when it does not.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {within:?}; stderr:\n{}",
                self.label,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit code (panics when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// The stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs the binary with `args` in `cwd` to its end (at most [`WAIT`]).
pub fn run_to_end<S: AsRef<OsStr>>(cwd: &Path, args: &[S]) -> Finished {
    run_command(Command::new(BIN).args(args).current_dir(cwd))
}

/// Runs any command to its end (at most [`WAIT`]), killing it on timeout.
pub fn run_command(command: &mut Command) -> Finished {
    let out = tempfile::tempdir().expect("a temporary directory for the output");
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create the stdout file"))
        .stderr(File::create(&stderr).expect("create the stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {WAIT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        status,
        stdout: std::fs::read(&stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
    }
}

/// `postern-listener spool list --spool DIR`: one envelope per line, by id. Fails if an
/// id is listed twice: every message is in the spool once.
pub fn spool_list(spool: &Path) -> BTreeMap<String, Value> {
    let cwd = spool.parent().expect("the spool has a parent directory");
    let finished = run_to_end(
        cwd,
        &[
            OsStr::new("spool"),
            OsStr::new("list"),
            OsStr::new("--spool"),
            spool.as_os_str(),
        ],
    );
    assert_eq!(finished.code(), 0, "spool list: {finished:?}");
    assert_eq!(finished.stderr, "", "spool list complained");
    let text = String::from_utf8(finished.stdout).expect("spool list prints UTF-8");
    let mut listed = BTreeMap::new();
    for envelope in read_records(&text) {
        let id = envelope["id"]
            .as_str()
            .unwrap_or_else(|| panic!("envelope without an id: {envelope}"))
            .to_owned();
        if let Some(first) = listed.insert(id.clone(), envelope) {
            panic!("spool list shows {id} twice (first: {first})");
        }
    }
    listed
}

/// `postern-listener spool show ID --spool DIR`: the stored bytes.
pub fn spool_show(spool: &Path, id: &str) -> Vec<u8> {
    let cwd = spool.parent().expect("the spool has a parent directory");
    let finished = run_to_end(
        cwd,
        &[
            OsStr::new("spool"),
            OsStr::new("show"),
            OsStr::new(id),
            OsStr::new("--spool"),
            spool.as_os_str(),
        ],
    );
    assert_eq!(finished.code(), 0, "spool show {id}: {finished:?}");
    finished.stdout
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Finds an external tool. When it is missing it reports the skip ([`postern_skip::skip`]:
/// a failure under CI) and returns `None`, so the caller can return.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = if name.contains('/') {
        Some(PathBuf::from(name)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        postern_skip::skip(&format!("{name} is not installed (scripts/install-deps)"));
    }
    found
}

/// A minimal HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP response: {response:?}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTP GET timed out"))?
}

/// The value of one sample in Prometheus text, e.g. `postern_rejections_total{code="550",reason="5.7.1"}`
/// or `postern_messages_accepted_total`. For a name without labels, the samples of
/// every label set are summed.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let matches =
            name == series || (!series.contains('{') && name.starts_with(&format!("{series}{{")));
        if matches {
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad sample: {line}"));
            total = Some(total.unwrap_or(0.0) + value);
        }
    }
    total
}

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply code.
    pub code: u16,
    /// Each line's text after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// Asserts the code and that the first line starts with `prefix` (e.g. `4.3.2`).
    #[track_caller]
    pub fn expect(&self, code: u16, prefix: &str) -> &Self {
        assert!(
            self.code == code && self.lines[0].starts_with(prefix),
            "expected {code} {prefix}…, got {self:?}"
        );
        self
    }

    /// The id of a `250 2.0.0 OK id=<32 hex>` reply.
    #[track_caller]
    pub fn id(&self) -> String {
        let id = self.lines[0]
            .strip_prefix("2.0.0 OK id=")
            .unwrap_or_else(|| panic!("not a 250 with an id: {self:?}"));
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "id is not 32 hex digits: {self:?}"
        );
        id.to_owned()
    }
}

/// An SMTP client over TCP whose every step can fail without panicking.
pub struct Smtp {
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Connects from `local` (e.g. 127.0.0.2, a loopback address outside relayHosts).
    pub async fn connect_from(addr: SocketAddr, local: IpAddr) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(local, 0))?;
        Ok(Self {
            reader: BufReader::new(socket.connect(addr).await?),
        })
    }

    /// A client over a connection made elsewhere.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Connects, expects the 220 greeting and says EHLO.
    pub async fn greeted(addr: SocketAddr) -> io::Result<Self> {
        let mut smtp = Self::connect(addr).await?;
        smtp.hello().await?;
        Ok(smtp)
    }

    /// Expects the 220 greeting naming [`HOST`] and says EHLO.
    pub async fn hello(&mut self) -> io::Result<()> {
        let greeting = self.reply().await?;
        expect(&greeting, 220, HOST, "the greeting")?;
        let ehlo = self.cmd("EHLO client.test").await?;
        expect(&ehlo, 250, HOST, "EHLO")
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes).await
    }

    /// Reads one (possibly multi-line) reply; EOF and a silent server are errors.
    pub async fn reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let malformed = || io::Error::other(format!("malformed reply line {line:?}"));
            if !line.ends_with("\r\n") || line.len() < 6 {
                return Err(malformed());
            }
            let code = line[..3].parse().map_err(|_| malformed())?;
            lines.push(line[4..line.len() - 2].to_owned());
            match line.as_bytes()[3] {
                b' ' => return Ok(Reply { code, lines }),
                b'-' => {}
                _ => return Err(malformed()),
            }
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// MAIL, RCPT for each recipient and DATA with `body` (CRLF lines, no final dot);
    /// returns the reply to the final dot. A refusal before that is an error.
    pub async fn send_message(&mut self, from: &str, to: &[&str], body: &str) -> io::Result<Reply> {
        self.send_message_start(from, to).await?;
        self.send(body.as_bytes()).await?;
        self.send(b".\r\n").await?;
        self.reply().await
    }

    /// MAIL, RCPT for each recipient and DATA, up to the 354; a refusal is an error.
    pub async fn send_message_start(&mut self, from: &str, to: &[&str]) -> io::Result<()> {
        let mail = self.cmd(&format!("MAIL FROM:<{from}>")).await?;
        expect(&mail, 250, "2.1.0", "MAIL")?;
        for rcpt in to {
            let reply = self.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
            expect(&reply, 250, "2.1.5", "RCPT")?;
        }
        let data = self.cmd("DATA").await?;
        expect(&data, 354, "", "DATA")
    }

    /// Whether the server closes the connection (EOF or reset) within [`WAIT`] without
    /// sending anything more.
    pub async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(WAIT, self.reader.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

fn expect(reply: &Reply, code: u16, prefix: &str, what: &str) -> io::Result<()> {
    if reply.code == code && reply.lines[0].starts_with(prefix) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected reply to {what}: {reply:?}"
        )))
    }
}

/// A small message whose body carries `marker`.
pub fn message(marker: &str) -> String {
    format!("Subject: {marker}\r\nFrom: <sender@example.org>\r\n\r\nbody {marker}\r\n")
}

/// Acknowledged messages: (id, the marker in the message's body).
pub type Acked = Arc<Mutex<Vec<(String, String)>>>;

/// How [`send_until_stopped`] ended.
#[derive(Debug)]
pub enum Stopped {
    /// The connection failed, closed or went silent.
    Died(io::Error),
    /// The server refused a step (greeting, EHLO, MAIL, RCPT, DATA or the message).
    Refused(Reply),
}

/// Sends messages (body [`message`] of `{name}-{n}`) on one connection until the
/// server refuses a step or the connection dies; pushes each acknowledged id to `acked`.
pub async fn send_until_stopped(addr: SocketAddr, name: String, acked: Acked) -> Stopped {
    match try_send_forever(addr, &name, acked).await {
        Ok(never) => match never {},
        Err(stopped) => stopped,
    }
}

async fn try_send_forever(
    addr: SocketAddr,
    name: &str,
    acked: Acked,
) -> Result<std::convert::Infallible, Stopped> {
    fn step(result: io::Result<Reply>, code: u16) -> Result<Reply, Stopped> {
        match result {
            Ok(reply) if reply.code == code => Ok(reply),
            Ok(reply) => Err(Stopped::Refused(reply)),
            Err(e) => Err(Stopped::Died(e)),
        }
    }
    let mut client = Smtp::connect(addr).await.map_err(Stopped::Died)?;
    step(client.reply().await, 220)?;
    step(client.cmd("EHLO client.test").await, 250)?;
    for n in 0.. {
        let marker = format!("{name}-{n}");
        step(client.cmd("MAIL FROM:<sender@example.org>").await, 250)?;
        step(client.cmd("RCPT TO:<rcpt@example.com>").await, 250)?;
        step(client.cmd("DATA").await, 354)?;
        let body = format!("{}.\r\n", message(&marker));
        client.send(body.as_bytes()).await.map_err(Stopped::Died)?;
        let reply = step(client.reply().await, 250)?;
        acked.lock().unwrap().push((reply.id(), marker));
    }
    unreachable!("an unbounded loop")
}

/// The kinds of hostile client [`hostile`] plays.
pub const HOSTILE_KINDS: &[&str] = &[
    "idle",
    "never-reads",
    "trickle-command",
    "trickle-data",
    "unfinished-body",
    "size-announced",
    "garbage",
    "bad-ehlo",
    "stalled-tls",
];

/// One hostile client of issue 12, by kind (see [`HOSTILE_KINDS`]): what it does once
/// connected, until the listener cuts it off.
pub async fn hostile(kind: &'static str, addr: SocketAddr) -> std::io::Result<()> {
    match kind {
        "idle" => {
            let mut smtp = Smtp::greeted(addr).await?;
            smtp.closed().await;
        }
        "never-reads" => {
            let mut stream = TcpStream::connect(addr).await?;
            let noops = "NOOP\r\n".repeat(10_000);
            while stream.write_all(noops.as_bytes()).await.is_ok() {}
        }
        "trickle-command" | "trickle-data" => {
            let mut smtp = Smtp::greeted(addr).await?;
            if kind == "trickle-data" {
                smtp.send_message_start("t@example.org", &["r@example.com"])
                    .await?;
            }
            loop {
                smtp.send(b"x").await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        "unfinished-body" => {
            let mut smtp = Smtp::greeted(addr).await?;
            smtp.cmd("MAIL FROM:<u@example.org> SIZE=20000000").await?;
            smtp.cmd("RCPT TO:<r@example.com>").await?;
            smtp.cmd("DATA").await?;
            let chunk = format!("{}\r\n", "y".repeat(998)).repeat(100);
            for _ in 0..40 {
                smtp.send(chunk.as_bytes()).await?;
            }
            smtp.closed().await;
        }
        "size-announced" => {
            let mut smtp = Smtp::greeted(addr).await?;
            smtp.cmd("MAIL FROM:<s@example.org> SIZE=20000000").await?;
            smtp.cmd("RCPT TO:<r@example.com>").await?;
            smtp.cmd("DATA").await?;
            smtp.send(b"Subject: announced big\r\n\r\nsmall\r\n")
                .await?;
            smtp.closed().await;
        }
        "garbage" => {
            let mut stream = TcpStream::connect(addr).await?;
            let garbage = "XYZZY \x00\x1b garbage\r\n".repeat(1000);
            for _ in 0..100 {
                stream.write_all(garbage.as_bytes()).await?;
            }
        }
        "bad-ehlo" => {
            let mut smtp = Smtp::connect(addr).await?;
            smtp.reply().await?;
            for _ in 0..50 {
                smtp.send(b"EHLO evil\x1b[2J\xff\r\n").await?;
                smtp.reply().await?;
            }
        }
        "stalled-tls" => {
            let mut smtp = Smtp::greeted(addr).await?;
            smtp.cmd("STARTTLS").await?;
            smtp.closed().await;
        }
        other => unreachable!("{other}"),
    }
    Ok(())
}

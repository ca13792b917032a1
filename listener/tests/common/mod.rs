//! Test harness: a real listener in this process on 127.0.0.1:0, a raw SMTP client
//! over real TCP, and readers for the spool and the record log.
#![allow(dead_code, missing_docs)]

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use postern_config::{Config, ListenerConfig};
use postern_listener::server::{self, Running};
use postern_spool::Envelope;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
};

/// The hostname every test listener uses.
pub const HOST: &str = "mx.test";

/// A running listener with its own spool and log in a temporary directory.
pub struct Harness {
    pub running: Option<Running>,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// Parses YAML into a config value (for `domains` and other maps in tests).
pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).expect("test YAML parses")
}

impl Harness {
    /// Starts a listener with default parameters changed by `edit`.
    pub async fn start(edit: impl FnOnce(&mut ListenerConfig)) -> Self {
        Self::start_on("127.0.0.1:0", edit).await
    }

    /// Starts a listener on `listen` (e.g. `[::1]:0`).
    pub async fn start_on(listen: &str, edit: impl FnOnce(&mut ListenerConfig)) -> Self {
        let mut listener = ListenerConfig {
            hostname: Some(HOST.into()),
            listen: listen.parse().unwrap(),
            ..Default::default()
        };
        edit(&mut listener);
        Self::start_config(|config| config.listeners = vec![listener]).await
    }

    /// Starts with a whole configuration changed by `edit` (spool, log and admin are
    /// pointed at the temporary directory and an ephemeral port first).
    pub async fn start_config(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded_default();
        config.spool.path = dir.path().join("spool");
        config.log = postern_config::LogTarget::File(dir.path().join("records.jsonl"));
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        config.shutdown_grace_period = "2s".parse().unwrap();
        edit(&mut config);
        let running = server::start(config).await.expect("listener starts");
        Self {
            smtp: running.smtp[0],
            admin: running.admin,
            running: Some(running),
            dir,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.smtp).await
    }

    pub async fn client_from(&self, local: &str) -> Client {
        Client::connect_from(self.smtp, local.parse().unwrap()).await
    }

    /// A client connected from `local` (e.g. 127.0.0.2, outside the default relay
    /// hosts), greeted and past EHLO.
    pub async fn outsider(&self, local: &str) -> Client {
        let mut client = self.client_from(local).await;
        client.reply().await.assert(220, HOST);
        client.cmd("EHLO outsider.test").await.assert(250, HOST);
        client
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Every spooled message with its exact bytes.
    pub fn spooled(&self) -> Vec<(Envelope, Vec<u8>)> {
        let dir = self.spool_dir();
        postern_spool::list(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let bytes = postern_spool::show(&dir, &e.id).unwrap();
                (e, bytes)
            })
            .collect()
    }

    /// Stops the listener and returns every log record written.
    pub async fn stop(&mut self) -> Vec<Value> {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
        self.records()
    }

    /// The log records written so far (complete after [`Harness::stop`]).
    pub fn records(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("records.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// GET on the admin endpoint: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }
}

/// A minimal HTTP/1.1 GET over real TCP.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// One reply as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Asserts the code and that the (first line's) text starts with `prefix`.
    #[track_caller]
    pub fn assert(&self, code: u16, prefix: &str) -> &Self {
        assert_eq!(self.code, code, "{self:?}");
        assert!(
            self.lines[0].starts_with(prefix),
            "expected '{prefix}…': {self:?}"
        );
        self
    }
}

/// A raw SMTP client over TCP.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            reader: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    /// Connects from a chosen local address (e.g. 127.0.0.2 to be a non-relay peer).
    pub async fn connect_from(addr: SocketAddr, local: IpAddr) -> Self {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .unwrap();
        socket.bind(SocketAddr::new(local, 0)).unwrap();
        Self {
            reader: BufReader::new(socket.connect(addr).await.unwrap()),
        }
    }

    /// Reads the greeting and sends EHLO.
    pub async fn hello(addr: SocketAddr) -> Self {
        let mut client = Self::connect(addr).await;
        client.reply().await.assert(220, HOST);
        client.cmd("EHLO client.test").await.assert(250, HOST);
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.unwrap();
    }

    /// Reads one (possibly multi-line) reply; panics on EOF.
    pub async fn reply(&mut self) -> Reply {
        self.try_reply()
            .await
            .expect("connection closed while waiting for a reply")
    }

    /// Reads one reply, or None when the server closed the connection.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("reply within 10s")
                .ok()?;
            if n == 0 {
                return None;
            }
            assert!(
                line.ends_with("\r\n"),
                "reply line must end with CRLF: {line:?}"
            );
            let code = line[..3].parse().unwrap();
            lines.push(line[4..line.len() - 2].to_owned());
            if line.as_bytes()[3] == b' ' {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Sends a command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Whether the server closes the connection within 5s (anything it still sends,
    /// such as a TLS alert, is read and ignored).
    pub async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        let drain = async {
            loop {
                match self.reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .unwrap_or(false)
    }

    /// MAIL, RCPT for each recipient, DATA with `body`; returns the final reply.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        self.cmd(&format!("MAIL FROM:<{from}>"))
            .await
            .assert(250, "2.1.0");
        for rcpt in to {
            self.cmd(&format!("RCPT TO:<{rcpt}>"))
                .await
                .assert(250, "2.1.5");
        }
        self.cmd("DATA").await.assert(354, "");
        self.send(body.as_bytes()).await;
        self.send(b".\r\n").await;
        self.reply().await
    }

    /// DATA with `body` (after MAIL and RCPT were accepted); returns the final reply.
    pub async fn send_mail_data(&mut self, body: &str) -> Reply {
        self.cmd("DATA").await.assert(354, "");
        self.send(body.as_bytes()).await;
        self.send(b".\r\n").await;
        self.reply().await
    }

    pub fn into_inner(self) -> TcpStream {
        self.reader.into_inner()
    }
}

/// The id from a `250 2.0.0 OK id=…` reply.
pub fn id_of(reply: &Reply) -> String {
    reply.lines[0].rsplit("id=").next().unwrap().to_owned()
}

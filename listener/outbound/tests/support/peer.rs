//! A scripted SMTP server on 127.0.0.1 for what real servers do badly: each accepted
//! connection runs the test's script, and every line the client sent is logged.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What the client sent on each connection, one entry per line (`DATA` bodies as
/// `<body N octets>`), in accept order.
pub type Log = Arc<Mutex<Vec<Vec<String>>>>;

/// The server; stops when dropped.
pub struct Peer {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Listens on 127.0.0.1:0 and runs `script` for every connection.
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_tls(None, script).await
    }

    /// Like [`start`](Self::start), with a TLS configuration for STARTTLS and implicit TLS.
    pub async fn start_tls<F, Fut>(tls: Option<Arc<ServerConfig>>, script: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_on("127.0.0.1:0", tls, script).await
    }

    /// Like [`start_tls`](Self::start_tls), listening on `bind` (e.g. `[::1]:0`).
    pub async fn start_on<F, Fut>(bind: &str, tls: Option<Arc<ServerConfig>>, script: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(bind)
            .await
            .expect("bind the peer's address");
        let addr = listener.local_addr().expect("a local address");
        let log: Log = Arc::default();
        let task_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            let mut index = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                task_log.lock().expect("log").push(Vec::new());
                let session = Session {
                    stream: Some(Stream::Plain(tcp)),
                    buf: Vec::new(),
                    log: Arc::clone(&task_log),
                    index,
                    tls: tls.clone(),
                };
                index += 1;
                tokio::spawn(script(session));
            }
        });
        Self { addr, log, task }
    }

    /// The lines received on each connection so far.
    pub fn log(&self) -> Vec<Vec<String>> {
        self.log.lock().expect("log").clone()
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.lock().expect("log").len()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One accepted connection, seen from the server's side.
pub struct Session {
    stream: Option<Stream>,
    buf: Vec<u8>,
    log: Log,
    index: usize,
    tls: Option<Arc<ServerConfig>>,
}

/// What [`Session::serve`]'s answer function may return besides a reply.
pub const DROP: &str = "<drop the connection>";

impl Session {
    /// 0 for the first connection, 1 for the second, ...
    pub fn index(&self) -> usize {
        self.index
    }

    /// Writes `text` as it is.
    pub async fn send(&mut self, text: &str) {
        let result = match self.stream.as_mut() {
            Some(Stream::Plain(s)) => s.write_all(text.as_bytes()).await,
            Some(Stream::Tls(s)) => match s.write_all(text.as_bytes()).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            None => Ok(()),
        };
        if result.is_err() {
            self.stream = None;
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = match self.stream.as_mut() {
            Some(Stream::Plain(s)) => s.read(&mut chunk).await.unwrap_or(0),
            Some(Stream::Tls(s)) => s.read(&mut chunk).await.unwrap_or(0),
            None => 0,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    fn record(&self, line: String) {
        self.log.lock().expect("log")[self.index].push(line);
    }

    /// The next CRLF line from the client, logged; None when it closed.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                self.record(line.clone());
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The message after a 354, up to and including CRLF.CRLF; logged by its length.
    pub async fn data(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.buf.windows(5).position(|w| w == b"\r\n.\r\n") {
                let body: Vec<u8> = self.buf.drain(..at + 5).collect();
                self.record(format!("<body {} octets>", body.len()));
                return Some(body);
            }
            if self.buf == b".\r\n" {
                self.buf.clear();
                self.record("<body 0 octets>".into());
                return Some(Vec::new());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Upgrades to TLS (after the script sent its 220 to STARTTLS, or at once for
    /// implicit TLS).
    pub async fn tls(&mut self) -> bool {
        let config = self.tls.clone().expect("a peer with TLS");
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return false;
        };
        match TlsAcceptor::from(config).accept(tcp).await {
            Ok(tls) => {
                self.stream = Some(Stream::Tls(Box::new(tls)));
                self.record("<tls>".into());
                true
            }
            Err(e) => {
                self.record(format!("<tls failed: {e}>"));
                false
            }
        }
    }

    /// Closes the connection.
    pub fn drop_connection(&mut self) {
        self.record("<dropped>".into());
        self.stream = None;
    }

    /// Greets with `answer("<connect>")`, then answers each command with
    /// `answer(command)` until QUIT or the client leaves;
    /// after a `354` to DATA it reads the message and answers `answer("<dot>")`.
    /// `STARTTLS` answered with `220` upgrades the session. [`DROP`] closes the
    /// connection instead of answering.
    pub async fn serve(mut self, mut answer: impl FnMut(&str) -> String + Send) {
        let greeting = answer("<connect>");
        if greeting == DROP {
            self.drop_connection();
            return;
        }
        self.send(&greeting).await;
        while let Some(line) = self.line().await {
            let command = line.to_ascii_uppercase();
            let reply = answer(&line);
            if reply == DROP {
                self.drop_connection();
                return;
            }
            self.send(&reply).await;
            if command == "QUIT" {
                return;
            }
            if command == "STARTTLS" && reply.starts_with("220") && !self.tls().await {
                return;
            }
            if command == "DATA" && reply.starts_with("354") {
                if self.data().await.is_none() {
                    return;
                }
                let reply = answer("<dot>");
                if reply == DROP {
                    self.drop_connection();
                    return;
                }
                self.send(&reply).await;
            }
        }
    }
}

/// A well-behaved answer for the usual commands: 220 on connect, `ehlo` for EHLO, 250 for MAIL, RCPT
/// and RSET, 354 for DATA, 250 after the dot, 221 for QUIT, 502 otherwise.
pub fn usual(line: &str, ehlo: &str) -> String {
    let upper = line.to_ascii_uppercase();
    let verb = upper.split([' ', ':']).next().unwrap_or("");
    match verb {
        "<CONNECT>" => "220 mx.test ESMTP\r\n".into(),
        "EHLO" => ehlo.to_string(),
        "HELO" => "250 mx.test\r\n".into(),
        "MAIL" => "250 2.1.0 ok\r\n".into(),
        "RCPT" => "250 2.1.5 ok\r\n".into(),
        "RSET" => "250 2.0.0 ok\r\n".into(),
        "DATA" => "354 go ahead\r\n".into(),
        "<DOT>" => "250 2.0.0 queued\r\n".into(),
        "QUIT" => "221 2.0.0 bye\r\n".into(),
        "STARTTLS" => "220 2.0.0 ready\r\n".into(),
        _ => "502 5.5.1 not implemented\r\n".into(),
    }
}

/// An EHLO reply offering PIPELINING, SIZE, 8BITMIME, SMTPUTF8.
pub const EHLO_FULL: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";

/// An EHLO reply offering nothing but SIZE.
pub const EHLO_BARE: &str = "250-mx.test\r\n250 SIZE\r\n";

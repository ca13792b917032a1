//! One SMTP connection to one next hop: TCP (and TLS) around `postern-smtp`'s client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_smtp::capabilities::Capabilities;
use postern_smtp::client::{Client, ClientConfig, ClientError, Envelope, Phase, StartTls, Step};
use postern_smtp::credentials::Credentials;
use postern_smtp::dot_stuff::dot_stuff;
use postern_smtp::outcome::MessageOutcome;
use postern_smtp::reply::Reply;
use postern_smtp::reply_parser::parse_reply;
use rustls::ClientConfig as TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ConnectFailure, OutboundError};
use crate::resolve::NextHop;
use crate::timeouts::Timeouts;
use crate::tls::{TlsClients, TlsMode, server_name};
use crate::tls_session::TlsSession;

/// How to talk to a next hop.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// The name sent in EHLO: this relay's hostname.
    pub ehlo_name: String,
    /// The TCP port (25 toward MX, the smarthost's port otherwise).
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// AUTH credentials (smarthosts); only ever sent over TLS.
    pub credentials: Option<Credentials>,
    /// Per-phase timeouts.
    pub timeouts: Timeouts,
    /// How many addresses to try, across all hops, before giving up (Postfix's
    /// `smtp_mx_address_limit` is 5).
    pub max_attempts: usize,
}

impl ConnectOptions {
    /// Options with KumoMTA's default timeouts, five attempts and no credentials.
    pub fn new(ehlo_name: impl Into<String>, port: u16, tls: TlsMode) -> Self {
        Self {
            ehlo_name: ehlo_name.into(),
            port,
            tls,
            credentials: None,
            timeouts: Timeouts::default(),
            max_attempts: 5,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        }
    }
}

/// An established SMTP session with a next hop, ready for messages: greeted, EHLO
/// done, TLS and AUTH as configured. Send messages with [`send`](Self::send), end with
/// [`quit`](Self::quit).
pub struct OutboundConnection {
    stream: Option<Stream>,
    client: Client,
    read_buf: Vec<u8>,
    peer: SocketAddr,
    host: String,
    timeouts: Timeouts,
    last_used: Instant,
}

impl std::fmt::Debug for OutboundConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConnection")
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("tls", &self.client.is_tls())
            .field("usable", &self.is_usable())
            .finish_non_exhaustive()
    }
}

impl OutboundConnection {
    /// Connects to the first hop and address that completes a session: the hops in
    /// order, each one's addresses in order, at most `options.max_attempts` addresses.
    /// A failed TCP connect, TLS handshake or session setup moves on to the next
    /// address; wrong credentials (a 5xx to AUTH) stop at once, since every address
    /// would refuse them alike. Returns the last failure when none succeeds.
    pub async fn connect(
        hops: &[NextHop],
        options: &ConnectOptions,
        tls: &TlsClients,
    ) -> Result<Self, OutboundError> {
        let mut last = OutboundError::NoAddress;
        let attempts = hops
            .iter()
            .flat_map(|hop| hop.socket_addrs(options.port).map(move |addr| (hop, addr)))
            .take(options.max_attempts.max(1));
        for (hop, address) in attempts {
            match Self::connect_one(&hop.name, address, options, tls).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    tracing::debug!(host = %hop.name, %address, error = %e, "next hop attempt failed");
                    let stop = matches!(
                        &e,
                        OutboundError::Rejected { phase: Phase::Auth, reply, .. } if reply.code >= 500
                    ) || matches!(e, OutboundError::TlsSetup(_));
                    last = e;
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Connects to one address of the host `host` (the name its certificate must carry).
    pub async fn connect_one(
        host: &str,
        address: SocketAddr,
        options: &ConnectOptions,
        tls: &TlsClients,
    ) -> Result<Self, OutboundError> {
        let tcp = match timeout(options.timeouts.connect, TcpStream::connect(address)).await {
            Err(_) => {
                return Err(OutboundError::Connect {
                    address,
                    failure: ConnectFailure::Timeout,
                });
            }
            Ok(Err(e)) => {
                let failure = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
                    _ => ConnectFailure::Other(e.to_string()),
                };
                return Err(OutboundError::Connect { address, failure });
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().unwrap_or(address);
        let tls_config = tls.for_mode(options.tls);
        let implicit = options.tls == TlsMode::Implicit;
        let stream = if implicit {
            let config = tls_config
                .clone()
                .expect("implicit TLS has a configuration");
            let phase_timeout = options.timeouts.starttls;
            Stream::Tls(Box::new(
                handshake(tcp, config, host, peer, phase_timeout).await?,
            ))
        } else {
            Stream::Plain(tcp)
        };
        let starttls = match options.tls {
            TlsMode::Required => StartTls::Required,
            TlsMode::Opportunistic => StartTls::Opportunistic,
            TlsMode::Implicit | TlsMode::None => StartTls::Never,
        };
        let mut connection = Self {
            stream: Some(stream),
            client: Client::new(ClientConfig {
                ehlo_name: options.ehlo_name.clone(),
                starttls,
                implicit_tls: implicit,
                credentials: options.credentials.clone(),
            }),
            read_buf: Vec::with_capacity(4096),
            peer,
            host: host.to_string(),
            timeouts: options.timeouts,
            last_used: Instant::now(),
        };
        let step = connection.client.start();
        match connection.drive(step, None, tls_config).await? {
            Step::Ready => Ok(connection),
            other => Err(OutboundError::Protocol {
                phase: Phase::Ehlo,
                peer,
                reason: format!("session setup ended with {other:?}"),
            }),
        }
    }

    /// The remote address (the records' `peer_address`).
    pub fn peer_address(&self) -> SocketAddr {
        self.peer
    }

    /// The name of the host connected to (MX host or smarthost).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What the server offered in its last EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        self.client.capabilities()
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.client.is_tls()
    }

    /// What the TLS session negotiated (version, cipher, the peer's certificate
    /// subject); `None` for a plaintext session.
    pub fn tls_session(&self) -> Option<TlsSession> {
        match self.stream.as_ref()? {
            Stream::Tls(stream) => TlsSession::of(stream.get_ref().1),
            Stream::Plain(_) => None,
        }
    }

    /// Whether another message can be sent on this connection.
    pub fn is_usable(&self) -> bool {
        self.stream.is_some() && self.client.is_ready()
    }

    /// How long since the connection last carried anything; close it with
    /// [`quit`](Self::quit) once this passes [`Timeouts::idle`].
    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// The idle limit this connection was opened with.
    pub fn idle_timeout(&self) -> Duration {
        self.timeouts.idle
    }

    /// Sends one message: `body` as the spool holds it (CRLF line ends, not
    /// dot-stuffed). Returns one outcome per envelope recipient, in order: each
    /// recipient's RCPT reply and, for the accepted ones, the reply to DATA or after the
    /// final dot. Recipients refused before anything is sent (SMTPUTF8 needed but not
    /// offered: `550 5.6.7`; over the SIZE limit: `552 5.3.4`) carry a synthetic reply.
    ///
    /// An `Err` means the connection failed (timeout, drop, protocol error) and is now
    /// closed; a [`OutboundError::Dropped`] or [`OutboundError::Timeout`] in
    /// [`Phase::DataDot`] leaves it unknown whether the server took the message.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<MessageOutcome, OutboundError> {
        if !self.is_usable() {
            return Err(OutboundError::Closed);
        }
        let step = self
            .client
            .start_message(envelope, body)
            .map_err(|e| self.client_error(e))?;
        let result = self.drive(step, Some(body), None).await;
        self.last_used = Instant::now();
        match result? {
            Step::Done(outcome) => {
                if self.client.is_closed() {
                    self.close().await;
                }
                Ok(outcome)
            }
            other => Err(OutboundError::Protocol {
                phase: Phase::MailFrom,
                peer: self.peer,
                reason: format!("transaction ended with {other:?}"),
            }),
        }
    }

    /// Ends the session with QUIT and closes the connection. The server's reply is
    /// waited for (at most the QUIT timeout) but not required.
    pub async fn quit(mut self) {
        if self.stream.is_some() && !self.client.is_closed() {
            let step = self.client.quit();
            if let Err(e) = self.drive(step, None, None).await {
                tracing::debug!(peer = %self.peer, error = %e, "QUIT not answered");
            }
        }
        self.close().await;
    }

    async fn close(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = timeout(self.timeouts.quit, stream.shutdown()).await;
        }
    }

    /// Runs the client until it is ready, done or closed.
    async fn drive(
        &mut self,
        mut step: Step,
        body: Option<&[u8]>,
        tls: Option<Arc<TlsConfig>>,
    ) -> Result<Step, OutboundError> {
        let result = self.drive_inner(&mut step, body, tls).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn drive_inner(
        &mut self,
        step: &mut Step,
        body: Option<&[u8]>,
        tls: Option<Arc<TlsConfig>>,
    ) -> Result<Step, OutboundError> {
        loop {
            let phase = match std::mem::replace(step, Step::Closed) {
                Step::Send { bytes, phase } => {
                    self.write(&bytes, phase).await?;
                    phase
                }
                Step::Read { phase } => phase,
                Step::SendBody => {
                    let body = body.expect("a body is given with every message");
                    self.write(&dot_stuff(body), Phase::DataDot).await?;
                    Phase::DataDot
                }
                Step::StartTls => {
                    let config = tls.clone().expect("STARTTLS is only asked for with TLS on");
                    self.upgrade(config).await?;
                    *step = self.client.tls_established();
                    continue;
                }
                done @ (Step::Ready | Step::Done(_) | Step::Closed) => return Ok(done),
            };
            let reply = self.read_reply(phase).await?;
            *step = match self.client.on_reply(reply) {
                Ok(next) => next,
                Err(e) => return Err(self.client_error(e)),
            };
        }
    }

    async fn upgrade(&mut self, config: Arc<TlsConfig>) -> Result<(), OutboundError> {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(OutboundError::Protocol {
                phase: Phase::StartTls,
                peer: self.peer,
                reason: "STARTTLS on a connection that is already TLS".into(),
            });
        };
        if !self.read_buf.is_empty() {
            // Bytes after the 220 would be injected into the TLS session (CVE-2011-0411).
            return Err(OutboundError::Protocol {
                phase: Phase::StartTls,
                peer: self.peer,
                reason: "data after the STARTTLS reply".into(),
            });
        }
        let tls = handshake(tcp, config, &self.host, self.peer, self.timeouts.starttls).await?;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8], phase: Phase) -> Result<(), OutboundError> {
        let peer = self.peer;
        let stream = self.stream.as_mut().ok_or(OutboundError::Closed)?;
        match timeout(self.timeouts.for_phase(phase), stream.write_all(bytes)).await {
            Err(_) => Err(OutboundError::Timeout { phase, peer }),
            Ok(Err(e)) => Err(OutboundError::Dropped {
                phase,
                peer,
                reason: e.to_string(),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn read_reply(&mut self, phase: Phase) -> Result<Reply, OutboundError> {
        let peer = self.peer;
        let limit = self.timeouts.for_phase(phase);
        loop {
            match parse_reply(&self.read_buf) {
                Ok(Some((reply, used))) => {
                    self.read_buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(OutboundError::protocol(phase, peer, &e)),
            }
            let stream = self.stream.as_mut().ok_or(OutboundError::Closed)?;
            let mut chunk = [0u8; 4096];
            let n = match timeout(limit, stream.read(&mut chunk)).await {
                Err(_) => return Err(OutboundError::Timeout { phase, peer }),
                Ok(Err(e)) => {
                    return Err(OutboundError::Dropped {
                        phase,
                        peer,
                        reason: e.to_string(),
                    });
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(OutboundError::Dropped {
                    phase,
                    peer,
                    reason: "closed by the peer".into(),
                });
            }
            self.read_buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn client_error(&self, error: ClientError) -> OutboundError {
        let peer = self.peer;
        match error {
            ClientError::Rejected { phase, reply } => {
                OutboundError::Rejected { phase, reply, peer }
            }
            ClientError::TlsNotOffered => OutboundError::TlsNotOffered { peer },
            ClientError::AuthNotOffered => OutboundError::AuthNotOffered { peer },
            ClientError::AuthWithoutTls => OutboundError::AuthWithoutTls { peer },
            ClientError::Unexpected { phase, reply } => OutboundError::Protocol {
                phase,
                peer,
                reason: format!("unexpected reply {} {}", reply.code, reply.content()),
            },
            ClientError::NotReady => OutboundError::Closed,
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    config: Arc<TlsConfig>,
    host: &str,
    peer: SocketAddr,
    limit: Duration,
) -> Result<TlsStream<TcpStream>, OutboundError> {
    let name = server_name(host)?;
    match timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
        Err(_) => Err(OutboundError::Timeout {
            phase: Phase::StartTls,
            peer,
        }),
        Ok(Err(e)) => Err(OutboundError::Tls {
            peer,
            reason: e.to_string(),
        }),
        Ok(Ok(stream)) => Ok(stream),
    }
}

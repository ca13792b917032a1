//! The connection driver: moves bytes between a socket and a [`Session`], with the
//! deadlines, STARTTLS, the data budget, the spool and the shutdown deadline. All SMTP
//! decisions are the session's; this module only does I/O.
//!
//! Deadlines: each read waits at most `clientTimeout`; a whole command line must
//! arrive within `commandTimeout` and the whole message data within `dataTimeout`,
//! however slowly it trickles; every write of replies must be taken by the client
//! within `writeTimeout`; the STARTTLS handshake within `tlsHandshakeTimeout`; the
//! work after the final dot within `dataProcessingTimeout`. Once shutdown began,
//! nothing waits past the grace deadline.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use chrono::Utc;
use postern_config::{InvalidLineEndings, ListenerTls};
use postern_spool::{Envelope, MessageId, Spool};
use postern_tls::{TlsFacts, TlsProvider};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    sync::watch,
    time::Instant,
};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::{
    budget::{DataBudget, Share},
    context::ListenerContext,
    delivery::{DeliveryQueue, queued_message},
    log::RecordLog,
    metrics::Metrics,
    proxy_protocol,
    session::{Action, AfterData, Delivery, Session, TlsInfo},
    smtp::{
        data::{BareLineEndings, DataFramer, DataOptions, DataOutcome},
        line::{Split, skip_to_line_end, split_line_limit},
        reply::Reply,
    },
};

/// Read size while reading commands: an idle connection holds about this much.
const COMMAND_CHUNK: usize = 1024;
/// Read size inside DATA (charged to the data budget).
const DATA_CHUNK: usize = 64 * 1024;
/// A read buffer larger than this is given back after DATA.
const KEEP_READ_BUFFER: usize = 8 * 1024;

/// What every connection of one listener shares.
pub struct Shared {
    /// The listener's context.
    pub ctx: Arc<ListenerContext>,
    /// The listener's index in the configuration.
    pub index: usize,
    /// The delivery queue, when the listener delivers (has a `delivery` section).
    pub delivery: Option<Arc<dyn DeliveryQueue>>,
    /// The STARTTLS certificates.
    pub tls: Arc<TlsProvider>,
    /// The spool.
    pub spool: Spool,
    /// The record log.
    pub log: RecordLog,
    /// Metrics.
    pub metrics: Metrics,
    /// The process-wide budget of message data in memory.
    pub budget: DataBudget,
    /// `None` while running; the grace deadline once shutdown began.
    pub shutdown: watch::Receiver<Option<Instant>>,
    /// Cancelled when the grace period is over: every session ends at once.
    pub hard_stop: CancellationToken,
}

/// A plaintext or TLS socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Why reading stopped.
enum Stop {
    /// The client closed the connection or the socket failed.
    Gone,
    /// Send this 421 and close.
    Close(Reply),
}

/// One client connection.
struct Connection {
    stream: Option<Stream>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    session: Session,
    /// The listener's context, or the one its `peer`/`via` overlays made for this connection.
    ctx: Arc<ListenerContext>,
    shared: Arc<Shared>,
    timeout: Duration,
}

/// Serves one accepted connection to its end. IPv4-mapped IPv6 addresses (a dual-stack
/// socket's IPv4 peers) are turned into plain IPv4 here, so relay rules, trace
/// headers and records all see `192.0.2.1`, never `::ffff:192.0.2.1`.
///
/// With `requireProxyProtocol` the client is the one the PROXY header names, and a
/// connection without a good header ends here, before the banner.
pub async fn serve(mut socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let peer = canonical(peer);
    let local = canonical(socket.local_addr().unwrap_or(peer));
    let hard_stop = shared.hard_stop.clone();
    let (peer, rbuf) = if shared.ctx.config.require_proxy_protocol {
        let header = tokio::select! {
            header = proxy_protocol::accept_header(&mut socket, peer, &shared) => header,
            () = hard_stop.cancelled() => None,
        };
        match header {
            Some(found) => found,
            None => return,
        }
    } else {
        (peer, BytesMut::new())
    };
    // Overlays are chosen by the real client (the PROXY header's, when there is one).
    let session = Session::new(shared.ctx.clone(), peer, local);
    let ctx = session.context().clone();
    let timeout = ctx.config.client_timeout.get();
    let mut conn = Connection {
        stream: Some(Stream::Plain(socket)),
        rbuf,
        wbuf: Vec::new(),
        session,
        ctx,
        shared,
        timeout,
    };
    tokio::select! {
        result = conn.run() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = hard_stop.cancelled() => {
            tracing::debug!(%peer, "connection cut at the end of the grace period");
        }
    }
    conn.log_records().await;
}

/// The address with an IPv4-mapped IPv6 address turned into IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Connection {
    async fn run(&mut self) -> std::io::Result<()> {
        if self.shared.shutdown.borrow().is_some() {
            self.session.begin_draining();
            self.queue(&self.session.shutdown_reply());
            return self.close().await;
        }
        // Implicit TLS (RFC 8314): the handshake comes before the greeting.
        if self.ctx.config.tls == ListenerTls::Implicit && !self.start_tls().await? {
            return Ok(());
        }
        self.queue(&self.session.greeting());
        loop {
            let line = match self.next_line().await? {
                Ok(line) => line,
                Err(stop) => return self.stop(stop).await,
            };
            match self.session.command(&line) {
                Action::Reply(reply) => self.queue(&reply),
                Action::Close(reply) => {
                    self.queue(&reply);
                    return self.close().await;
                }
                Action::StartData(reply) => {
                    self.queue(&reply);
                    if let Err(stop) = self.receive_data().await? {
                        return self.stop(stop).await;
                    }
                }
                Action::StartTls(reply) => {
                    self.queue(&reply);
                    if !self.start_tls().await? {
                        return Ok(());
                    }
                }
                Action::Restart(greeting) => self.restart(&greeting),
                Action::Authenticate(claim) => {
                    let ok = match &self.ctx.auth {
                        Some(auth) => auth.check(*claim, self.session.peer().ip()).await,
                        None => false,
                    };
                    let (reply, delay) = self.session.auth_finished(ok);
                    if !delay.is_zero() {
                        self.flush().await?;
                        tokio::time::sleep(delay).await;
                    }
                    self.queue(&reply);
                }
            }
            self.log_records().await;
        }
    }

    async fn stop(&mut self, stop: Stop) -> std::io::Result<()> {
        match stop {
            Stop::Gone => Ok(()),
            Stop::Close(reply) => {
                self.queue(&reply);
                self.close().await
            }
        }
    }

    /// The next complete command line, which must arrive within `commandTimeout`;
    /// over-long lines are answered and skipped.
    async fn next_line(&mut self) -> std::io::Result<Result<Vec<u8>, Stop>> {
        let limit = self.ctx.config.line_length_hard_limit as usize;
        let deadline = Instant::now() + self.ctx.config.command_timeout.get();
        loop {
            match split_line_limit(&self.rbuf, limit) {
                Split::Line { len } => {
                    let line = self.rbuf[..len].to_vec();
                    self.rbuf.advance(len + 2);
                    return Ok(Ok(line));
                }
                Split::TooLong => {
                    if let Err(stop) = self.skip_long_line(deadline).await? {
                        return Ok(Err(stop));
                    }
                    let reply = self.session.line_too_long();
                    self.queue(&reply);
                    self.log_records().await;
                }
                Split::Incomplete => {
                    if let Err(stop) = self.fill(COMMAND_CHUNK, deadline, "command").await? {
                        return Ok(Err(stop));
                    }
                }
            }
        }
    }

    async fn skip_long_line(&mut self, deadline: Instant) -> std::io::Result<Result<(), Stop>> {
        let mut after_cr = false;
        loop {
            let (skip, found) = skip_to_line_end(&self.rbuf, after_cr);
            after_cr = !found && self.rbuf[..skip].ends_with(b"\r");
            self.rbuf.advance(skip);
            if found {
                return Ok(Ok(()));
            }
            if let Err(stop) = self.fill(COMMAND_CHUNK, deadline, "command").await? {
                return Ok(Err(stop));
            }
        }
    }

    /// Frames the message data (within `dataTimeout`, holding a share of the data
    /// budget at least as large as the buffers), then stores it and answers.
    async fn receive_data(&mut self) -> std::io::Result<Result<(), Stop>> {
        let config = &self.ctx.config;
        let mut framer = DataFramer::with_options(DataOptions {
            max_size: config.max_message_size,
            max_line: config.line_length_hard_limit as usize,
            bare_line_endings: match config.invalid_line_endings {
                InvalidLineEndings::Deny => BareLineEndings::Deny,
                InvalidLineEndings::Allow => BareLineEndings::Allow,
                InvalidLineEndings::Fix => BareLineEndings::Fix,
            },
        });
        let deadline = Instant::now() + config.data_timeout.get();
        let mut share = self.shared.budget.share();
        let outcome = loop {
            let (used, outcome) = framer.feed(&self.rbuf);
            self.rbuf.advance(used);
            if let Some(outcome) = outcome {
                break outcome;
            }
            // Room for what the next read can bring, before reading it.
            let want = framer.held_after(self.rbuf.len() + DATA_CHUNK)
                + self.rbuf.capacity().max(self.rbuf.len() + DATA_CHUNK);
            share.shrink_to(want);
            if let Err(stop) = self.reserve(&mut share, want, deadline).await? {
                return Ok(Err(stop));
            }
            if let Err(stop) = self.fill(DATA_CHUNK, deadline, "data").await? {
                return Ok(Err(stop));
            }
        };
        self.shrink_read_buffer();
        let octets = match &outcome {
            DataOutcome::Complete(body) => body.len(),
            _ => 0,
        };
        let id = MessageId::generate().to_string();
        let processing = self.ctx.config.data_processing_timeout.get();
        let reply = match self.session.data_received(outcome, id, Utc::now()) {
            AfterData::Reply(reply) => reply,
            AfterData::Store(delivery) => {
                let mut delivery = *delivery;
                match tokio::time::timeout(processing, store(&self.shared.spool, &mut delivery))
                    .await
                {
                    Ok(result) => {
                        if result.is_ok()
                            && let Some(queue) = &self.shared.delivery
                            && let Some(message) = queued_message(&delivery, self.shared.index)
                        {
                            queue.submit(message);
                        }
                        self.session.delivery_finished(delivery, result)
                    }
                    Err(_) => self.session.delivery_timed_out(delivery),
                }
            }
        };
        drop(share);
        if reply.code == 250 {
            self.shared.metrics.accepted(octets);
        }
        self.queue(&reply);
        Ok(Ok(()))
    }

    /// Grows the session's share of the data budget to `want`, waiting (not reading)
    /// at most `clientTimeout` and never past the DATA or grace deadline.
    async fn reserve(
        &mut self,
        share: &mut Share,
        want: usize,
        deadline: Instant,
    ) -> std::io::Result<Result<(), Stop>> {
        if share.held() >= want {
            return Ok(Ok(()));
        }
        self.flush().await?;
        let mut until = deadline.min(Instant::now() + self.timeout);
        if let Some(grace) = *self.shared.shutdown.borrow() {
            until = until.min(grace);
        }
        match share.grow_to(want, until).await {
            Ok(()) => Ok(Ok(())),
            Err(_) => {
                self.shared.metrics.deadline("budget");
                Ok(Err(Stop::Close(self.session.budget_reply())))
            }
        }
    }

    /// Gives back a read buffer that grew in DATA, keeping any pipelined octets.
    fn shrink_read_buffer(&mut self) {
        if self.rbuf.capacity() > KEEP_READ_BUFFER {
            let rest = BytesMut::from(&self.rbuf[..]);
            self.rbuf = rest;
        }
    }

    /// XCLIENT named another client: its greeting starts a new session, so anything
    /// the proxy pipelined after XCLIENT (sent before this greeting) is thrown away, as
    /// after STARTTLS; the new client's overlays (timeouts, limits) apply from here.
    fn restart(&mut self, greeting: &Reply) {
        if !self.rbuf.is_empty() {
            tracing::warn!(
                bytes = self.rbuf.len(),
                "discarding commands pipelined after XCLIENT"
            );
            self.rbuf.clear();
        }
        self.ctx = self.session.context().clone();
        self.timeout = self.ctx.config.client_timeout.get();
        self.queue(greeting);
    }

    /// Runs the TLS handshake after `220` (or, with implicit TLS, at once). Returns
    /// false when the connection is over.
    async fn start_tls(&mut self) -> std::io::Result<bool> {
        self.flush().await?;
        // RFC 3207 §4.2: anything the client pipelined after STARTTLS was sent in
        // plaintext and must not be executed as if it had arrived over TLS.
        if !self.rbuf.is_empty() {
            tracing::warn!(
                bytes = self.rbuf.len(),
                "discarding plaintext pipelined after STARTTLS"
            );
            self.rbuf.clear();
        }
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Ok(false);
        };
        let mut deadline = Instant::now() + self.ctx.config.tls_handshake_timeout.get();
        if let Some(grace) = *self.shared.shutdown.borrow() {
            deadline = deadline.min(grace);
        }
        // A shutdown that begins mid-handshake is bounded by the hard stop at the end
        // of the grace period (see `serve`).
        let handshake = self.shared.tls.acceptor().accept(tcp);
        let outcome = tokio::time::timeout_at(deadline, handshake).await;
        match outcome {
            Ok(Ok(tls)) => {
                let facts = TlsFacts::of(tls.get_ref().1);
                self.stream = Some(Stream::Tls(Box::new(tls)));
                let info = facts.map_or_else(
                    || TlsInfo {
                        protocol: "unknown".into(),
                        cipher: "unknown".into(),
                    },
                    |f| TlsInfo {
                        protocol: f.protocol,
                        cipher: f.cipher,
                    },
                );
                self.session.tls_established(info);
                Ok(true)
            }
            Ok(Err(e)) => {
                self.shared.metrics.tls_handshake_failures.inc();
                tracing::info!(error = %e, "TLS handshake failed; closing the connection");
                Ok(false)
            }
            Err(_) => {
                self.shared.metrics.tls_handshake_failures.inc();
                self.shared.metrics.deadline("tls");
                tracing::info!("TLS handshake timed out; closing the connection");
                Ok(false)
            }
        }
    }

    /// Flushes replies, then reads up to `chunk` more octets, minding the client
    /// timeout, the whole-command or whole-data `deadline` and shutdown.
    async fn fill(
        &mut self,
        chunk: usize,
        deadline: Instant,
        what: &'static str,
    ) -> std::io::Result<Result<(), Stop>> {
        self.flush().await?;
        self.log_records().await;
        let idle = Instant::now() + self.timeout;
        let (until, kind) = if deadline < idle {
            (deadline, what)
        } else {
            (idle, "read")
        };
        self.rbuf.reserve(chunk);
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let grace = *shutdown.borrow_and_update();
            if let Some(grace) = grace {
                self.session.begin_draining();
                if !self.session.in_transaction() || Instant::now() >= grace {
                    return Ok(Err(Stop::Close(self.session.shutdown_reply())));
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(Err(Stop::Gone));
            };
            let grace_wait = async {
                match grace {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let room = self.rbuf.capacity() - self.rbuf.len();
            let mut limited = (&mut *stream).take(room.min(chunk.max(1)) as u64);
            tokio::select! {
                read = limited.read_buf(&mut self.rbuf) => {
                    return Ok(match read {
                        Ok(0) | Err(_) => Err(Stop::Gone),
                        Ok(_) => Ok(()),
                    });
                }
                () = tokio::time::sleep_until(until) => {
                    self.shared.metrics.deadline(kind);
                    return Ok(Err(Stop::Close(self.session.timeout_reply())));
                }
                changed = shutdown.changed(), if grace.is_none() => {
                    if changed.is_err() {
                        return Ok(Err(Stop::Gone));
                    }
                }
                () = grace_wait => {}
            }
        }
    }

    fn queue(&mut self, reply: &Reply) {
        reply.write_to(&mut self.wbuf);
    }

    /// Writes the queued replies; a client that does not take them within
    /// `writeTimeout` (or by the end of the grace period) is dropped.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let mut deadline = Instant::now() + self.ctx.config.write_timeout.get();
        if let Some(grace) = *self.shared.shutdown.borrow() {
            deadline = deadline.min(grace.max(Instant::now() + Duration::from_millis(200)));
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or(std::io::ErrorKind::NotConnected)?;
        let write = async {
            stream.write_all(&self.wbuf).await?;
            stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(written) => written?,
            Err(_) => {
                self.shared.metrics.deadline("write");
                self.stream = None;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client did not take its replies within writeTimeout",
                ));
            }
        }
        self.wbuf.clear();
        if self.wbuf.capacity() > KEEP_READ_BUFFER {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        if let Some(mut stream) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
        Ok(())
    }

    async fn log_records(&mut self) {
        for record in self.session.take_records() {
            self.shared.metrics.observe(&record);
            if !record.suppressed {
                self.shared.log.write(&record).await;
            }
        }
    }
}

/// Writes a delivery to the spool (or holds it in memory for `deferredSpool`).
async fn store(spool: &Spool, delivery: &mut Delivery) -> Result<(), String> {
    let id: MessageId = delivery.id.parse().map_err(|e| format!("{e}"))?;
    let mut envelope = Envelope::new(id, delivery.sender.clone(), delivery.recipients.clone());
    envelope.received_at = delivery.received_at;
    envelope.extra = delivery.extra.clone();
    let data = std::mem::take(&mut delivery.data);
    if delivery.deferred {
        spool
            .store_deferred(envelope, data)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        spool.store(envelope, data).await.map_err(|e| e.to_string())
    }
}

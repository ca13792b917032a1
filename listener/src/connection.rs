//! The connection driver: moves bytes between a socket and a [`Session`], with the
//! client timeout, STARTTLS, the spool and the shutdown deadline. All SMTP decisions
//! are the session's; this module only does I/O.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use chrono::Utc;
use postern_spool::{Envelope, MessageId, Spool};
use postern_tls::{TlsFacts, TlsProvider};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    sync::watch,
    time::Instant,
};
use tokio_rustls::server::TlsStream;

use crate::{
    context::ListenerContext,
    delivery::{DeliveryQueue, queued_message},
    log::RecordLog,
    metrics::Metrics,
    session::{Action, AfterData, Delivery, Session, TlsInfo},
    smtp::{
        data::{DataFramer, DataOutcome},
        line::{Split, skip_to_line_end, split_line},
        reply::Reply,
    },
};

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

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
    /// `None` while running; the grace deadline once shutdown began.
    pub shutdown: watch::Receiver<Option<Instant>>,
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
    shared: Arc<Shared>,
    timeout: Duration,
}

/// Serves one accepted connection to its end.
pub async fn serve(socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let local = socket.local_addr().unwrap_or(peer);
    let session = Session::new(shared.ctx.clone(), peer, local);
    let timeout = shared.ctx.config.client_timeout.get();
    let mut conn = Connection {
        stream: Some(Stream::Plain(socket)),
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: Vec::new(),
        session,
        shared,
        timeout,
    };
    if let Err(e) = conn.run().await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    conn.log_records();
}

impl Connection {
    async fn run(&mut self) -> std::io::Result<()> {
        if self.shared.shutdown.borrow().is_some() {
            self.session.begin_draining();
            self.queue(&self.session.shutdown_reply());
            return self.close().await;
        }
        self.queue(&self.session.greeting());
        loop {
            let line = match self.next_line().await? {
                Ok(line) => line,
                Err(Stop::Gone) => return Ok(()),
                Err(Stop::Close(reply)) => {
                    self.queue(&reply);
                    return self.close().await;
                }
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
            }
            self.log_records();
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

    /// The next complete command line; over-long lines are answered and skipped.
    async fn next_line(&mut self) -> std::io::Result<Result<Vec<u8>, Stop>> {
        loop {
            match split_line(&self.rbuf) {
                Split::Line { len } => {
                    let line = self.rbuf[..len].to_vec();
                    self.rbuf.advance(len + 2);
                    return Ok(Ok(line));
                }
                Split::TooLong => {
                    if let Err(stop) = self.skip_long_line().await? {
                        return Ok(Err(stop));
                    }
                    let reply = self.session.line_too_long();
                    self.queue(&reply);
                    self.log_records();
                }
                Split::Incomplete => {
                    if let Err(stop) = self.fill().await? {
                        return Ok(Err(stop));
                    }
                }
            }
        }
    }

    async fn skip_long_line(&mut self) -> std::io::Result<Result<(), Stop>> {
        let mut after_cr = false;
        loop {
            let (skip, found) = skip_to_line_end(&self.rbuf, after_cr);
            after_cr = !found && self.rbuf[..skip].ends_with(b"\r");
            self.rbuf.advance(skip);
            if found {
                return Ok(Ok(()));
            }
            if let Err(stop) = self.fill().await? {
                return Ok(Err(stop));
            }
        }
    }

    /// Frames the message data, then stores it and answers.
    async fn receive_data(&mut self) -> std::io::Result<Result<(), Stop>> {
        let mut framer = DataFramer::with_size_hint(
            self.shared.ctx.config.max_message_size,
            self.session.size_hint(),
        );
        let outcome = loop {
            let (used, outcome) = framer.feed(&self.rbuf);
            self.rbuf.advance(used);
            if let Some(outcome) = outcome {
                break outcome;
            }
            if let Err(stop) = self.fill().await? {
                return Ok(Err(stop));
            }
        };
        let octets = match &outcome {
            DataOutcome::Complete(body) => body.len(),
            _ => 0,
        };
        let id = MessageId::generate().to_string();
        let reply = match self.session.data_received(outcome, id, Utc::now()) {
            AfterData::Reply(reply) => reply,
            AfterData::Store(delivery) => {
                let mut delivery = *delivery;
                let result = store(&self.shared.spool, &mut delivery).await;
                if result.is_ok()
                    && let Some(queue) = &self.shared.delivery
                    && let Some(message) = queued_message(&delivery, self.shared.index)
                {
                    queue.submit(message);
                }
                self.session.delivery_finished(delivery, result)
            }
        };
        if reply.code == 250 {
            self.shared.metrics.accepted(octets);
        }
        self.queue(&reply);
        Ok(Ok(()))
    }

    /// Runs the TLS handshake after `220`. Returns false when the connection is over.
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
        let handshake = self.shared.tls.acceptor().accept(tcp);
        match tokio::time::timeout(self.timeout, handshake).await {
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
                tracing::info!("TLS handshake timed out; closing the connection");
                Ok(false)
            }
        }
    }

    /// Flushes replies, then reads more input, minding the client timeout and shutdown.
    async fn fill(&mut self) -> std::io::Result<Result<(), Stop>> {
        self.flush().await?;
        self.log_records();
        let deadline = Instant::now() + self.timeout;
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
            tokio::select! {
                read = stream.read_buf(&mut self.rbuf) => {
                    return Ok(match read {
                        Ok(0) | Err(_) => Err(Stop::Gone),
                        Ok(_) => Ok(()),
                    });
                }
                () = tokio::time::sleep_until(deadline) => {
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

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or(std::io::ErrorKind::NotConnected)?;
        stream.write_all(&self.wbuf).await?;
        stream.flush().await?;
        self.wbuf.clear();
        Ok(())
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.shutdown().await;
        }
        Ok(())
    }

    fn log_records(&mut self) {
        for record in self.session.take_records() {
            self.shared.metrics.observe(&record);
            self.shared.log.write(&record);
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

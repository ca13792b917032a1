//! The admin HTTP endpoint: `/livez`, `/readyz`, `/metrics`, `GET /queue` and
//! `POST /drain`, on a thread and runtime of its own (SMTP sessions busy on every
//! worker cannot starve it), with its own connection limit and a deadline per
//! connection, so that neither SMTP clients nor admin clients can keep a liveness
//! probe from being answered.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    http::header,
    response::IntoResponse,
    routing::{get, post},
};
use postern_delivery::QueueSnapshot;
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use serde::Serialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_util::sync::CancellationToken;

/// What `GET /queue` and `POST /drain` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// Whether the listener is draining (new connections get 421).
    pub draining: bool,
    /// The queue.
    #[serde(flatten)]
    pub queue: QueueSnapshot,
}

/// The running process, as the admin endpoint controls it.
pub trait AdminControl: Send + Sync + 'static {
    /// Why the process should get no new connections now (empty when ready).
    fn not_ready(&self) -> Vec<String>;
    /// The queue.
    fn queue(&self) -> QueueStatus;
    /// Stops accepting mail (new connections get 421), keeps delivering.
    fn drain(&self) -> QueueStatus;
}

/// What the endpoint reads.
#[derive(Clone)]
pub struct AdminState {
    /// Ready to take mail: the spool is recovered, listeners are bound, no shutdown.
    pub ready: Arc<AtomicBool>,
    /// The record log can be written (false while writes fail and are retried).
    pub log_healthy: Arc<AtomicBool>,
    /// `postern_ready`, set from the same reasons as `/readyz` at every scrape.
    pub ready_gauge: Gauge,
    /// The metrics registry (the spool's metrics join it once the spool is open).
    pub registry: Arc<RwLock<Registry>>,
    /// The process, once it has started (the endpoint comes up before the spool).
    pub control: Arc<OnceLock<Arc<dyn AdminControl>>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.ready)
            .field("started", &self.control.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The admin endpoint's own limits.
#[derive(Clone, Copy, Debug)]
pub struct AdminLimits {
    /// Connections served at once; more are closed at once.
    pub max_connections: u32,
    /// Each connection is closed this long after it was accepted.
    pub timeout: Duration,
}

/// Starts the endpoint on its own thread with a single-threaded runtime; the receiver
/// resolves when it has stopped (after `stop` is cancelled).
pub fn spawn(
    listener: std::net::TcpListener,
    limits: AdminLimits,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("postern-admin".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                serve(listener, limits, state, stop).await
            });
            let _ = done.send(result);
        })?;
    Ok(stopped)
}

/// Serves the admin endpoint on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    limits: AdminLimits,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/queue", get(queue))
        .route("/drain", post(drain))
        .with_state(state);
    let listener = LimitedListener {
        inner: listener,
        slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
        timeout: limits.timeout,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Why the process should get no new connections now: `None` when it is ready, else
/// the reasons (empty while it is still starting).
fn not_ready(state: &AdminState) -> Option<Vec<String>> {
    let mut reasons = state
        .control
        .get()
        .map(|control| control.not_ready())
        .unwrap_or_default();
    if !state.log_healthy.load(Ordering::SeqCst) {
        reasons.push("the record log cannot be written".into());
    }
    if state.ready.load(Ordering::SeqCst) && reasons.is_empty() {
        None
    } else {
        Some(reasons)
    }
}

/// `ready` when the process takes mail; otherwise 503 and one line per reason.
async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let Some(reasons) = not_ready(&state) else {
        return (StatusCode::OK, "ready\n".to_owned());
    };
    let mut body = String::from("not ready\n");
    for reason in reasons {
        body.push_str(&reason);
        body.push('\n');
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn queue(State(state): State<AdminState>) -> impl IntoResponse {
    match state.control.get() {
        Some(control) => Json(control.queue()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

async fn drain(State(state): State<AdminState>) -> impl IntoResponse {
    match state.control.get() {
        Some(control) => (StatusCode::ACCEPTED, Json(control.drain())).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

/// Accepts admin connections up to the limit; each is closed at its deadline.
struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Deadlined;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let io = Deadlined {
                            stream,
                            deadline: Box::pin(tokio::time::sleep(self.timeout)),
                            _permit: permit,
                        };
                        return (io, addr);
                    }
                    Err(_) => drop(stream),
                },
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An admin connection that fails every read and write once its deadline passed.
struct Deadlined {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Deadlined {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "admin connection deadline")
}

impl AsyncRead for Deadlined {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    state
        .ready_gauge
        .set(i64::from(not_ready(&state).is_none()));
    let mut text = String::new();
    let registry = state
        .registry
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

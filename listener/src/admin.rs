//! The admin HTTP endpoint: `/livez`, `/readyz`, `/metrics`, `GET /queue` and
//! `POST /drain`.

use std::sync::{
    Arc, OnceLock, PoisonError, RwLock,
    atomic::{AtomicBool, Ordering},
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
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
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

/// Serves the admin endpoint on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
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
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// `ready` when the process takes mail; otherwise 503 and one line per reason.
async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let reasons = state
        .control
        .get()
        .map(|control| control.not_ready())
        .unwrap_or_default();
    if state.ready.load(Ordering::SeqCst) && reasons.is_empty() {
        return (StatusCode::OK, "ready\n".to_owned());
    }
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

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
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

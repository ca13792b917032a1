//! Starting and stopping a listener process: spool, TLS, log, admin endpoint and the
//! SMTP accept loops, in the order that keeps bad configuration from half-starting.

use std::{
    net::SocketAddr,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use postern_config::Config;
use postern_spool::{Spool, SpoolOptions};
use postern_tls::{TlsMetrics, TlsProvider};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    admin::{self, AdminState},
    connection::{self, Shared},
    context::ListenerContext,
    log::{LogWriter, RecordLog},
    metrics::{ListenerLabels, Metrics},
};

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A TLS source could not be loaded: bad input, exit code 2.
    #[error("{0}")]
    Tls(String),
    /// Anything else (spool locked or unreadable, port in use): exit code 1.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// A running listener process.
pub struct Running {
    /// The bound SMTP addresses, in the order of `listeners`.
    pub smtp: Vec<SocketAddr>,
    /// The bound admin address.
    pub admin: SocketAddr,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<Option<Instant>>,
    stop_accepting: CancellationToken,
    stop_admin: CancellationToken,
    sessions: TaskTracker,
    accept_loops: TaskTracker,
    admin_task: tokio::task::JoinHandle<std::io::Result<()>>,
    spool: Spool,
    log: Option<RecordLog>,
    log_writer: LogWriter,
    grace: Duration,
}

/// Starts everything. Bad TLS input fails before any SMTP port is bound; readiness
/// turns on only when the spool is recovered and every listener is bound.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let mut registry = Registry::default();
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    let tls_metrics = TlsMetrics::default();
    tls_metrics.register(&mut registry);

    let mut contexts = Vec::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let tls = TlsProvider::start(listener, tls_metrics.clone())
            .await
            .map_err(|e| StartError::Tls(format!("listeners[{i}].{e}")))?;
        contexts.push((Arc::new(ListenerContext::new(listener.clone())), tls));
    }

    // The admin endpoint comes up before spool recovery: /livez answers while a large
    // spool is recovered (so a liveness probe does not kill it) and /readyz says no.
    let ready = Arc::new(AtomicBool::new(false));
    let registry = Arc::new(RwLock::new(registry));
    let admin_listener = TcpListener::bind(config.admin.listen.socket_addr())
        .await
        .with_context(|| format!("admin.listen {}", config.admin.listen))?;
    let admin_addr = admin_listener.local_addr().context("admin address")?;
    let stop_admin = CancellationToken::new();
    let control = Arc::new(OnceLock::new());
    let state = AdminState {
        ready: ready.clone(),
        registry: registry.clone(),
        control: control.clone(),
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, state, stop_admin.clone()));

    let spool_dir = config.spool.path.clone();
    let (spool, recovery) =
        tokio::task::spawn_blocking(move || Spool::open(&spool_dir, SpoolOptions::default()))
            .await
            .context("spool recovery task")?
            .with_context(|| format!("spool {}", config.spool.path.display()))?;
    if !recovery.corrupt_moved.is_empty() {
        tracing::warn!(moved = ?recovery.corrupt_moved, "corrupt spool entries were moved aside");
    }
    spool
        .metrics()
        .register(&mut registry.write().unwrap_or_else(PoisonError::into_inner));

    let (log, log_writer) = RecordLog::open(&config.log).await.context("log")?;
    let (shutdown, shutdown_rx) = watch::channel(None);
    let stop_accepting = CancellationToken::new();
    let sessions = TaskTracker::new();
    let accept_loops = TaskTracker::new();
    let mut smtp = Vec::new();
    for (i, (ctx, tls)) in contexts.into_iter().enumerate() {
        let addr = ctx.config.listen.socket_addr();
        let socket = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listeners[{i}].listen {addr}"))?;
        let bound = socket.local_addr().context("listener address")?;
        smtp.push(bound);
        let shared = Arc::new(Shared {
            ctx,
            tls,
            spool: spool.clone(),
            log: log.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown_rx.clone(),
        });
        tracing::info!(listen = %bound, hostname = %shared.ctx.hostname, "listening for SMTP");
        accept_loops.spawn(accept_loop(
            socket,
            shared,
            sessions.clone(),
            stop_accepting.clone(),
        ));
    }
    accept_loops.close();
    ready.store(true, Ordering::SeqCst);
    tracing::info!(admin = %admin_addr, spool = %config.spool.path.display(), depth = spool.depth(), "ready");
    Ok(Running {
        smtp,
        admin: admin_addr,
        ready,
        shutdown,
        stop_accepting,
        stop_admin,
        sessions,
        accept_loops,
        admin_task,
        spool,
        log: Some(log),
        log_writer,
        grace: config.shutdown_grace_period.get(),
    })
}

async fn accept_loop(
    socket: TcpListener,
    shared: Arc<Shared>,
    sessions: TaskTracker,
    stop: CancellationToken,
) {
    let labels = ListenerLabels {
        listener: shared.ctx.config.listen.to_string(),
    };
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                shared.metrics.connections.get_or_create(&labels).inc();
                let active = shared
                    .metrics
                    .active_connections
                    .get_or_create(&labels)
                    .clone();
                active.inc();
                let shared = shared.clone();
                sessions.spawn(async move {
                    connection::serve(stream, peer, shared).await;
                    active.dec();
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Running {
    /// Graceful shutdown: `/readyz` fails at once, no new connections, sessions in a
    /// transaction may finish it within the grace period, idle ones get 421 4.3.2; then
    /// the spool is closed (deferred messages written) and the log flushed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.ready.store(false, Ordering::SeqCst);
        self.stop_accepting.cancel();
        let _ = self.shutdown.send(Some(Instant::now() + self.grace));
        self.accept_loops.wait().await;
        self.sessions.close();
        self.sessions.wait().await;
        drop(self.log.take());
        self.spool.close().await.context("closing the spool")?;
        self.log_writer.finish().await.context("flushing the log")?;
        self.stop_admin.cancel();
        let _ = self.admin_task.await;
        tracing::info!("stopped");
        Ok(())
    }
}

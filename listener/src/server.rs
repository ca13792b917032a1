//! Starting and stopping a listener process: spool, TLS, log, admin endpoint and the
//! SMTP accept loops, in the order that keeps bad configuration from half-starting.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use postern_config::{Config, DeliveryConfig};
use postern_delivery::{DeliveryMetrics, ListenerDelivery, Runner, SmtpDispatcher, SpoolStore};
use postern_outbound::{MxResolver, TlsClients};
use postern_spool::{Spool, SpoolOptions};
use postern_tls::{TlsMetrics, TlsProvider};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    admin::{self, AdminControl, AdminLimits, AdminState},
    admission::{ListenerLimit, ProcessLimits},
    authenticator::Authenticator,
    backpressure::{self, Load},
    budget::DataBudget,
    connection::{self, Shared},
    context::ListenerContext,
    control::Control,
    delivery::{DeliveryQueue, LogSink},
    log::{LogWriter, RecordLog},
    metrics::{ListenerLabels, Metrics},
};

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A TLS source or the AUTH credentials could not be loaded: bad input, exit code 2.
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
    control: Arc<Control>,
    delivery_sink: Arc<LogSink>,
    stop_monitor: CancellationToken,
    stop_accepting: CancellationToken,
    hard_stop: CancellationToken,
    stop_admin: CancellationToken,
    sessions: TaskTracker,
    accept_loops: TaskTracker,
    admin_task: tokio::sync::oneshot::Receiver<std::io::Result<()>>,
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

    let load = Arc::new(Load::default());
    let mut contexts = Vec::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let tls = TlsProvider::start(listener, tls_metrics.clone())
            .await
            .map_err(|e| StartError::Tls(format!("listeners[{i}].{e}")))?;
        let auth =
            match &listener.auth {
                Some(auth) => Some(Authenticator::start(auth).await.map_err(|e| {
                    StartError::Tls(format!("listeners[{i}].auth.credentials: {e}"))
                })?),
                None => None,
            };
        contexts.push((
            Arc::new(ListenerContext::with_load(listener.clone(), load.clone()).with_auth(auth)),
            tls,
        ));
    }

    // The admin endpoint comes up before spool recovery: /livez answers while a large
    // spool is recovered (so a liveness probe does not kill it) and /readyz says no.
    let ready = Arc::new(AtomicBool::new(false));
    let log_healthy = Arc::new(AtomicBool::new(true));
    let registry = Arc::new(RwLock::new(registry));
    let admin_listener = std::net::TcpListener::bind(config.admin.listen.socket_addr())
        .with_context(|| format!("admin.listen {}", config.admin.listen))?;
    let admin_addr = admin_listener.local_addr().context("admin address")?;
    let stop_admin = CancellationToken::new();
    let admin_control = Arc::new(OnceLock::new());
    let state = AdminState {
        ready: ready.clone(),
        ready_gauge: metrics.ready.clone(),
        log_healthy: log_healthy.clone(),
        registry: registry.clone(),
        control: admin_control.clone(),
    };
    let limits = AdminLimits {
        max_connections: config.admin.max_connections,
        timeout: config.admin.timeout.get(),
    };
    let admin_task = admin::spawn(admin_listener, limits, state, stop_admin.clone())
        .context("starting the admin endpoint")?;

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

    let (log, log_writer) = RecordLog::open(&config.log, metrics.clone(), log_healthy)
        .await
        .context("log")?;

    // Delivery: the runner over the spool and SMTP; it resumes what recovery found.
    let delivery_metrics = DeliveryMetrics::default();
    delivery_metrics.register(&mut registry.write().unwrap_or_else(PoisonError::into_inner));
    let delivery_sink = Arc::new(LogSink::new(log.clone()));
    let store = SpoolStore::new(spool.clone());
    let runner = Runner::start(
        config
            .listeners
            .iter()
            .map(|l| {
                ListenerDelivery::new(
                    l.delivery.as_ref().unwrap_or(&DeliveryConfig::default()),
                    l.effective_hostname(),
                )
            })
            .collect(),
        dispatcher(&config)?,
        store.clone(),
        delivery_sink.clone(),
        delivery_metrics,
    );
    let listen_keys: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.listen.to_string())
        .collect();
    let delivering: Vec<bool> = config
        .listeners
        .iter()
        .map(|l| l.delivery.is_some())
        .collect();
    // Resuming reads every queued envelope back; with no listener delivering, all of
    // them would be dropped again, so a holding-only spool is not read twice.
    let recovered = if delivering.contains(&true) {
        store
            .recovered(|key| {
                let index = match key {
                    Some(key) => listen_keys.iter().position(|k| k == key),
                    None => delivering.iter().position(|d| *d),
                }?;
                delivering[index].then_some(index)
            })
            .map_err(|e| anyhow::anyhow!("spool: {e}"))?
    } else {
        Vec::new()
    };
    if !recovered.is_empty() {
        tracing::info!(
            messages = recovered.len(),
            "resuming delivery of recovered messages"
        );
    }
    runner.resume(recovered).await;
    let queue: Arc<dyn DeliveryQueue> = Arc::new(runner);
    for (l, delivering) in config.listeners.iter().zip(&delivering) {
        if !delivering {
            tracing::warn!(listen = %l.listen, "listener has no delivery section: its accepted mail is held in the spool");
        }
    }

    let stop_monitor = CancellationToken::new();
    for l in &config.listeners {
        metrics
            .spool_high_water_ratio
            .get_or_create(&ListenerLabels {
                listener: l.listen.to_string(),
            })
            .set(f64::from(l.delivery_or_default().spool_high_water_percent) / 100.0);
    }
    tokio::spawn(backpressure::monitor(
        config.spool.path.clone(),
        load.clone(),
        metrics.spool_filesystem_used_ratio.clone(),
        queue.watch_depth(),
        stop_monitor.clone(),
    ));
    let (shutdown, shutdown_rx) = watch::channel(None);
    let control = Arc::new(Control {
        listeners: config.listeners.clone(),
        load,
        queue: queue.clone(),
        stop_sessions: shutdown,
        grace: config.shutdown_grace_period.get(),
        draining: AtomicBool::new(false),
    });
    let _ = admin_control.set(control.clone() as Arc<dyn AdminControl>);

    let stop_accepting = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let budget = DataBudget::new(config.max_data_in_flight, metrics.clone());
    let wanted: u64 = config
        .listeners
        .iter()
        .map(|l| u64::from(l.max_connections))
        .sum();
    let process_limits = ProcessLimits::new(wanted);
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
        let limit = process_limits.listener(ctx.config.max_connections);
        let shared = Arc::new(Shared {
            delivery: ctx.config.delivery.is_some().then(|| queue.clone()),
            index: i,
            ctx,
            tls,
            spool: spool.clone(),
            log: log.clone(),
            metrics: metrics.clone(),
            budget: budget.clone(),
            shutdown: shutdown_rx.clone(),
            hard_stop: hard_stop.clone(),
        });
        tracing::info!(listen = %bound, hostname = %shared.ctx.hostname, "listening for SMTP");
        accept_loops.spawn(accept_loop(
            socket,
            shared,
            limit,
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
        control,
        delivery_sink,
        stop_monitor,
        stop_accepting,
        hard_stop,
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
    limit: ListenerLimit,
    sessions: TaskTracker,
    stop: CancellationToken,
) {
    let labels = ListenerLabels {
        listener: shared.ctx.config.listen.to_string(),
    };
    shared.metrics.listening(&labels);
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                shared.metrics.connections.get_or_create(&labels).inc();
                let Some(admitted) = limit.admit() else {
                    shared
                        .metrics
                        .connections_denied
                        .get_or_create(&labels)
                        .inc();
                    limit.refuse(stream, &shared.ctx.hostname);
                    continue;
                };
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
                    drop(admitted);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long the record log may take to be flushed at exit.
const LOG_FLUSH: Duration = Duration::from_secs(5);

/// How long sessions still running at the end of the grace period get to send their
/// `421` before they are cut.
const LAST_WORDS: Duration = Duration::from_secs(1);

impl Running {
    /// Graceful shutdown, bounded by the grace period whatever clients do: `/readyz`
    /// fails at once, no new connections, idle sessions get 421 4.3.2, messages held
    /// in memory (`deferredSpool`) are written durably *first*, sessions in a
    /// transaction may finish it within the grace period; at its end every session
    /// still open is told 421 and, one second later, cut. Delivery attempts under way
    /// may finish within the grace period (their outcomes are recorded). Then the
    /// spool is closed and the log flushed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let grace_end = Instant::now() + self.grace;
        self.ready.store(false, Ordering::SeqCst);
        self.stop_accepting.cancel();
        self.control.stop_sessions.send_replace(Some(grace_end));
        let persisted = self.spool.persist_deferred().await;
        if let Err(e) = &persisted {
            tracing::error!(error = %e, "could not write every deferred message at shutdown");
        }
        self.accept_loops.wait().await;
        self.sessions.close();
        if tokio::time::timeout_at(grace_end + LAST_WORDS, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = self.sessions.len(),
                "sessions still open at the end of the grace period are cut"
            );
            self.hard_stop.cancel();
            let _ = tokio::time::timeout(LAST_WORDS, self.sessions.wait()).await;
        }
        let remaining = grace_end.saturating_duration_since(Instant::now());
        self.control.queue.shutdown(remaining).await;
        self.stop_monitor.cancel();
        self.delivery_sink.close();
        drop(self.log.take());
        self.spool.close().await.context("closing the spool")?;
        persisted.context("writing the deferred messages")?;
        self.log_writer
            .finish(LOG_FLUSH)
            .await
            .context("flushing the log")?;
        self.stop_admin.cancel();
        let _ = self.admin_task.await;
        tracing::info!("stopped");
        Ok(())
    }

    /// The admin endpoint's view of the process (drain, queue, readiness).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }
}

/// The SMTP dispatcher: the resolver of `dns` (by default the system's, read from
/// /etc/resolv.conf; no query is made until an MX route needs one), the system roots, and the CA certificates of
/// every listener's `delivery.caFile` (each listener's destinations are verified with
/// its own).
fn dispatcher(config: &Config) -> Result<SmtpDispatcher, StartError> {
    let ca_files: Vec<(usize, PathBuf)> = config
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, l.delivery.as_ref()?.ca_file.clone()?)))
        .collect();
    let needs_system_roots = config
        .listeners
        .iter()
        .any(|l| l.delivery.as_ref().is_some_and(|d| d.ca_file.is_none()));
    let tls = match (TlsClients::system_roots(), ca_files.first()) {
        (Ok(tls), _) => tls,
        // Every delivering listener has its own caFile: the system roots are not used.
        (Err(_), Some((index, path))) if !needs_system_roots => TlsClients::with_ca_file(path)
            .map_err(|e| StartError::Tls(format!("listeners[{index}].delivery.caFile: {e}")))?,
        (Err(e), _) => return Err(StartError::Tls(format!("outbound TLS: {e}"))),
    };
    let resolver = if config.dns.nameservers.is_empty() {
        match MxResolver::from_system_conf() {
            Ok(resolver) => Some(resolver),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver configuration: MX routes will fail temporarily");
                None
            }
        }
    } else {
        let servers: Vec<SocketAddr> = config.dns.nameservers.iter().map(|n| n.0).collect();
        Some(
            MxResolver::with_nameservers(&servers, config.dns.timeout.get())
                .map_err(|e| StartError::Other(anyhow::anyhow!("dns.nameservers: {e}")))?,
        )
    };
    let mut dispatcher = SmtpDispatcher::new(resolver, tls);
    for (index, path) in ca_files {
        dispatcher = dispatcher
            .with_ca_file(path)
            .map_err(|e| StartError::Tls(format!("listeners[{index}].delivery.caFile: {e}")))?;
    }
    Ok(dispatcher)
}

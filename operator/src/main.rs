//! `postern-operator`: `crd` prints the CustomResourceDefinition, `run` runs the
//! controller (with leader election and `/metrics`, `/livez`, `/readyz`).

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use postern_operator::{
    build::Defaults,
    controller::{self, Options},
    crd,
    leader::{self, LeaseOptions},
    metrics::{Metrics, counting_client},
    server::{self, Readiness},
};
use tracing_subscriber::EnvFilter;

/// Reconciles EsmtpListener resources into running Postern ESMTP listeners.
#[derive(Parser, Debug)]
#[command(name = "postern-operator", version, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the EsmtpListener CustomResourceDefinition as YAML.
    Crd,
    /// Print the ClusterRole with exactly the permissions `run` uses, as YAML.
    Rbac {
        /// The ClusterRole's name.
        #[arg(long, default_value = "postern-operator")]
        name: String,
    },
    /// Run the controller.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "POSTERN_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the /metrics, /livez and /readyz endpoint.
    #[arg(long, default_value = "0.0.0.0:8080", env = "POSTERN_OPERATOR_LISTEN")]
    listen: SocketAddr,
    /// How many EsmtpListeners are reconciled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Run without leader election (only ever run one instance so).
    #[arg(long)]
    no_leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "postern-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else --namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This instance's identity in the Lease and in Events (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// The listener image of EsmtpListeners without `spec.image` (e.g. a mirror in an
    /// air-gapped registry).
    #[arg(long, env = "POSTERN_LISTENER_IMAGE", default_value = postern_operator::crd::DEFAULT_IMAGE)]
    listener_image: String,
    /// The listener pods' fsGroup (so the spool is writable), or `none` to leave it to
    /// the platform (OpenShift's restricted-v2 assigns one).
    #[arg(long, env = "POSTERN_LISTENER_FS_GROUP", default_value = "65532", value_parser = parse_fs_group)]
    listener_fs_group: FsGroup,
}

/// `--listener-fs-group`: a group id, or none.
#[derive(Clone, Copy, Debug)]
struct FsGroup(Option<i64>);

fn parse_fs_group(s: &str) -> Result<FsGroup, String> {
    if s == "none" {
        return Ok(FsGroup(None));
    }
    s.parse::<i64>()
        .ok()
        .filter(|g| *g > 0)
        .map(|g| FsGroup(Some(g)))
        .ok_or_else(|| format!("'{s}' is not a group id above 0 or 'none'"))
}

/// How long the controller may take to stop after SIGTERM before the process exits anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long releasing the Lease may take on the way out.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Rbac { name } => {
            let role = postern_operator::rbac::cluster_role(&name);
            print!(
                "{}",
                serde_yaml::to_string(&role).expect("a ClusterRole serializes")
            );
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .init();
            match run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "postern-operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let ready = Readiness::default();
    let addr = server::serve(args.listen, metrics.clone(), ready.clone())
        .await
        .with_context(|| format!("cannot serve on {}", args.listen))?;
    tracing::info!(%addr, "serving /metrics, /livez and /readyz");

    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let client = counting_client(config, &metrics).context("cannot build the Kubernetes client")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("postern-operator-{}", std::process::id()))
    });

    let leadership = if args.no_leader_election {
        None
    } else {
        let lease = LeaseOptions {
            name: args.lease_name.clone(),
            namespace: args
                .lease_namespace
                .clone()
                .or_else(|| args.namespace.clone())
                .unwrap_or_else(|| "default".into()),
            identity: identity.clone(),
        };
        // A standby instance is healthy and ready; it just does not reconcile.
        ready.set(true);
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, %identity, "waiting for the leader lease");
        let leadership = tokio::select! {
            leadership = leader::acquire(client.clone(), &lease) => {
                leadership.context("leader election failed")?
            }
            () = shutdown_signal() => return Ok(()),
        };
        tracing::info!(%identity, "became the leader");
        Some(leadership)
    };
    metrics.leader.set(1);

    // Ready again only once the controller's caches are filled.
    ready.set(false);
    let options = Options {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        instance: Some(identity),
        defaults: Defaults {
            image: args.listener_image.clone(),
            fs_group: args.listener_fs_group.0,
        },
        readiness: Some(ready.clone()),
        reach: postern_operator::drain::AdminReach::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    tracing::info!(namespace = ?args.namespace, image = %args.listener_image, "controller starting");
    let controller = tokio::spawn(controller::run(client, metrics.clone(), options, shutdown));

    let mut leadership = leadership;
    let lost = async {
        match leadership.as_mut() {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = lost => Err(anyhow::anyhow!("lost the leader lease; exiting so that a restart rejoins the election")),
        _ = shutdown_signal() => Ok(()),
    };
    // Reconciles in flight may finish; one waiting on caches that never fill (the API
    // server gone) must not keep the process alive.
    let _ = stop_tx.send(());
    if tokio::time::timeout(STOP_TIMEOUT, controller)
        .await
        .is_err()
    {
        tracing::warn!("the controller did not stop in time; exiting anyway");
    }
    metrics.leader.set(0);
    if let Some(l) = leadership
        && tokio::time::timeout(RELEASE_TIMEOUT, l.release())
            .await
            .is_err()
    {
        tracing::warn!("cannot release the leader lease in time; it expires by itself");
    }
    outcome
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

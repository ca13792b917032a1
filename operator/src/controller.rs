//! The controller: watches `EsmtpListener`s, the objects they own and the Secrets they
//! name, and runs reconcile = dereference → validate → build → apply → status.

use std::{
    collections::HashMap,
    fmt::Debug,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Future, StreamExt};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service},
        policy::v1::PodDisruptionBudget,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{EventType, Recorder, Reporter},
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{
    apply::{self, publish},
    build::{self, MANAGED_BY_LABEL, MANAGER},
    crd::{EsmtpListener, EsmtpListenerStatus},
    dereference,
    metrics::Metrics,
    status::{self, STALLED},
    validate::{self, Stall},
};

/// How often a listener that is Ready is reconciled anyway, to undo drift.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// How often a rollout in progress is looked at besides the watch events it causes.
pub const ROLLOUT_RECHECK: Duration = Duration::from_secs(60);
/// How long a trigger waits for more triggers of the same listener, so the burst of
/// watch events a rollout causes becomes one reconcile.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// First retry delay after an error; doubles per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(2);
/// Longest retry delay after repeated errors.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a reconcile failed in a way worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The caches the controller keeps; reconcile reads them instead of the API server.
#[derive(Clone)]
pub struct Stores {
    /// The `EsmtpListener`s.
    pub listeners: Store<EsmtpListener>,
    /// Secrets (for the keys TLS and Vault sources name).
    pub secrets: Store<Secret>,
    /// ConfigMaps the operator made.
    pub config_maps: Store<ConfigMap>,
    /// Deployments the operator made.
    pub deployments: Store<Deployment>,
    /// Spool claims the operator made.
    pub claims: Store<PersistentVolumeClaim>,
    /// Services the operator made.
    pub services: Store<Service>,
    /// PodDisruptionBudgets the operator made.
    pub pdbs: Store<PodDisruptionBudget>,
}

impl Stores {
    /// Waits until every cache has its first full list.
    pub async fn ready(&self) {
        let _ = futures::join!(
            self.listeners.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.claims.wait_until_ready(),
            self.services.wait_until_ready(),
            self.pdbs.wait_until_ready(),
        );
    }
}

/// What reconcile needs besides the object.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events about `EsmtpListener`s.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// The caches.
    pub stores: Stores,
    failures: Mutex<HashMap<ObjectRef<EsmtpListener>, u32>>,
}

/// Where the controller looks.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Watch one namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How many listeners are reconciled at once.
    pub concurrency: u16,
    /// This instance's name in Events (e.g. the pod name).
    pub instance: Option<String>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A cache of `K` and the stream of its changes (deletions included) that fills it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    metrics: Metrics,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = options.namespace.as_deref();
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));

    let (listeners, listener_writer) = reflector::store();
    let listener_stream = watcher(
        api::<EsmtpListener>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(listener_writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    let (secrets, secret_stream) = reflect(api::<Secret>(&client, ns), watcher::Config::default());
    let (config_maps, cm_stream) = reflect(api::<ConfigMap>(&client, ns), owned.clone());
    let (deployments, deploy_stream) = reflect(api::<Deployment>(&client, ns), owned.clone());
    let (claims, claim_stream) = reflect(api::<PersistentVolumeClaim>(&client, ns), owned.clone());
    let (services, svc_stream) = reflect(api::<Service>(&client, ns), owned.clone());
    let (pdbs, pdb_stream) = reflect(api::<PodDisruptionBudget>(&client, ns), owned);

    let stores = Stores {
        listeners: listeners.clone(),
        secrets,
        config_maps,
        deployments,
        claims,
        services,
        pdbs,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: options.instance.clone(),
        },
    );
    let ctx = Arc::new(Context {
        client,
        recorder,
        metrics,
        stores,
        failures: Mutex::new(HashMap::new()),
    });

    let index = listeners.clone();
    let secret_to_listeners = move |secret: Secret| {
        let ns = secret.namespace();
        let name = secret.name_any();
        index
            .state()
            .into_iter()
            .filter(|l| l.namespace() == ns && dereference::references(&l.spec, &name))
            .map(|l| ObjectRef::from_obj(&*l))
            .collect::<Vec<_>>()
    };

    Controller::for_stream(listener_stream, listeners)
        .owns_stream(cm_stream)
        .owns_stream(deploy_stream)
        .owns_stream(claim_stream)
        .owns_stream(svc_stream)
        .owns_stream(pdb_stream)
        .watches_stream(secret_stream, secret_to_listeners)
        .with_config(
            controller::Config::default()
                .concurrency(options.concurrency)
                .debounce(DEBOUNCE),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(listener = %obj, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::warn!(listener = %obj, error = %e, "reconcile failed");
                }
                Err(e) => tracing::debug!(error = %e, "controller event"),
            }
        })
        .await;
}

/// One reconcile of one `EsmtpListener`.
pub async fn reconcile(listener: Arc<EsmtpListener>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.stores.ready().await;
    let result = reconcile_inner(&listener, &ctx).await;
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(_) => "error",
    };
    ctx.metrics
        .reconciled(outcome, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("the failure map is never poisoned")
            .remove(&ObjectRef::from_obj(&*listener));
    }
    result.map(|(action, _)| action)
}

async fn reconcile_inner(
    listener: &EsmtpListener,
    ctx: &Context,
) -> Result<(Action, &'static str), Error> {
    let ns = listener.namespace().unwrap_or_default();
    let generation = listener.metadata.generation.unwrap_or_default();

    let secrets = dereference::lookup(&ctx.stores.secrets, &ns, &listener.spec);
    let plan = match validate::validate(listener, &secrets) {
        Ok(plan) => plan,
        Err(stall) => return stalled(listener, ctx, &stall).await,
    };
    let desired = build::build(listener, &plan);
    let deployments = match apply::apply_all(
        &ctx.client,
        &ctx.stores,
        &ctx.recorder,
        listener,
        &desired,
    )
    .await
    {
        Ok(deployments) => deployments,
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            let stall = Stall {
                reason: "Rejected",
                message: format!(
                    "the API server refused an object built from this spec: {}; change the spec",
                    s.message
                ),
            };
            return stalled(listener, ctx, &stall).await;
        }
        Err(e) => return Err(e.into()),
    };

    let observed = status::observe(listener.spec.replicas, &deployments);
    let listen = plan
        .ports
        .iter()
        .map(|p| p.service_port.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let new = status::progressing(
        listener.status.as_ref(),
        generation,
        observed,
        listen,
        desired.config_hash,
        &status::now(),
    );
    write_status(ctx, listener, &new).await?;
    Ok(if observed.complete() {
        (Action::requeue(RESYNC), "ready")
    } else {
        (Action::requeue(ROLLOUT_RECHECK), "progressing")
    })
}

/// Records a spec that cannot be realised: `Stalled=True`, an Event when the stall is
/// new, and no retry until something changes.
async fn stalled(
    listener: &EsmtpListener,
    ctx: &Context,
    stall: &Stall,
) -> Result<(Action, &'static str), Error> {
    let generation = listener.metadata.generation.unwrap_or_default();
    let was = status::condition(listener.status.as_ref(), STALLED);
    let new = status::stalled(listener.status.as_ref(), generation, stall, &status::now());
    let same_stall = was.is_some_and(|c| c.status == "True" && c.message == stall.message);
    write_status(ctx, listener, &new).await?;
    if !same_stall {
        tracing::warn!(listener = %listener.name_any(), namespace = ?listener.namespace(), reason = stall.reason, message = %stall.message, "stalled");
        publish(
            &ctx.recorder,
            listener,
            EventType::Warning,
            stall.reason,
            stall.message.clone(),
            None,
        )
        .await;
    }
    Ok((Action::await_change(), "stalled"))
}

/// Writes `status` unless it is what the object already says.
async fn write_status(
    ctx: &Context,
    listener: &EsmtpListener,
    new: &EsmtpListenerStatus,
) -> Result<(), kube::Error> {
    if listener.status.as_ref() == Some(new) {
        return Ok(());
    }
    let api: Api<EsmtpListener> = Api::namespaced(
        ctx.client.clone(),
        &listener.namespace().unwrap_or_default(),
    );
    api.patch_status(
        &listener.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": new })),
    )
    .await?;
    Ok(())
}

/// After an error: retry with a per-object exponential backoff, and say so in an Event.
pub fn error_policy(listener: Arc<EsmtpListener>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.inc();
    let failures = {
        let mut map = ctx
            .failures
            .lock()
            .expect("the failure map is never poisoned");
        let n = map.entry(ObjectRef::from_obj(&*listener)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    let note = format!("{error}; retrying in {}s", delay.as_secs());
    tokio::spawn(async move {
        publish(
            &ctx.recorder,
            &listener,
            EventType::Warning,
            "ReconcileFailed",
            note,
            None,
        )
        .await;
    });
    Action::requeue(delay)
}

/// The retry delay after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    MIN_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }
}

//! The controller: watches `EsmtpListener`s (read tolerantly, [`tolerant`]), the objects
//! they own, their pods and the Secrets they name (metadata only), and runs reconcile =
//! dereference → validate → build → apply (in rollout order) → status.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Debug,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Future, StreamExt};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service},
        policy::v1::PodDisruptionBudget,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{EventType, Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{
    apply::{self, Problem, publish},
    build::{self, Defaults, LISTENER_LABEL, MANAGED_BY_LABEL, MANAGER},
    crd::{EsmtpListener, EsmtpListenerStatus},
    dereference,
    drain::{self, AdminReach},
    metrics::Metrics,
    rollout,
    scale_down::{DRAIN_TIMEOUT, FORCE_ANNOTATION},
    server::Readiness,
    status::{self, STALLED},
    tolerant::Guarded,
    validate::{self, Stall},
};

/// How often a listener that is Ready is reconciled anyway, to undo drift.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// How often a rollout in progress is looked at besides the watch events it causes.
pub const ROLLOUT_RECHECK: Duration = Duration::from_secs(60);
/// How often a listener stalled by its pods (a crash loop, a progress deadline) is
/// looked at again besides the watch events of its Deployments and pods.
pub const STALLED_RECHECK: Duration = Duration::from_secs(120);
/// How often a listener whose surplus replicas drain is looked at (their queues are
/// read from their admin endpoints; nothing else would trigger a reconcile).
pub const DRAIN_RECHECK: Duration = Duration::from_secs(5);
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
    /// The `EsmtpListener`s, parsed or not.
    pub listeners: Store<Guarded>,
    /// The metadata of Secrets (whether those TLS and Vault sources name exist); never
    /// their values.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// The listener pods (for crash loops and image pull failures).
    pub pods: Store<Pod>,
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
    /// Which of them have had their first full list.
    pub synced: Synced,
}

impl Stores {
    /// Waits until every cache has its first full list.
    pub async fn ready(&self) {
        self.synced.wait().await;
    }
}

/// How many kinds the controller caches (the fields of [`Stores`]).
const CACHED_KINDS: usize = 8;

/// Which caches have had their first full list, told by their watch streams' `InitDone`.
///
/// Any number of tasks may wait on it at once. kube's `Store::wait_until_ready` cannot
/// be used so: it waits on one oneshot receiver, which keeps only the waker of the last
/// task that polled it, so of several concurrent waiters (the controller's own applier,
/// `/readyz`, a reconcile) all but one can sleep for ever.
#[derive(Clone, Debug)]
pub struct Synced {
    kinds: Arc<tokio::sync::watch::Sender<BTreeSet<String>>>,
    expected: usize,
}

impl Synced {
    /// Nothing synced yet; ready once `expected` distinct kinds are.
    pub fn new(expected: usize) -> Self {
        Self {
            kinds: Arc::new(tokio::sync::watch::Sender::new(BTreeSet::new())),
            expected,
        }
    }

    /// Records that the cache of `kind` has its first full list (again, after a re-list).
    pub fn mark(&self, kind: &str) {
        self.kinds
            .send_if_modified(|kinds| kinds.insert(kind.to_owned()));
    }

    /// What a reflected watch stream of `K` passes each event to, after its store has
    /// applied it: marks `K` synced on `InitDone`.
    pub fn marker<K: Resource<DynamicType = ()>>(
        &self,
    ) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
        let (synced, kind) = (self.clone(), K::kind(&()).into_owned());
        move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                synced.mark(&kind);
            }
        }
    }

    /// Whether every expected cache has its first full list.
    pub fn is_ready(&self) -> bool {
        self.kinds.borrow().len() >= self.expected
    }

    /// Waits until every expected cache has its first full list.
    pub async fn wait(&self) {
        let mut changes = self.kinds.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = changes.wait_for(|kinds| kinds.len() >= self.expected).await;
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
    /// What fills the pod settings a spec leaves open.
    pub defaults: Defaults,
    /// How listener pods' admin endpoints are reached (to drain them).
    pub reach: AdminReach,
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
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
    /// What fills the pod settings a spec leaves open.
    pub defaults: Defaults,
    /// Set once every cache has its first full list (`/readyz`).
    pub readiness: Option<Readiness>,
    /// How listener pods' admin endpoints are reached: by pod IP, unless a test points
    /// the operator at listener processes of its own.
    pub reach: AdminReach,
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

/// The watch of `K`, with each error logged at warn level and counted in `metrics`.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    metrics: &Metrics,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let metrics = metrics.clone();
    let kind = K::kind(&()).to_string();
    metrics.watching(&kind);
    watcher(api, config)
        .default_backoff()
        .inspect(move |event| {
            if let Err(e) = event {
                tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                metrics.watch_error(&kind);
            }
        })
}

/// A cache of `K` and the stream of its changes (deletions included) that fills it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    metrics: &Metrics,
    synced: &Synced,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watch(api, config, metrics)
        .reflect(writer)
        .inspect(synced.marker::<K>())
        .touched_objects();
    (reader, stream)
}

/// What makes a listener worth reconciling again: a new generation (a spec change), the
/// start of its deletion (so reconcile stops applying at once), or the scale-down force
/// annotation. Status writes are none of these.
fn generation_or_deletion(obj: &Guarded) -> Option<u64> {
    let meta = obj.meta();
    let generation = u64::try_from(meta.generation?).unwrap_or_default();
    let forced = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(FORCE_ANNOTATION))
        .is_some_and(|v| v == "true");
    Some(
        (generation << 2) | (u64::from(meta.deletion_timestamp.is_some()) << 1) | u64::from(forced),
    )
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

    let synced = Synced::new(CACHED_KINDS);
    let (listeners, listener_writer) = reflector::store();
    let listener_stream = watch(
        api::<Guarded>(&client, ns),
        watcher::Config::default(),
        &metrics,
    )
    .reflect(listener_writer)
    .inspect(synced.marker::<Guarded>())
    .applied_objects()
    .predicate_filter(generation_or_deletion, Default::default());
    let (secrets, secret_stream) = reflect(
        api::<PartialObjectMeta<Secret>>(&client, ns),
        watcher::Config::default(),
        &metrics,
        &synced,
    );
    let (config_maps, cm_stream) = reflect(
        api::<ConfigMap>(&client, ns),
        owned.clone(),
        &metrics,
        &synced,
    );
    let (deployments, deploy_stream) = reflect(
        api::<Deployment>(&client, ns),
        owned.clone(),
        &metrics,
        &synced,
    );
    let (claims, claim_stream) = reflect(
        api::<PersistentVolumeClaim>(&client, ns),
        owned.clone(),
        &metrics,
        &synced,
    );
    let (services, svc_stream) = reflect(
        api::<Service>(&client, ns),
        owned.clone(),
        &metrics,
        &synced,
    );
    let (pdbs, pdb_stream) = reflect(
        api::<PodDisruptionBudget>(&client, ns),
        owned.clone(),
        &metrics,
        &synced,
    );
    let (pods, pod_stream) = reflect(api::<Pod>(&client, ns), owned, &metrics, &synced);

    let stores = Stores {
        listeners: listeners.clone(),
        secrets,
        pods,
        config_maps,
        deployments,
        claims,
        services,
        pdbs,
        synced,
    };
    if let Some(readiness) = options.readiness.clone() {
        let stores = stores.clone();
        tokio::spawn(async move {
            stores.ready().await;
            tracing::info!("caches filled; ready");
            readiness.set(true);
        });
    }
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
        defaults: options.defaults.clone(),
        reach: options.reach.clone(),
        failures: Mutex::new(HashMap::new()),
    });

    let index = listeners.clone();
    let secret_to_listeners = move |secret: PartialObjectMeta<Secret>| {
        let ns = secret.namespace();
        let name = secret.name_any();
        index
            .state()
            .into_iter()
            .filter(|g| {
                g.namespace() == ns
                    && g.listener()
                        .is_some_and(|l| dereference::references(&l.spec, &name))
            })
            .map(|g| ObjectRef::from_obj(&*g))
            .collect::<Vec<_>>()
    };
    // Pods are owned by ReplicaSets; their listener label says whose they are.
    let pod_to_listener = |pod: Pod| {
        let listener = pod.labels().get(LISTENER_LABEL).cloned()?;
        Some(ObjectRef::<Guarded>::new(&listener).within(&pod.namespace()?))
    };

    Controller::for_stream(listener_stream, listeners)
        .owns_stream(cm_stream)
        .owns_stream(deploy_stream)
        .owns_stream(claim_stream)
        .owns_stream(svc_stream)
        .owns_stream(pdb_stream)
        .watches_stream(secret_stream, secret_to_listeners)
        .watches_stream(pod_stream, pod_to_listener)
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
                Err(controller::Error::QueueError(e)) => {
                    tracing::warn!(error = %e, "a watch failed");
                }
                Err(e) => tracing::debug!(error = %e, "controller event"),
            }
        })
        .await;
}

/// One reconcile of one `EsmtpListener`.
pub async fn reconcile(object: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.stores.ready().await;
    let result = match &object.0 {
        _ if object.meta().deletion_timestamp.is_some() => {
            // Being deleted: the garbage collector removes the children; re-applying
            // them now would race it.
            Ok((Action::await_change(), "deleting"))
        }
        Err(unreadable) => {
            let stall = Stall {
                reason: "InvalidSpec",
                message: unreadable.message(),
            };
            stalled(&*object, object.status(), &ctx, &stall, None, None).await
        }
        Ok(listener) => reconcile_inner(&object, listener, &ctx).await,
    };
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(_) => "error",
    };
    ctx.metrics
        .reconciled(outcome, started.elapsed().as_secs_f64());
    ctx.metrics.listener_outcome(
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default(),
        outcome,
    );
    ctx.metrics.forget_listeners(|ns, name| {
        ctx.stores
            .listeners
            .get(&ObjectRef::new(name).within(ns))
            .is_some()
    });
    if outcome == "error" {
        ctx.metrics.errors.inc();
    }
    if matches!(outcome, "ready" | "progressing" | "deleting") {
        ctx.failures
            .lock()
            .expect("the failure map is never poisoned")
            .remove(&ObjectRef::from_obj(&*object));
    }
    result.map(|(action, _)| action)
}

/// How many times in a row reconciling `object` failed, counting this failure.
fn failed_again(ctx: &Context, object: &Guarded) -> u32 {
    let mut map = ctx
        .failures
        .lock()
        .expect("the failure map is never poisoned");
    let n = map.entry(ObjectRef::from_obj(object)).or_insert(0);
    *n = n.saturating_add(1);
    *n
}

async fn reconcile_inner(
    object: &Guarded,
    listener: &EsmtpListener,
    ctx: &Context,
) -> Result<(Action, &'static str), Error> {
    let ns = listener.namespace().unwrap_or_default();
    let name = listener.name_any();
    let generation = listener.metadata.generation.unwrap_or_default();
    let old = listener.status.as_ref();

    let secrets = dereference::lookup(&ctx.stores.secrets, &ns, &listener.spec);
    let plan = match validate::validate(listener, &secrets) {
        Ok(plan) => plan,
        Err(stall) => return stalled(listener, old, ctx, &stall, None, None).await,
    };
    let desired = build::build(listener, &plan, &ctx.defaults);
    let mut applied =
        apply::apply_all(&ctx.client, &ctx.stores, &ctx.recorder, listener, &desired).await;
    let drained = drain::scale_down(
        &ctx.client,
        &ctx.stores,
        &ctx.recorder,
        &ctx.reach,
        listener,
    )
    .await;
    applied.problems.extend(drained.problems);
    let observed = rollout::observe(&desired.deployments, &applied.deployments);
    let listen = plan
        .ports
        .iter()
        .map(|p| p.service_port.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut new = status::progressing(
        old,
        generation,
        observed,
        listen,
        desired.config_hash.clone(),
        &status::now(),
    );
    new.ready = Some(status::ready_text(observed));
    new.selector = Some(format!("{LISTENER_LABEL}={name}"));
    new.image = Some(listener.image(&ctx.defaults.image).to_string());
    new.retained_claims = apply::retained_claims(&ctx.stores, listener);

    // A child that cannot be applied: retried with a backoff when the failure may pass,
    // else a stall naming it (and still retried with a backoff: a refusal can depend on
    // objects that change without a change to this listener).
    if let Some(problem) = applied.problems.iter().find(|p| !p.transient()) {
        let stall = Stall {
            reason: match problem {
                Problem::NotOwned { .. } => "NotOwned",
                _ => "Rejected",
            },
            message: problem.to_string(),
        };
        let delay = backoff(failed_again(ctx, object));
        return stalled(
            listener,
            Some(&new),
            ctx,
            &stall,
            Some(delay),
            Some(observed),
        )
        .await;
    }
    if let Some(problem) = applied.problems.first() {
        let delay = backoff(failed_again(ctx, object));
        let message = format!("{problem}; retrying in {}s", delay.as_secs());
        let retry = status::retrying(Some(&new), generation, message.clone(), &status::now());
        write_status(ctx, listener, old, &retry).await?;
        tracing::warn!(listener = %name, namespace = %ns, error = %message, "apply failed");
        return Ok((Action::requeue(delay), "error"));
    }

    // The pods and Deployments may have given up: that heals only by a change (or by
    // itself, e.g. an image that appears), so it is a stall that is looked at again.
    if let Some((reason, message)) = pod_failure(ctx, listener)
        .or_else(|| deployment_failure(&desired.deployments, &applied.deployments))
    {
        let stall = Stall {
            reason: leak(reason),
            message,
        };
        return stalled(
            listener,
            Some(&new),
            ctx,
            &stall,
            Some(STALLED_RECHECK),
            Some(observed),
        )
        .await;
    }

    // Surplus replicas still draining: past the deadline a stall that names them (the
    // operator keeps asking), before it progress; looked at again soon either way.
    if let Some(message) = drained.decision.overdue_message(&drained.policy) {
        let stall = Stall {
            reason: DRAIN_TIMEOUT,
            message,
        };
        return stalled(
            listener,
            Some(&new),
            ctx,
            &stall,
            Some(DRAIN_RECHECK),
            Some(observed),
        )
        .await;
    }
    if drained.decision.draining() {
        status::draining(
            &mut new,
            old,
            drained.decision.progress_message(),
            &status::now(),
        );
        write_status(ctx, listener, old, &new).await?;
        return Ok((Action::requeue(DRAIN_RECHECK), "progressing"));
    }

    write_status(ctx, listener, old, &new).await?;
    Ok(if observed.complete() {
        (Action::requeue(RESYNC), "ready")
    } else {
        (Action::requeue(ROLLOUT_RECHECK), "progressing")
    })
}

/// The reason words the operator may report; reasons from pods and Deployments outside
/// this list are reported as `PodFailing` / `ProgressDeadlineExceeded`.
fn leak(reason: String) -> &'static str {
    rollout::FAILING_REASONS
        .iter()
        .chain(&["ProgressDeadlineExceeded"])
        .find(|r| **r == reason)
        .copied()
        .unwrap_or("PodFailing")
}

/// The first failing pod of `listener`, as `(reason, message)`.
fn pod_failure(ctx: &Context, listener: &EsmtpListener) -> Option<(String, String)> {
    let ns = listener.namespace();
    let name = listener.name_any();
    let mut pods = ctx
        .stores
        .pods
        .state_filter(|p| p.namespace() == ns && p.labels().get(LISTENER_LABEL) == Some(&name));
    pods.sort_by_key(|p| p.name_any());
    pods.iter().find_map(|p| rollout::failing(p))
}

/// The first desired ordinal whose Deployment gave up, as `(reason, message)`.
fn deployment_failure(
    desired: &[k8s_openapi::api::apps::v1::Deployment],
    current: &[Option<k8s_openapi::api::apps::v1::Deployment>],
) -> Option<(String, String)> {
    desired.iter().zip(current).find_map(|(d, c)| {
        let c = c.as_ref()?;
        let (reason, message) = rollout::stuck(c)?;
        let name = d.metadata.name.clone().unwrap_or_default();
        Some((
            reason,
            format!("Deployment {name}: {message}; the ordinals after it wait"),
        ))
    })
}

/// Records a spec that cannot be realised: `Stalled=True`, an Event when the stall is
/// new, and no retry until something changes (or after `retry`). `base` is the status
/// to start from (the object's, or one with fresh counts); `observed` the replica counts.
async fn stalled<K: Resource<DynamicType = ()>>(
    object: &K,
    base: Option<&EsmtpListenerStatus>,
    ctx: &Context,
    stall: &Stall,
    retry: Option<Duration>,
    observed: Option<status::Observed>,
) -> Result<(Action, &'static str), Error> {
    let meta = object.meta();
    let generation = meta.generation.unwrap_or_default();
    let old = current_status(ctx, object);
    let was = status::condition(old.as_ref(), STALLED);
    let mut new = status::stalled(base, generation, stall, &status::now());
    if let Some(o) = observed {
        new.replicas = o.replicas;
        new.ready_replicas = o.ready;
        new.ready = Some(status::ready_text(o));
    }
    let same_stall = was.is_some_and(|c| c.status == "True" && c.message == stall.message);
    write_status_of(ctx, meta, old.as_ref(), &new).await?;
    if !same_stall {
        tracing::warn!(listener = ?meta.name, namespace = ?meta.namespace, reason = stall.reason, message = %stall.message, "stalled");
        publish(
            &ctx.recorder,
            object,
            EventType::Warning,
            stall.reason,
            stall.message.clone(),
            None,
        )
        .await;
    }
    Ok((
        retry.map_or_else(Action::await_change, Action::requeue),
        "stalled",
    ))
}

/// The status the object has now, as far as it is readable.
fn current_status<K: Resource>(ctx: &Context, object: &K) -> Option<EsmtpListenerStatus> {
    let meta = object.meta();
    let key = ObjectRef::new(meta.name.as_deref().unwrap_or_default())
        .within(meta.namespace.as_deref().unwrap_or_default());
    ctx.stores
        .listeners
        .get(&key)
        .and_then(|g| g.status().cloned())
}

/// Writes `status` unless it is what the object already says (`old`).
async fn write_status(
    ctx: &Context,
    listener: &EsmtpListener,
    old: Option<&EsmtpListenerStatus>,
    new: &EsmtpListenerStatus,
) -> Result<(), kube::Error> {
    write_status_of(ctx, &listener.metadata, old, new).await
}

async fn write_status_of(
    ctx: &Context,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    old: Option<&EsmtpListenerStatus>,
    new: &EsmtpListenerStatus,
) -> Result<(), kube::Error> {
    if old == Some(new) {
        return Ok(());
    }
    // Read the answer tolerantly too: the object may be one the operator cannot parse.
    let api: Api<Guarded> = Api::namespaced(
        ctx.client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        meta.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status_patch(old, new) })),
    )
    .await?;
    Ok(())
}

/// The merge patch from `old` to `new`: `new`, with `null` for each field `old` has and
/// `new` leaves out (a merge patch keeps what it does not mention).
fn status_patch(old: Option<&EsmtpListenerStatus>, new: &EsmtpListenerStatus) -> serde_json::Value {
    let mut patch = serde_json::to_value(new).expect("a status serializes");
    if let (Some(old), Some(map)) = (
        old.and_then(|o| serde_json::to_value(o).ok()),
        patch.as_object_mut(),
    ) && let Some(old) = old.as_object()
    {
        for key in old.keys() {
            map.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

/// After an error: retry with a per-object exponential backoff, and say so in an Event.
pub fn error_policy(listener: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.inc();
    let failures = failed_again(&ctx, &listener);
    let delay = backoff(failures);
    let note = format!("{error}; retrying in {}s", delay.as_secs());
    tokio::spawn(async move {
        publish(
            &ctx.recorder,
            &*listener,
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
    fn a_status_patch_clears_what_the_new_status_leaves_out() {
        let old = EsmtpListenerStatus {
            retained_claims: vec!["mx-spool-1".into()],
            ..EsmtpListenerStatus::default()
        };
        let patch = status_patch(Some(&old), &EsmtpListenerStatus::default());
        assert_eq!(patch["retainedClaims"], serde_json::Value::Null);
        assert!(patch.as_object().unwrap().contains_key("retainedClaims"));
        assert_eq!(patch["replicas"], 0);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_concurrent_waiter_wakes_once_all_kinds_are_synced() {
        let synced = Synced::new(2);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let synced = synced.clone();
                tokio::spawn(async move { synced.wait().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        synced.mark("ConfigMap");
        synced.mark("ConfigMap");
        assert!(!synced.is_ready(), "one kind twice is not two kinds");
        assert!(waiters.iter().all(|w| !w.is_finished()));
        synced.mark("Deployment");
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was never woken")
                .unwrap();
        }
        assert!(synced.is_ready());
        // A late waiter returns at once.
        tokio::time::timeout(Duration::from_secs(1), synced.wait())
            .await
            .unwrap();
    }
}

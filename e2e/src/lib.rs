//! Helpers for Postern's end-to-end tests.
//!
//! The tests run against a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok faking the
//! nodes) that `e2e/cluster up` starts on this machine.  This crate finds that
//! cluster, gives every test a fresh namespace, and offers waits with
//! timeouts.
//!
//! ```no_run
//! use postern_e2e::require_cluster;
//!
//! #[tokio::test]
//! async fn works_on_a_real_cluster() -> anyhow::Result<()> {
//!     let cluster = require_cluster!("works_on_a_real_cluster", Ok(()));
//!     let ns = cluster.namespace("works").await?;
//!     // ... create objects in ns.name() with ns.client() ...
//!     ns.cleanup().await
//! }
//! ```
//!
//! Tests that need the cluster are skipped, with a loud message, when it was
//! not started; when the `CI` environment variable is set they fail instead,
//! because CI always starts the cluster.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::Value;

/// Gets the e2e [`Cluster`], or skips the calling test.
///
/// `require_cluster!("test name")` in a test returning `()`, or
/// `require_cluster!("test name", Ok(()))` in one returning a `Result`:
/// evaluates to the [`Cluster`] when it runs; when it was not started, prints
/// a loud SKIPPED banner and returns from the test with the given value.
/// With `CI` set a missing cluster panics instead (see [`Cluster::require`]).
#[macro_export]
macro_rules! require_cluster {
    ($test:expr) => {
        match $crate::Cluster::require($test).await {
            Some(cluster) => cluster,
            None => return,
        }
    };
    ($test:expr, $skipped:expr) => {
        match $crate::Cluster::require($test).await {
            Some(cluster) => cluster,
            None => return $skipped,
        }
    };
}

/// Field manager used for server-side apply by the helpers in this crate.
pub const FIELD_MANAGER: &str = "postern-e2e";

/// Label put on every namespace created by [`Cluster::namespace`], so that
/// leftovers can be found with `kubectl get ns -l postern-e2e/test`.
pub const TEST_NAMESPACE_LABEL: &str = "postern-e2e/test";

/// Label selecting the PersistentVolumes `e2e/cluster up` pre-creates (see
/// [`Cluster::recycle_volumes`]).
pub const VOLUME_POOL_LABEL: &str = "postern-e2e/pool";

/// Namespace labels that make the Pod Security admission enforce the
/// `restricted` profile, for [`Cluster::namespace_with_labels`].
pub const POD_SECURITY_RESTRICTED: &[(&str, &str)] = &[
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];

/// Default timeout for the waits in this crate: long enough for the
/// controllers of a loaded 2-core machine, short enough to fail a test fast.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after a CRD is created the garbage collector may take to notice
/// it: kube-controller-manager re-reads API discovery every 30 s (a
/// hard-coded period).  Until then, deleting a custom resource does not
/// collect the objects it owns, so waits for such garbage collection need a
/// timeout above this (e.g. [`GC_TIMEOUT`]).
pub const GC_DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// Timeout for waiting on garbage collection of objects owned by a custom
/// resource whose CRD may be new (see [`GC_DISCOVERY_PERIOD`]).
pub const GC_TIMEOUT: Duration = Duration::from_secs(90);

/// Default state directory of `e2e/cluster` (overridden by
/// `POSTERN_E2E_STATE`, as in the script).
const DEFAULT_STATE_DIR: &str = "/tmp/postern-e2e";

/// A running cluster and an admin client for it.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    config: Config,
    kubeconfig: PathBuf,
}

impl Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.config.cluster_url.to_string())
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

/// The kubeconfig `e2e/cluster up` writes, honouring `POSTERN_E2E_STATE`.
pub fn default_kubeconfig_path() -> PathBuf {
    let state = std::env::var_os("POSTERN_E2E_STATE")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    state.join("kubeconfig")
}

/// The kubeconfig the tests use: the first path of `KUBECONFIG` when set,
/// else [`default_kubeconfig_path`].
pub fn kubeconfig_path_from_env() -> PathBuf {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(list) => std::env::split_paths(&list)
            .next()
            .unwrap_or_else(default_kubeconfig_path),
        None => default_kubeconfig_path(),
    }
}

/// True for `https://127.0.0.1:…`, `https://localhost:…` and `https://[::1]:…`.
fn is_loopback_server(server: &str) -> bool {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = rest.split('/').next().unwrap_or_default();
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

impl Cluster {
    /// Finds the cluster started by `e2e/cluster up`.
    ///
    /// The kubeconfig is the first path of `KUBECONFIG` if that is set
    /// (`eval "$(e2e/cluster env)"` sets it), else
    /// `${POSTERN_E2E_STATE:-/tmp/postern-e2e}/kubeconfig`.  Returns
    /// `Ok(None)` when that file does not exist, i.e. the cluster was not
    /// started.  Returns an error if the file exists but the API server does
    /// not answer (a crashed cluster must fail tests, not skip them), or if it
    /// points at a non-loopback server while `POSTERN_E2E_ALLOW_REMOTE` is
    /// unset: the tests create and delete namespaces, so they refuse to run
    /// against some other cluster by accident.
    pub async fn from_env() -> Result<Option<Self>> {
        let path = kubeconfig_path_from_env();
        if !path.exists() {
            return Ok(None);
        }
        Self::from_kubeconfig(&path).await.map(Some)
    }

    /// Connects to the cluster described by the kubeconfig at `path` and
    /// checks that its API server is ready.
    pub async fn from_kubeconfig(path: &Path) -> Result<Self> {
        let kubeconfig = Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?;
        let server = config.cluster_url.to_string();
        if !is_loopback_server(&server) && std::env::var_os("POSTERN_E2E_ALLOW_REMOTE").is_none() {
            bail!(
                "kubeconfig {} points at {server}, not at the local e2e cluster; \
                 set POSTERN_E2E_ALLOW_REMOTE=1 to run the e2e tests there anyway",
                path.display()
            );
        }
        let client = Client::try_from(config.clone()).context("building the Kubernetes client")?;
        let cluster = Self {
            client,
            config,
            kubeconfig: path.to_owned(),
        };
        cluster.check_ready().await.with_context(|| {
            format!(
                "the e2e cluster of {} does not answer; is it still running? \
                 (e2e/cluster status)",
                path.display()
            )
        })?;
        Ok(cluster)
    }

    /// Finds the cluster like [`Cluster::from_env`], but reports a missing
    /// cluster through [`postern_skip::skip`]: with `CI` set it panics (CI always
    /// starts the cluster, so the tests must really run there); otherwise it is
    /// reported loudly and counted, and `None` lets the caller return.  Any other
    /// error panics.
    /// `test` names the test in the message.
    pub async fn require(test: &str) -> Option<Self> {
        match Self::from_env().await {
            Ok(Some(cluster)) => Some(cluster),
            Ok(None) => {
                postern_skip::skip(&format!(
                    "no e2e Kubernetes cluster is running (start one with \
                     `e2e/cluster build && e2e/cluster up`, see e2e/README.md; looked for {})",
                    kubeconfig_path_from_env().display()
                ));
                None
            }
            Err(e) => panic!("{test}: {e:#}"),
        }
    }

    /// GETs `/readyz` and fails unless the API server says `ok`.
    pub async fn check_ready(&self) -> Result<()> {
        let req = http_get("/readyz")?;
        let body = self.client.request_text(req).await.context("GET /readyz")?;
        if body.trim() != "ok" {
            bail!("/readyz answered {body:?}");
        }
        Ok(())
    }

    /// An admin client for the cluster.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The client configuration (e.g. to build more clients).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The kubeconfig this cluster was found through (for `kubectl` or
    /// `helm` run by a test).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Path of a tool built by `e2e/cluster build` (`kubectl`, `helm`,
    /// `kubeconform`, ...): from the cache directory `e2e/cluster up` records
    /// next to its kubeconfig, falling back to the bare name (looked up in
    /// `PATH`).
    pub fn tool(&self, name: &str) -> PathBuf {
        let recorded = self
            .kubeconfig
            .parent()
            .map(|dir| dir.join("bin-dir"))
            .and_then(|f| std::fs::read_to_string(f).ok());
        match recorded {
            Some(dir) if Path::new(dir.trim()).join(name).exists() => {
                Path::new(dir.trim()).join(name)
            }
            _ => PathBuf::from(name),
        }
    }

    /// Makes the pre-made volumes of `e2e/cluster up` that were released by
    /// deleted claims available again, and returns how many.
    ///
    /// The cluster has no storage provisioner: claims bind to a pool of
    /// hostPath PersistentVolumes (label [`VOLUME_POOL_LABEL`]) with the
    /// `Retain` policy, which stay `Released` once their claim is deleted.
    /// Call this from tests that use many claims.
    pub async fn recycle_volumes(&self) -> Result<usize> {
        let pvs = Api::<PersistentVolume>::all(self.client());
        let released = pvs
            .list(&ListParams::default().labels(VOLUME_POOL_LABEL))
            .await
            .context("listing the volume pool")?;
        let mut recycled = 0;
        for pv in released.items {
            let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase != Some("Released") {
                continue;
            }
            let name = pv.name_any();
            let patch = serde_json::json!({ "spec": { "claimRef": null } });
            pvs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("recycling {name}"))?;
            recycled += 1;
        }
        Ok(recycled)
    }

    /// Creates a fresh namespace named after `prefix` plus a unique suffix,
    /// and waits until its default ServiceAccount exists (so pods can be
    /// created in it).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        self.namespace_with_labels(prefix, &[]).await
    }

    /// Creates a fresh namespace with extra labels, e.g.
    /// [`POD_SECURITY_RESTRICTED`].
    pub async fn namespace_with_labels(
        &self,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> Result<TestNamespace> {
        let name = unique_name(prefix);
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let test_ns = TestNamespace {
            name,
            client: self.client(),
            config: self.config.clone(),
            cleaned_up: false,
        };
        // Pods cannot be created before the controller-manager has made the
        // namespace's default ServiceAccount; a ReplicaSet that tries too
        // early backs off for seconds.  Hand out the namespace once usable.
        wait_for(
            &test_ns.api::<ServiceAccount>(),
            "default",
            &format!("the default ServiceAccount of namespace {}", test_ns.name),
            DEFAULT_TIMEOUT,
            |sa: Option<&ServiceAccount>| sa.is_some(),
        )
        .await?;
        Ok(test_ns)
    }
}

fn http_get(path: &str) -> Result<http::Request<Vec<u8>>> {
    http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| anyhow!("building request for {path}: {e}"))
}

/// `e2e-<prefix>-<random hex>`, a valid namespace name (at most 63 chars).
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(40);
    let clean = clean.trim_matches('-');
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    let suffix = hasher.finish() & 0xff_ffff;
    if clean.is_empty() {
        format!("e2e-{suffix:06x}")
    } else {
        format!("e2e-{clean}-{suffix:06x}")
    }
}

/// A namespace created for one test, deleted when the value is dropped or
/// by [`TestNamespace::cleanup`].
///
/// Set `POSTERN_E2E_KEEP_NAMESPACES=1` to keep all of them, or
/// `POSTERN_E2E_KEEP_FAILED=1` to keep those of failing (panicking) tests,
/// for inspection with `kubectl`.
pub struct TestNamespace {
    name: String,
    client: Client,
    config: Config,
    cleaned_up: bool,
}

impl Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client for the cluster.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API handle for namespaced resources of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.name)
    }

    /// Deletes the namespace now (its content goes with it, through the
    /// namespace controller), without waiting for it to disappear.
    pub async fn cleanup(mut self) -> Result<()> {
        self.cleaned_up = true;
        delete_namespace(self.client(), &self.name).await
    }

    /// Deletes the namespace and waits until it is gone.
    pub async fn cleanup_and_wait(mut self, timeout: Duration) -> Result<()> {
        self.cleaned_up = true;
        let api = Api::<Namespace>::all(self.client());
        let uid = api.get(&self.name).await?.uid().unwrap_or_default();
        delete_namespace(self.client(), &self.name).await?;
        wait_for(
            &api,
            &self.name,
            &format!("namespace {} to be deleted", self.name),
            timeout,
            conditions::is_deleted(&uid),
        )
        .await
        .map(drop)
    }
}

async fn delete_namespace(client: Client, name: &str) -> Result<()> {
    match Api::<Namespace>::all(client)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting namespace {name}")),
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned_up {
            return;
        }
        let keep_all = std::env::var_os("POSTERN_E2E_KEEP_NAMESPACES").is_some();
        let keep_failed =
            std::thread::panicking() && std::env::var_os("POSTERN_E2E_KEEP_FAILED").is_some();
        if keep_all || keep_failed {
            eprintln!("postern-e2e: keeping namespace {}", self.name);
            return;
        }
        // Drop cannot await, and the test's runtime may be single-threaded
        // and busy dropping us: delete from a separate thread with its own
        // runtime and client, and wait for it.
        let name = self.name.clone();
        let config = self.config.clone();
        let outcome = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = Client::try_from(config)?;
                tokio::time::timeout(Duration::from_secs(15), delete_namespace(client, &name))
                    .await
                    .map_err(|_| anyhow!("timed out"))?
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "postern-e2e: could not delete namespace {}: {e:#}",
                self.name
            ),
            Err(_) => eprintln!(
                "postern-e2e: could not delete namespace {}: cleanup thread panicked",
                self.name
            ),
        }
    }
}

/// Waits, through a watch, until the object `name` seen by `api` satisfies
/// `condition` (which also sees `None` while the object does not exist).
/// On timeout the error says what was awaited and shows the object's last
/// state.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Result<Option<K>>
where
    K: Clone + Debug + Send + k8s_openapi::serde::de::DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(result) => result.with_context(|| format!("watching while waiting for {what}")),
        Err(_) => {
            let last = match api.get_opt(name).await {
                Ok(Some(obj)) => format!("{obj:#?}"),
                Ok(None) => "the object does not exist".to_owned(),
                Err(e) => format!("(could not get it: {e})"),
            };
            Err(anyhow!(
                "timed out after {timeout:?} waiting for {what}; last state: {last}"
            ))
        }
    }
}

/// Polls `probe` every 250 ms until it returns `Ok(Some(value))`, for
/// conditions a watch on one object cannot express (lists, several
/// objects).  Errors from `probe` end the wait at once.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe()
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Condition: a Deployment whose current generation has been observed and
/// that reports `Available=True` with all replicas updated and available.
pub fn deployment_available() -> impl Condition<Deployment> {
    |obj: Option<&Deployment>| {
        let Some(d) = obj else { return false };
        let Some(status) = &d.status else {
            return false;
        };
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let observed =
            status.observed_generation.unwrap_or(-1) >= d.metadata.generation.unwrap_or(0);
        let available = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True");
        observed
            && available
            && status.updated_replicas.unwrap_or(0) == wanted
            && status.available_replicas.unwrap_or(0) == wanted
    }
}

/// Waits until the Deployment `name` is available (see
/// [`deployment_available`]).
pub async fn wait_deployment_available(
    api: &Api<Deployment>,
    name: &str,
    timeout: Duration,
) -> Result<Deployment> {
    wait_for(
        api,
        name,
        &format!("Deployment {name} to be Available"),
        timeout,
        deployment_available(),
    )
    .await?
    .ok_or_else(|| anyhow!("Deployment {name} disappeared"))
}

/// Waits until the object `name` with uid `uid` is gone (deleted, or
/// replaced by another object of the same name).
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, uid: &str, timeout: Duration) -> Result<()>
where
    K: Clone + Debug + Send + k8s_openapi::serde::de::DeserializeOwned + Resource + 'static,
{
    wait_for(
        api,
        name,
        &format!("{name} (uid {uid}) to be deleted"),
        timeout,
        conditions::is_deleted(uid),
    )
    .await
    .map(drop)
}

/// Server-side applies `object` (a full manifest, as JSON) as
/// [`FIELD_MANAGER`], taking over conflicting fields, and returns what the
/// server stored.
pub async fn apply<K>(api: &Api<K>, name: &str, object: &Value) -> Result<K>
where
    K: Clone + Debug + k8s_openapi::serde::de::DeserializeOwned + Resource,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("server-side applying {name}"))
}

//! Shared steps of the operator's e2e tests: install the CRD, run the controller
//! in-process for one test namespace, apply `EsmtpListener`s and wait on their status.

#![allow(dead_code, missing_docs)]

pub mod listener;

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::wait::{await_condition, conditions},
};
use postern_e2e::{Cluster, TestNamespace, wait_for};
use postern_operator::{
    controller::{self, Options},
    crd::{self, EsmtpListener},
    drain::AdminReach,
    metrics::{Metrics, counting_client},
    status,
};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

/// Generous for a loaded 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// Held while a test changes the CRD, so tests running at once never see another's.
pub static CRD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Applies the CRD the operator generates and waits until it is served.
pub async fn install_crd(client: &Client) -> Result<()> {
    let _held = CRD_LOCK.lock().await;
    install_crd_unlocked(client).await
}

/// [`install_crd`] for a caller that holds [`CRD_LOCK`].
pub async fn install_crd_unlocked(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crd::crd();
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    api.patch(
        &name,
        &PatchParams::apply("postern-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the EsmtpListener CRD")?;
    tokio::time::timeout(
        TIMEOUT,
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .map_err(|_| anyhow!("the CRD was not established in {TIMEOUT:?}"))??;
    Ok(())
}

/// The controller running in this process for one namespace; stopped on drop.
pub struct Operator {
    /// Its metrics (API requests, reconciles).
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    /// Starts the controller watching `ns` only.
    pub async fn start(cluster: &Cluster, ns: &str) -> Result<Self> {
        Self::start_with(cluster.config().clone(), ns).await
    }

    /// Starts the controller watching `ns` only, with the client `config`.
    pub async fn start_with(config: kube::Config, ns: &str) -> Result<Self> {
        Self::start_with_defaults(config, ns, postern_operator::build::Defaults::default()).await
    }

    /// Starts the controller watching `ns` only, with the client `config` and `defaults`.
    pub async fn start_with_defaults(
        config: kube::Config,
        ns: &str,
        defaults: postern_operator::build::Defaults,
    ) -> Result<Self> {
        Self::start_with_options(config, ns, defaults, AdminReach::default()).await
    }

    /// Starts the controller watching `ns` only, reaching the listener pods' admin
    /// endpoints through `reach`.
    pub async fn start_reaching(cluster: &Cluster, ns: &str, reach: AdminReach) -> Result<Self> {
        Self::start_with_options(
            cluster.config().clone(),
            ns,
            postern_operator::build::Defaults::default(),
            reach,
        )
        .await
    }

    async fn start_with_options(
        config: kube::Config,
        ns: &str,
        defaults: postern_operator::build::Defaults,
        reach: AdminReach,
    ) -> Result<Self> {
        let metrics = Metrics::new();
        let client = counting_client(config, &metrics)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let options = Options {
            namespace: Some(ns.to_string()),
            concurrency: 8,
            instance: Some(format!("e2e-{ns}")),
            defaults,
            reach,
            ..Options::default()
        };
        let task = tokio::spawn(controller::run(
            client,
            metrics.clone(),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            metrics,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops the controller and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A cluster, a fresh namespace with the CRD installed, and the operator running there.
pub async fn setup(cluster: &Cluster, test: &str) -> Result<(TestNamespace, Operator)> {
    install_crd(&cluster.client()).await?;
    cluster.recycle_volumes().await?;
    let ns = cluster.namespace(test).await?;
    let operator = Operator::start(cluster, ns.name()).await?;
    Ok((ns, operator))
}

/// Server-side applies an `EsmtpListener` called `name` with `spec` (YAML).
pub async fn apply_listener(
    api: &Api<EsmtpListener>,
    name: &str,
    spec: &str,
) -> Result<EsmtpListener> {
    let spec: Value = serde_yaml::from_str(spec).context("test spec is YAML")?;
    let obj = serde_json::json!({
        "apiVersion": "postern.io/v1alpha1",
        "kind": "EsmtpListener",
        "metadata": { "name": name },
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply("postern-e2e").force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying EsmtpListener {name}"))
}

/// Waits until condition `type_` of `name` has `status` for generation `generation` or later.
pub async fn wait_condition(
    api: &Api<EsmtpListener>,
    name: &str,
    type_: &'static str,
    status: &'static str,
    generation: i64,
) -> Result<EsmtpListener> {
    let what = format!("{name} to be {type_}={status} at generation {generation}");
    let found = wait_for(
        api,
        name,
        &what,
        TIMEOUT,
        move |obj: Option<&EsmtpListener>| {
            obj.and_then(|l| {
                let s = l.status.as_ref()?;
                let c = status::condition(Some(s), type_)?;
                Some(c.status == status && s.observed_generation.unwrap_or(0) >= generation)
            })
            .unwrap_or(false)
        },
    )
    .await?;
    found.ok_or_else(|| anyhow!("{name} vanished while waiting"))
}

/// Waits for `Ready=True` at the object's current generation.
pub async fn wait_ready(api: &Api<EsmtpListener>, name: &str) -> Result<EsmtpListener> {
    let generation = api.get(name).await?.metadata.generation.unwrap_or(1);
    wait_condition(api, name, status::READY, "True", generation).await
}

/// The ConfigMap `name`'s pods run now: the one named by `status.configHash`.
pub async fn current_config(
    ns: &postern_e2e::TestNamespace,
    name: &str,
) -> Result<k8s_openapi::api::core::v1::ConfigMap> {
    let l = ns.api::<EsmtpListener>().get(name).await?;
    let hash = l
        .status
        .and_then(|s| s.config_hash)
        .ok_or_else(|| anyhow!("{name} has no status.configHash"))?;
    let cm_name = postern_operator::build::config_map_name(name, &hash);
    ns.api::<k8s_openapi::api::core::v1::ConfigMap>()
        .get(&cm_name)
        .await
        .with_context(|| format!("getting ConfigMap {cm_name}"))
}

/// The listener config the operator rendered for `name` (its current ConfigMap's file).
pub async fn rendered_config(ns: &postern_e2e::TestNamespace, name: &str) -> Result<String> {
    current_config(ns, name)
        .await?
        .data
        .and_then(|mut d| d.remove(postern_operator::build::configmap::CONFIG_KEY))
        .context("the ConfigMap has no config.yaml")
}

/// Sets `postern.io/force-scale-down: "true"` on `name`: its surplus replicas are
/// removed without draining (kwok's pods run no listener that could be asked).
pub async fn force_scale_down(api: &Api<EsmtpListener>, name: &str) -> Result<()> {
    let patch = serde_json::json!({"metadata": {"annotations": {
        postern_operator::scale_down::FORCE_ANNOTATION: "true"
    }}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating {name} to force scale-down"))?;
    Ok(())
}

/// Waits until the listener with admin endpoint `admin` has nothing queued.
pub async fn poll_queue_empty(admin: std::net::SocketAddr) -> Result<()> {
    postern_e2e::poll("the queue to empty", TIMEOUT, || async {
        Ok((listener::queue(admin)?.1 == 0).then_some(()))
    })
    .await
}

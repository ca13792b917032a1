//! The driver of scale-down ([`crate::scale_down`] decides): gathers the listener's pods
//! and surplus ordinals from the caches, asks each surplus pod that left the Service to
//! drain and reads its queue over its admin endpoint, then carries out the decision
//! (pod labels, pod restarts, Deployment and claim deletions) with an Event for each.

use std::{collections::BTreeMap, fmt, net::SocketAddr, sync::Arc, time::Duration};

use futures::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{PersistentVolumeClaim, Pod},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{EventType, Recorder},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    apply::{Problem, belongs, delete, publish},
    build::{LISTENER_LABEL, ordinal_of},
    controller::Stores,
    crd::EsmtpListener,
    scale_down::{
        self, ClaimView, DRAIN_STARTED_ANNOTATION, Decision, FORCE_ANNOTATION, PodView, Policy,
        Probe, SERVING_LABEL, Step, Surplus,
    },
    validate::ADMIN_PORT,
};

/// How long one request to a pod's admin endpoint may take, connecting included.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How the operator reaches a listener pod's admin endpoint.
pub trait AdminAddress: Send + Sync + 'static {
    /// The admin endpoint of `pod`, when it has an address.
    fn admin_address(&self, pod: &Pod) -> Option<SocketAddr>;
}

/// The pod's IP and [`ADMIN_PORT`]: how the operator reaches pods in a cluster.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodIp;

impl AdminAddress for PodIp {
    fn admin_address(&self, pod: &Pod) -> Option<SocketAddr> {
        let ip = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
        Some(SocketAddr::new(ip, ADMIN_PORT))
    }
}

/// The [`AdminAddress`] the controller uses ([`PodIp`] unless a test says otherwise).
#[derive(Clone)]
pub struct AdminReach(pub Arc<dyn AdminAddress>);

impl Default for AdminReach {
    fn default() -> Self {
        Self(Arc::new(PodIp))
    }
}

impl fmt::Debug for AdminReach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminReach")
    }
}

/// Sends `method path` with an empty body to the admin endpoint at `addr`; returns the
/// status code and body.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path} on {addr}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path} on {addr}: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {path} on {addr}: no answer in {ADMIN_TIMEOUT:?}"))?
}

/// The part of the listener's `GET /queue` and `POST /drain` answer scale-down reads.
#[derive(Debug, Deserialize)]
struct QueueAnswer {
    draining: bool,
    depth: u64,
}

async fn queue_call(addr: SocketAddr, method: &str, path: &str) -> Result<QueueAnswer, String> {
    let (status, body) = request(addr, method, path).await?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "{method} {path} on {addr}: {status} {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{method} {path} on {addr}: {e}"))
}

/// Asks the listener at `addr` for its queue, and to drain when it does not yet.
pub async fn probe(addr: SocketAddr) -> Probe {
    let answer = match queue_call(addr, "GET", "/queue").await {
        Ok(a) if !a.draining => queue_call(addr, "POST", "/drain").await,
        other => other,
    };
    match answer {
        Ok(a) => Probe::Queue {
            draining: a.draining,
            depth: a.depth,
        },
        Err(e) => Probe::Unreachable(e),
    }
}

/// What scale-down found and did in one reconcile.
#[derive(Debug)]
pub struct Outcome {
    /// The settings it followed.
    pub policy: Policy,
    /// What it decided.
    pub decision: Decision,
    /// The steps that failed.
    pub problems: Vec<Problem>,
}

/// The scale-down settings of `listener`.
pub fn policy(listener: &EsmtpListener) -> Policy {
    Policy {
        replicas: u32::try_from(listener.spec.replicas).unwrap_or(0),
        when_scaled: listener.spec.storage.when_scaled,
        drain_timeout: Duration::from_secs(
            u64::try_from(listener.spec.scale_down.drain_timeout_seconds).unwrap_or(0),
        ),
        force: forced(listener),
    }
}

/// Whether `listener` carries [`FORCE_ANNOTATION`]`: "true"`.
pub fn forced(listener: &EsmtpListener) -> bool {
    listener
        .annotations()
        .get(FORCE_ANNOTATION)
        .is_some_and(|v| v == "true")
}

fn view(pod: &Pod) -> Option<PodView> {
    let labels = pod.metadata.labels.as_ref();
    let serving = labels
        .and_then(|l| l.get(SERVING_LABEL))
        .map(|v| v == "true");
    let drain_started = pod
        .annotations()
        .get(DRAIN_STARTED_ANNOTATION)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let status = pod.status.as_ref();
    Some(PodView {
        name: pod.name_any(),
        ordinal: ordinal_of(pod)?,
        serving,
        drain_started,
        reachable: status.and_then(|s| s.phase.as_deref()) == Some("Running")
            && status.and_then(|s| s.pod_ip.as_ref()).is_some(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
    })
}

fn of_listener<K: kube::Resource>(obj: &K, listener: &EsmtpListener) -> bool {
    obj.meta().namespace == listener.metadata.namespace
        && obj
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(LISTENER_LABEL))
            == listener.metadata.name.as_ref()
}

/// The entry of `ordinal` in `map`, made empty when missing.
fn slot(map: &mut BTreeMap<u32, Surplus>, ordinal: u32) -> &mut Surplus {
    map.entry(ordinal).or_insert(Surplus {
        ordinal,
        deployment: None,
        claim: None,
    })
}

/// The surplus ordinals of `listener` that still have a Deployment or a claim it owns.
fn surplus(stores: &Stores, listener: &EsmtpListener, replicas: u32) -> Vec<Surplus> {
    let mut by_ordinal: BTreeMap<u32, Surplus> = BTreeMap::new();
    for d in stores.deployments.state() {
        if let Some(o) = ordinal_of(&*d).filter(|o| *o >= replicas)
            && of_listener(&*d, listener)
            && belongs(&*d, listener, false)
            && d.metadata.deletion_timestamp.is_none()
        {
            slot(&mut by_ordinal, o).deployment = Some(d.name_any());
        }
    }
    for c in stores.claims.state() {
        if let Some(o) = ordinal_of(&*c).filter(|o| *o >= replicas)
            && of_listener(&*c, listener)
            && belongs(&*c, listener, true)
            && c.metadata.deletion_timestamp.is_none()
        {
            let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                || c.spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_ref())
                    .is_some();
            slot(&mut by_ordinal, o).claim = Some(ClaimView {
                name: c.name_any(),
                bound,
            });
        }
    }
    by_ordinal.into_values().collect()
}

/// One scale-down pass for `listener`: observe, ask the surplus pods, decide, act.
pub async fn scale_down(
    client: &Client,
    stores: &Stores,
    recorder: &Recorder,
    reach: &AdminReach,
    listener: &EsmtpListener,
) -> Outcome {
    let policy = policy(listener);
    let ns = listener.namespace().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = stores
        .pods
        .state()
        .into_iter()
        .filter(|p| of_listener(&**p, listener))
        .collect();
    let views: Vec<PodView> = pods.iter().filter_map(|p| view(p)).collect();
    let surplus = surplus(stores, listener, policy.replicas);

    let asked = scale_down::to_probe(&policy, &views);
    let probes: BTreeMap<String, Probe> = join_all(asked.iter().map(|v| {
        let pod = pods.iter().find(|p| p.name_any() == v.name);
        let addr = pod.and_then(|p| reach.0.admin_address(p));
        let name = v.name.clone();
        async move {
            let probe = match addr {
                Some(addr) => probe(addr).await,
                None => Probe::Unreachable("the pod has no address".into()),
            };
            (name, probe)
        }
    }))
    .await
    .into_iter()
    .collect();

    let decision = scale_down::decide(&policy, &views, &surplus, &probes, Timestamp::now());
    let mut problems = Vec::new();
    for step in &decision.steps {
        if let Err(p) = act(client, recorder, listener, &ns, step).await {
            problems.push(p);
        }
    }
    Outcome {
        policy,
        decision,
        problems,
    }
}

async fn act(
    client: &Client,
    recorder: &Recorder,
    listener: &EsmtpListener,
    ns: &str,
    step: &Step,
) -> Result<(), Problem> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (reason, note) = match step {
        Step::LeaveService { pod } => {
            let patch = json!({"metadata": {
                "labels": {SERVING_LABEL: "false"},
                "annotations": {DRAIN_STARTED_ANNOTATION: Timestamp::now().to_string()},
            }});
            pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Problem::from_error("Pod", pod, e))?;
            (
                "Draining",
                format!("pod {pod} left the Service and is drained before scale-down"),
            )
        }
        Step::JoinService { pod } => {
            let patch = json!({"metadata": {"labels": {SERVING_LABEL: "true"}}});
            pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Problem::from_error("Pod", pod, e))?;
            return Ok(());
        }
        Step::Restart { pod } => {
            delete::<Pod>(client, ns, pod)
                .await
                .map_err(|e| Problem::from_error("Pod", pod, e))?;
            (
                "Restarted",
                format!("deleted the drained pod {pod}: its ordinal is wanted again"),
            )
        }
        Step::RemoveDeployment { name } => {
            if !delete::<Deployment>(client, ns, name)
                .await
                .map_err(|e| Problem::from_error("Deployment", name, e))?
            {
                return Ok(());
            }
            ("Deleted", format!("deleted Deployment {name}"))
        }
        Step::RemoveClaim { name } => {
            if !delete::<PersistentVolumeClaim>(client, ns, name)
                .await
                .map_err(|e| Problem::from_error("PersistentVolumeClaim", name, e))?
            {
                return Ok(());
            }
            ("Deleted", format!("deleted PersistentVolumeClaim {name}"))
        }
    };
    publish(recorder, listener, EventType::Normal, reason, note, None).await;
    Ok(())
}

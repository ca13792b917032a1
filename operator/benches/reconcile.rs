//! Time from apply to `Ready`, and API requests per reconcile, for 1 and for 200
//! `EsmtpListener`s, against the real control plane of `e2e/cluster up`.
//!
//! ```text
//! e2e/cluster up && eval "$(e2e/cluster env)"
//! cargo bench -p postern-operator --bench reconcile            # 1 and 200
//! cargo bench -p postern-operator --bench reconcile -- 50      # other sizes
//! ```
//!
//! The controller runs in-process for a fresh namespace, with a client that counts
//! every request it sends. Each listener has one replica and so one spool claim; the
//! bench makes a PersistentVolume per listener (storage class `postern-bench`) and
//! removes them at the end. Without a cluster it says so and exits 0.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{HostPathVolumeSource, PersistentVolume, PersistentVolumeSpec},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt,
        wait::{await_condition, conditions},
        watcher,
    },
};
use postern_e2e::Cluster;
use postern_operator::{
    controller::{self, Options},
    crd::{self, EsmtpListener},
    metrics::{Metrics, counting_client},
    status::{self, READY},
};
use serde_json::json;

const CLASS: &str = "postern-bench";
const PV_LABEL: &str = "postern-bench/pool";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 200]
    } else {
        sizes
    };
    let Some(cluster) = Cluster::from_env().await? else {
        eprintln!("SKIPPED the reconcile bench: no e2e cluster (start one with `e2e/cluster up`)");
        return Ok(());
    };
    install_crd(&cluster.client()).await?;
    println!(
        "{:>6} {:>12} {:>10} {:>10} {:>10} {:>11} {:>13} {:>14}",
        "count",
        "all ready s",
        "p50 s",
        "p95 s",
        "reconciles",
        "requests",
        "per reconcile",
        "writes/listener"
    );
    for n in sizes {
        let r = run(&cluster, n).await?;
        println!(
            "{:>6} {:>12.2} {:>10.2} {:>10.2} {:>10} {:>11} {:>13.2} {:>14.2}",
            n,
            r.all_ready.as_secs_f64(),
            r.p50.as_secs_f64(),
            r.p95.as_secs_f64(),
            r.reconciles,
            r.requests,
            r.requests as f64 / r.reconciles.max(1) as f64,
            r.writes as f64 / n as f64,
        );
        println!("       requests by verb: {:?}", r.by_verb);
    }
    Ok(())
}

struct Report {
    all_ready: Duration,
    p50: Duration,
    p95: Duration,
    reconciles: u64,
    /// Requests other than watches.
    requests: u64,
    writes: u64,
    by_verb: BTreeMap<String, u64>,
}

async fn install_crd(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crd::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply("postern-bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await??;
    Ok(())
}

async fn make_volumes(client: &Client, ns: &str, n: usize) -> Result<()> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for i in 0..n {
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(format!("{ns}-{i}")),
                labels: Some(BTreeMap::from([(PV_LABEL.into(), ns.into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some(CLASS.into()),
                persistent_volume_reclaim_policy: Some("Delete".into()),
                host_path: Some(HostPathVolumeSource {
                    path: format!("/tmp/postern-bench/{ns}/{i}"),
                    type_: None,
                }),
                ..PersistentVolumeSpec::default()
            }),
            status: None,
        };
        pvs.create(&PostParams::default(), &pv).await?;
    }
    Ok(())
}

async fn run(cluster: &Cluster, n: usize) -> Result<Report> {
    let ns = cluster.namespace(&format!("bench-{n}")).await?;
    let ns_name = ns.name().to_string();
    make_volumes(&cluster.client(), ns.name(), n).await?;
    let metrics = Metrics::new();
    let client = counting_client(cluster.config().clone(), &metrics)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(controller::run(
        client,
        metrics.clone(),
        Options {
            namespace: Some(ns.name().into()),
            concurrency: 8,
            instance: Some("bench".into()),
            ..Options::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    // Let the controller list and watch before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_requests = non_watch(&metrics);
    let before_writes = writes(&metrics);
    let before_reconciles = metrics.total_reconciles();

    let api: Api<EsmtpListener> = ns.api();
    // Watch for Ready while applying, so each listener's latency is its own.
    let ready_watch = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut ready_at = BTreeMap::new();
            let mut stream =
                std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
            while let Some(Ok(l)) = stream.next().await {
                let ready =
                    status::condition(l.status.as_ref(), READY).is_some_and(|c| c.status == "True");
                if ready {
                    ready_at.entry(l.name_any()).or_insert_with(Instant::now);
                    if ready_at.len() == n {
                        break;
                    }
                }
            }
            ready_at
        })
    };
    let started = Instant::now();
    let mut applied_at = BTreeMap::new();
    for i in 0..n {
        let name = format!("mx{i}");
        let obj = json!({
            "apiVersion": "postern.io/v1alpha1",
            "kind": "EsmtpListener",
            "metadata": { "name": name },
            "spec": {
                "listeners": [{ "listen": "0.0.0.0:25", "relayHosts": ["10.0.0.0/8"] }],
                "storage": { "storageClassName": CLASS, "whenDeleted": "Delete" },
            },
        });
        applied_at.insert(name.clone(), Instant::now());
        api.patch(
            &name,
            &PatchParams::apply("postern-bench").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
    }
    let ready_at =
        match tokio::time::timeout(Duration::from_secs(60 + 3 * n as u64), ready_watch).await {
            Ok(r) => r?,
            Err(_) => bail!("not all {n} listeners became Ready in time"),
        };
    let all_ready = started.elapsed();
    // Let the last status writes and watch events settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies: Vec<Duration> = ready_at
        .iter()
        .map(|(name, at)| at.duration_since(applied_at[name]))
        .collect();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let report = Report {
        all_ready,
        p50: pick(0.5),
        p95: pick(0.95),
        reconciles: metrics.total_reconciles() - before_reconciles,
        requests: non_watch(&metrics) - before_requests,
        writes: writes(&metrics) - before_writes,
        by_verb: by_verb(&metrics),
    };

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    ns.cleanup_and_wait(Duration::from_secs(120)).await?;
    let pvs: Api<PersistentVolume> = Api::all(cluster.client());
    pvs.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&format!("{PV_LABEL}={ns_name}")),
    )
    .await
    .ok();
    Ok(report)
}

fn verb_count(m: &Metrics, verb: &str) -> u64 {
    m.requests_of(verb)
}

fn by_verb(m: &Metrics) -> BTreeMap<String, u64> {
    ["get", "watch", "create", "update", "patch", "delete"]
        .iter()
        .map(|v| ((*v).to_string(), verb_count(m, v)))
        .filter(|(_, c)| *c > 0)
        .collect()
}

fn non_watch(m: &Metrics) -> u64 {
    m.total_requests() - verb_count(m, "watch")
}

fn writes(m: &Metrics) -> u64 {
    ["create", "update", "patch", "delete"]
        .iter()
        .map(|v| verb_count(m, v))
        .sum()
}

//! Day-2 behaviour on the real control plane of `e2e/cluster up`: objects the operator
//! cannot parse, operator restarts and SIGTERM, ordered rollouts, progress deadlines,
//! crash loops, objects it does not own, deletion, the scale subresource and pod
//! settings. Without a cluster the tests skip loudly; under `CI=1` they fail.
//!
//! What kwok cannot do is simulated and said so where it happens: kwok never crashes a
//! container, so a crash loop is written into a pod's status by the test, as the
//! kubelet would write it.

mod support;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Event, Pod, Service, ServicePort, ServiceSpec},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use postern_e2e::{POD_SECURITY_RESTRICTED, TestNamespace, poll, require_cluster};
use postern_operator::{
    build::{LISTENER_LABEL, deployment::recorded_hash},
    crd::{self, EsmtpListener},
    status::{READY, RECONCILING, STALLED},
    tolerant::Guarded,
};
use serde_json::{Value, json};
use support::{
    Operator, TIMEOUT, apply_listener, install_crd, install_crd_unlocked, wait_condition,
    wait_ready,
};

fn condition(l: &EsmtpListener, type_: &str) -> Option<(String, String, String)> {
    let c = l
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Drops every rule, pattern and bound under `spec.listeners` from a CRD schema: what
/// an older, laxer CRD admitted.
fn relax(schema: &mut Value) {
    if let Some(map) = schema.as_object_mut() {
        for key in [
            "x-kubernetes-validations",
            "pattern",
            "maximum",
            "minimum",
            "maxLength",
        ] {
            map.remove(key);
        }
        map.values_mut().for_each(relax);
    } else if let Some(items) = schema.as_array_mut() {
        items.iter_mut().for_each(relax);
    }
}

async fn install_crd_json(client: &kube::Client, crd: &Value) -> Result<()> {
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    api.patch(
        "esmtplisteners.postern.io",
        &PatchParams::apply("postern-e2e").force(),
        &Patch::Apply(crd),
    )
    .await
    .context("applying the relaxed CRD")?;
    Ok(())
}

/// Applies the three specs the issue found admitted under the old CRD, with a laxer CRD
/// installed for as long as that takes (the real CRD is put back before returning).
async fn apply_skewed(cluster: &postern_e2e::Cluster, ns: &TestNamespace) -> Result<()> {
    // No other test may see the laxer CRD.
    let _held = support::CRD_LOCK.lock().await;
    let mut relaxed = serde_json::to_value(crd::crd())?;
    let listeners = &mut relaxed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["listeners"];
    relax(listeners);
    install_crd_json(&cluster.client(), &relaxed).await?;
    // Read back tolerantly: the test's own client cannot parse these either.
    let api = ns.api::<Guarded>();
    let skewed = [
        (
            "host-bits",
            "listeners: [{listen: '0:25', relayHosts: [10.0.0.1/24]}]",
        ),
        (
            "bare-number",
            "listeners: [{listen: '0:25', clientTimeout: '60'}]",
        ),
        ("bad-address", "listeners: [{listen: '300.1.1.1:25'}]"),
    ];
    let mut result = Ok(());
    for (name, spec) in skewed {
        // The API server may take a moment to serve the relaxed schema.
        let applied = poll(
            &format!("the relaxed CRD to admit {name}"),
            TIMEOUT,
            || async {
                let obj = json!({
                    "apiVersion": "postern.io/v1alpha1",
                    "kind": "EsmtpListener",
                    "metadata": { "name": name },
                    "spec": serde_yaml::from_str::<Value>(spec)?,
                });
                let applied = api
                    .patch(
                        name,
                        &PatchParams::apply("postern-e2e").force(),
                        &Patch::Apply(&obj),
                    )
                    .await;
                match applied {
                    Ok(l) => Ok(Some(l)),
                    Err(e) => {
                        eprintln!("not admitted yet: {e:#}");
                        Ok(None)
                    }
                }
            },
        )
        .await;
        if let Err(e) = applied {
            result = Err(e);
            break;
        }
    }
    install_crd_unlocked(&cluster.client()).await?;
    wait_strict_schema_served(ns).await?;
    result
}

/// Waits until the API server validates with the real CRD again: until then it may still
/// serve the laxer one, and its swap of the CRD's storage ends the watches of whatever
/// started meanwhile (which would count as watch errors of the operator under test).
async fn wait_strict_schema_served(ns: &TestNamespace) -> Result<()> {
    let resource = kube::api::ApiResource::erase::<EsmtpListener>(&());
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(ns.client(), ns.name(), &resource);
    let probe: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postern.io/v1alpha1",
        "kind": "EsmtpListener",
        "metadata": { "name": "schema-probe" },
        "spec": { "listeners": [{ "listen": "0:25", "relayHosts": ["10.0.0.1/24"] }] },
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    poll(
        "the API server to serve the real CRD again",
        TIMEOUT,
        || async {
            let refused = api.create(&dry_run, &probe).await;
            Ok(matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 422).then_some(()))
        },
    )
    .await
}

/// Waits until `name` is `Stalled=True` with reason `InvalidSpec` and a message naming `field`.
async fn wait_invalid(ns: &TestNamespace, name: &str, field: &str) -> Result<()> {
    let api = ns.api::<Guarded>();
    let what = format!("{name} to be Stalled with InvalidSpec");
    let found = postern_e2e::wait_for(&api, name, &what, TIMEOUT, |g: Option<&Guarded>| {
        g.and_then(|g| postern_operator::status::condition(g.status(), STALLED))
            .is_some_and(|c| c.status == "True")
    })
    .await?
    .context("vanished")?;
    ensure!(found.listener().is_none(), "{name} parses");
    let stalled =
        postern_operator::status::condition(found.status(), STALLED).context("Stalled")?;
    ensure!(stalled.reason == "InvalidSpec", "{name}: {stalled:?}");
    ensure!(
        stalled.message.starts_with(field),
        "{name}: {}",
        stalled.message
    );
    let ready = postern_operator::status::condition(found.status(), READY).context("Ready")?;
    ensure!(ready.status == "False", "{name}: {ready:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_unreadable_objects_stall_alone_across_restarts() -> Result<()> {
    let cluster = require_cluster!("e2e_unreadable_objects_stall_alone_across_restarts", Ok(()));
    install_crd(&cluster.client()).await?;
    cluster.recycle_volumes().await?;
    let ns = cluster.namespace("op-skew").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "good", "listeners: [{listen: '0:25'}]").await?;
    apply_skewed(&cluster, &ns).await?;

    let operator = Operator::start(&cluster, ns.name()).await?;
    wait_ready(&api, "good").await?;
    wait_invalid(&ns, "host-bits", "spec.listeners[0].relayHosts[0]: ").await?;
    wait_invalid(&ns, "bare-number", "spec.listeners[0].clientTimeout: ").await?;
    wait_invalid(&ns, "bad-address", "spec.listeners[0].listen: ").await?;
    poll("an InvalidSpec Warning Event", TIMEOUT, || async {
        let events = ns.api::<Event>().list(&ListParams::default()).await?.items;
        Ok(events
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning")
            })
            .then_some(()))
    })
    .await?;
    ensure!(operator.metrics.watch_errors_of("EsmtpListener") == 0);

    // A restart: the new operator's list holds the unreadable objects too, and the good
    // listener still follows its changes.
    operator.stop().await;
    let operator = Operator::start(&cluster, ns.name()).await?;
    apply_listener(
        &api,
        "good",
        "listeners: [{listen: '0:25', hostname: after-restart.example.com}]",
    )
    .await?;
    wait_condition(&api, "good", READY, "True", 2).await?;
    let cm = support::current_config(&ns, "good").await?;
    ensure!(cm.data.unwrap_or_default()["config.yaml"].contains("after-restart.example.com"));
    wait_invalid(&ns, "host-bits", "spec.listeners[0].relayHosts[0]: ").await?;
    operator.stop().await;

    // Fixing the object heals it.
    apply_listener(
        &api,
        "host-bits",
        "listeners: [{listen: '0:25', relayHosts: [10.0.0.0/24]}]",
    )
    .await?;
    let operator = Operator::start(&cluster, ns.name()).await?;
    wait_ready(&api, "host-bits").await?;
    operator.stop().await;
    ns.cleanup().await
}

/// The `postern-operator` binary, built by cargo for this test run.
fn operator_binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_postern-operator"))
}

/// Runs the real binary with `kubeconfig`, sends SIGTERM once `ready` says so, and
/// returns how long it took to exit.
async fn sigterm_after(
    kubeconfig: &std::path::Path,
    namespace: &str,
    ready: impl AsyncFn(u16) -> bool,
) -> Result<Duration> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(operator_binary())
        .args([
            "run",
            "--no-leader-election",
            "--namespace",
            namespace,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting postern-operator")?;
    let child = std::cell::RefCell::new(child);
    let waited = poll(
        "the operator to reach the state under test",
        TIMEOUT,
        || {
            let (child, ready) = (&child, &ready);
            async move {
                if let Some(status) = child.borrow_mut().try_wait()? {
                    bail!("postern-operator exited early: {status}");
                }
                Ok(ready(port).await.then_some(()))
            }
        },
    )
    .await;
    if let Err(e) = waited {
        let _ = child.borrow_mut().kill();
        return Err(e);
    }
    let pid = child.borrow().id().to_string();
    let sent = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status()?;
    ensure!(status.success(), "kill -TERM {pid}");
    let exited = poll("postern-operator to exit after SIGTERM", TIMEOUT, || {
        let child = &child;
        async move { Ok(child.borrow_mut().try_wait()?) }
    })
    .await?;
    ensure!(exited.success(), "postern-operator exited with {exited}");
    Ok(sent.elapsed())
}

/// `GET /readyz` of the operator on `port`: its status code, if it answers.
async fn readyz(port: u16) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.get(9..12)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sigterm_stops_the_operator_in_every_state() -> Result<()> {
    let cluster = require_cluster!("e2e_sigterm_stops_the_operator_in_every_state", Ok(()));
    install_crd(&cluster.client()).await?;
    let ns = cluster.namespace("op-sigterm").await?;
    apply_skewed(&cluster, &ns).await?;

    // Running, caches filled (with unreadable objects in them): /readyz is 200 only then.
    let took = sigterm_after(cluster.kubeconfig_path(), ns.name(), async |port| {
        readyz(port).await == Some(200)
    })
    .await?;
    eprintln!("SIGTERM with filled caches: exited after {took:?}");

    // The API server unreachable: the caches never fill, /readyz stays 503.
    let dir = tempfile::tempdir()?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let text = std::fs::read_to_string(cluster.kubeconfig_path())?;
    let server = format!("https://127.0.0.1:{closed}");
    let mut kubeconfig: Value = serde_yaml::from_str(&text)?;
    for c in kubeconfig["clusters"].as_array_mut().into_iter().flatten() {
        c["cluster"]["server"] = json!(server);
    }
    let unreachable = dir.path().join("kubeconfig");
    std::fs::write(&unreachable, serde_yaml::to_string(&kubeconfig)?)?;
    let took = sigterm_after(&unreachable, ns.name(), async |port| {
        readyz(port).await == Some(503)
    })
    .await?;
    eprintln!("SIGTERM with the API server unreachable: exited after {took:?}");
    ns.cleanup().await
}

/// The replica Deployments of `name` by ordinal, with their recorded hash and whether
/// they are rolled out and ready.
async fn ordinals(ns: &TestNamespace, name: &str) -> Result<Vec<(String, bool)>> {
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}={name}"));
    let mut list = ns.api::<Deployment>().list(&lp).await?.items;
    list.sort_by_key(|d| d.name_any());
    Ok(list
        .iter()
        .map(|d| {
            (
                recorded_hash(d).unwrap_or_default().to_string(),
                postern_operator::status::deployment_current(d),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_change_rolls_ordinals_strictly_in_order() -> Result<()> {
    let cluster = require_cluster!("e2e_a_change_rolls_ordinals_strictly_in_order", Ok(()));
    let (ns, operator) = support::setup(&cluster, "op-order").await?;
    let api = ns.api::<EsmtpListener>();
    let spec =
        |host: &str| format!("listeners: [{{listen: '0:25', hostname: {host}}}]\nreplicas: 3\n");
    apply_listener(&api, "mx", &spec("one.example.com")).await?;
    wait_ready(&api, "mx").await?;
    let old_hashes: Vec<String> = ordinals(&ns, "mx")
        .await?
        .into_iter()
        .map(|o| o.0)
        .collect();
    let old_config = support::current_config(&ns, "mx").await?.name_any();

    apply_listener(&api, "mx", &spec("two.example.com")).await?;
    // Sample the Deployments until all three run the new template; in every sample an
    // ordinal has the new template only if every ordinal before it has it and is ready.
    let mut first_seen = [None::<usize>; 3];
    let mut samples = 0usize;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = ordinals(&ns, "mx").await?;
        ensure!(now.len() == 3, "{now:?}");
        samples += 1;
        for i in 0..3 {
            let updated = now[i].0 != old_hashes[i];
            if updated && first_seen[i].is_none() {
                first_seen[i] = Some(samples);
            }
            if updated && i > 0 {
                ensure!(
                    now[i - 1].0 != old_hashes[i - 1] && now[i - 1].1,
                    "ordinal {i} was updated before ordinal {} was updated and ready: {now:?}",
                    i - 1
                );
            }
        }
        if now
            .iter()
            .zip(&old_hashes)
            .all(|((h, ready), old)| h != old && *ready)
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the rollout did not finish: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("first sample with the new template, by ordinal: {first_seen:?} of {samples}");
    ensure!(
        first_seen[0] < first_seen[1] && first_seen[1] < first_seen[2],
        "not in order: {first_seen:?}"
    );
    wait_condition(&api, "mx", READY, "True", 2).await?;

    // The new config is a new immutable ConfigMap; the old one is collected.
    let cm = support::current_config(&ns, "mx").await?;
    ensure!(cm.immutable == Some(true));
    ensure!(cm.name_any() != old_config);
    poll("the old ConfigMap to be collected", TIMEOUT, || async {
        Ok(ns
            .api::<ConfigMap>()
            .get_opt(&old_config)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_progress_deadline_stalls_and_holds_the_later_ordinals() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_a_progress_deadline_stalls_and_holds_the_later_ordinals",
        Ok(())
    );
    let (ns, operator) = support::setup(&cluster, "op-deadline").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(
        &api,
        "mx",
        "listeners: [{listen: '0:25'}]\nreplicas: 2\nrollout: {progressDeadlineSeconds: 5}",
    )
    .await?;
    wait_ready(&api, "mx").await?;
    let before = ordinals(&ns, "mx").await?;
    // No node has this label: the new pod of ordinal 0 stays Pending.
    apply_listener(
        &api,
        "mx",
        "listeners: [{listen: '0:25'}]\nreplicas: 2\nrollout: {progressDeadlineSeconds: 5}\nnodeSelector: {postern.io/no-such-node: 'true'}",
    )
    .await?;
    let l = wait_condition(&api, "mx", STALLED, "True", 2).await?;
    let (_, reason, message) = condition(&l, STALLED).context("Stalled")?;
    ensure!(reason == "ProgressDeadlineExceeded", "{reason}: {message}");
    ensure!(message.starts_with("Deployment mx-0: "), "{message}");
    let after = ordinals(&ns, "mx").await?;
    ensure!(after[0].0 != before[0].0, "ordinal 0 was not updated");
    ensure!(
        after[1].0 == before[1].0,
        "ordinal 1 was updated past a stuck ordinal 0"
    );
    ensure!(
        l.status.as_ref().and_then(|s| s.ready.clone()).as_deref() == Some("0/2"),
        "{:?}",
        l.status
    );

    // Putting it back heals it.
    apply_listener(
        &api,
        "mx",
        "listeners: [{listen: '0:25'}]\nreplicas: 2\nrollout: {progressDeadlineSeconds: 5}",
    )
    .await?;
    wait_condition(&api, "mx", READY, "True", 3).await?;
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_crash_looping_pod_stalls_with_its_reason() -> Result<()> {
    let cluster = require_cluster!("e2e_a_crash_looping_pod_stalls_with_its_reason", Ok(()));
    let (ns, operator) = support::setup(&cluster, "op-crash").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "mx", "listeners: [{listen: '0:25'}]").await?;
    wait_ready(&api, "mx").await?;
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}=mx"));
    let pod = ns
        .api::<Pod>()
        .list(&lp)
        .await?
        .items
        .into_iter()
        .next()
        .context("the listener pod")?;
    // Simulated: kwok never runs a container, so the test writes what the kubelet
    // writes for a container that keeps exiting.
    let crash = json!({"status": {"containerStatuses": [{
        "name": "listener",
        "image": "ghcr.io/postern/postern:test",
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 78, "reason": "Error"}},
    }]}});
    ns.api::<Pod>()
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&crash),
        )
        .await?;
    let l = wait_condition(&api, "mx", STALLED, "True", 1).await?;
    let (_, reason, message) = condition(&l, STALLED).context("Stalled")?;
    ensure!(reason == "CrashLoopBackOff", "{reason}: {message}");
    ensure!(
        message.contains(&pod.name_any()) && message.contains("last exit code 78"),
        "{message}"
    );
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_an_unowned_service_is_not_adopted() -> Result<()> {
    let cluster = require_cluster!("e2e_an_unowned_service_is_not_adopted", Ok(()));
    let (ns, operator) = support::setup(&cluster, "op-adopt").await?;
    let api = ns.api::<EsmtpListener>();
    let theirs = Service {
        metadata: ObjectMeta {
            name: Some("mx".into()),
            labels: Some(BTreeMap::from([("team".into(), "web".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    ns.api::<Service>()
        .create(&PostParams::default(), &theirs)
        .await?;
    apply_listener(&api, "mx", "listeners: [{listen: '0:25'}]").await?;
    let l = wait_condition(&api, "mx", STALLED, "True", 1).await?;
    let (_, reason, message) = condition(&l, STALLED).context("Stalled")?;
    ensure!(reason == "NotOwned", "{reason}: {message}");
    ensure!(
        message.starts_with("Service 'mx' already exists and is not owned"),
        "{message}"
    );
    let svc = ns.api::<Service>().get("mx").await?;
    ensure!(svc.owner_references().is_empty(), "adopted: {svc:?}");
    let ports: Vec<_> = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    ensure!(
        ports.len() == 1 && ports[0].port == 80,
        "changed: {ports:?}"
    );
    // The Deployment (which does not clash) was still made.
    ensure!(ns.api::<Deployment>().get_opt("mx-0").await?.is_some());

    // Once the other Service is gone, the listener's own is made (retried with backoff).
    ns.api::<Service>()
        .delete("mx", &DeleteParams::default())
        .await?;
    wait_ready(&api, "mx").await?;
    let svc = ns.api::<Service>().get("mx").await?;
    ensure!(svc.owner_references().len() == 1);
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_nothing_is_reapplied_while_deleting() -> Result<()> {
    let cluster = require_cluster!("e2e_nothing_is_reapplied_while_deleting", Ok(()));
    let (ns, operator) = support::setup(&cluster, "op-deleting").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "mx", "listeners: [{listen: '0:25'}]").await?;
    wait_ready(&api, "mx").await?;
    // A finalizer of the test's keeps the listener in deletion while the test looks.
    api.patch(
        "mx",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["postern.io/e2e-hold"]}})),
    )
    .await?;
    let deleting_before = operator.metrics.reconciles_of("deleting");
    api.delete("mx", &DeleteParams::background()).await?;
    ns.api::<Service>()
        .delete("mx", &DeleteParams::default())
        .await?;
    poll("a reconcile of the deleted listener", TIMEOUT, || async {
        Ok((operator.metrics.reconciles_of("deleting") > deleting_before).then_some(()))
    })
    .await?;
    // The deletion reconcile ran after the Service delete was issued, and did not
    // re-create it.
    postern_e2e::wait_for(
        &ns.api::<Service>(),
        "mx",
        "the Service to be gone",
        TIMEOUT,
        |s: Option<&Service>| s.is_none(),
    )
    .await?;
    ensure!(
        ns.api::<Service>().get_opt("mx").await?.is_none(),
        "the Service was re-applied during deletion"
    );
    api.patch(
        "mx",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_kubectl_scale_and_the_ready_columns() -> Result<()> {
    let cluster = require_cluster!("e2e_kubectl_scale_and_the_ready_columns", Ok(()));
    let (ns, operator) = support::setup(&cluster, "op-scale-sub").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "mx", "listeners: [{listen: '0:25'}]").await?;
    wait_ready(&api, "mx").await?;
    let kubectl = |args: &[&str]| -> Result<String> {
        let out = Command::new(cluster.tool("kubectl"))
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig_path())
            .args(["-n", ns.name()])
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    kubectl(&["scale", "esmtplistener/mx", "--replicas=2"])?;
    wait_condition(&api, "mx", READY, "True", 2).await?;
    let table = kubectl(&["get", "esmtp", "mx"])?;
    let row: Vec<_> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        row.get(..4) == Some(&["mx", "2/2", "Available", "25"][..]),
        "{table}"
    );
    let scale = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/apis/postern.io/v1alpha1/namespaces/{}/esmtplisteners/mx/scale",
            ns.name()
        ),
    ])?;
    let scale: Value = serde_json::from_str(&scale)?;
    ensure!(scale["status"]["replicas"] == 2, "{scale}");
    ensure!(
        scale["status"]["selector"] == "postern.io/listener=mx",
        "{scale}"
    );
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_pod_settings_reach_the_pods_in_a_restricted_namespace() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_pod_settings_reach_the_pods_in_a_restricted_namespace",
        Ok(())
    );
    install_crd(&cluster.client()).await?;
    cluster.recycle_volumes().await?;
    let ns = cluster
        .namespace_with_labels("op-pods", POD_SECURITY_RESTRICTED)
        .await?;
    // As on OpenShift: no fsGroup of the operator's; the platform would assign one.
    let operator = Operator::start_with_defaults(
        cluster.config().clone(),
        ns.name(),
        postern_operator::build::Defaults {
            image: "registry.example/mirror/postern:1.2.3".into(),
            fs_group: None,
        },
    )
    .await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(
        &api,
        "mx",
        "
listeners: [{listen: '0:25'}]
replicas: 2
imagePullSecrets: [{name: registry}]
podLabels: {team: mail}
env: [{name: VAULT_CACERT, value: /etc/vault-ca/ca.crt}]
volumes: [{name: vault-ca, configMap: {name: vault-ca}}]
volumeMounts: [{name: vault-ca, mountPath: /etc/vault-ca, readOnly: true}]
",
    )
    .await?;
    // Ready means the restricted Pod Security admission let both pods in.
    let l = wait_ready(&api, "mx").await?;
    ensure!(
        l.status.as_ref().and_then(|s| s.image.as_deref())
            == Some("registry.example/mirror/postern:1.2.3")
    );
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}=mx"));
    let pods = ns.api::<Pod>().list(&lp).await?.items;
    ensure!(pods.len() == 2, "{} pods", pods.len());
    for pod in &pods {
        ensure!(pod.labels().get("team").map(String::as_str) == Some("mail"));
        let spec = pod.spec.as_ref().context("pod spec")?;
        let c = &spec.containers[0];
        ensure!(c.image.as_deref() == Some("registry.example/mirror/postern:1.2.3"));
        ensure!(c.env.iter().flatten().any(|e| e.name == "VAULT_CACERT"));
        ensure!(
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some()
        );
        ensure!(
            spec.image_pull_secrets
                .iter()
                .flatten()
                .any(|s| s.name == "registry")
        );
        ensure!(spec.volumes.iter().flatten().any(|v| v.name == "vault-ca"));
        let sc = spec.security_context.as_ref().context("security context")?;
        ensure!(sc.run_as_user.is_none() && sc.fs_group.is_none(), "{sc:?}");
        let spread = spec
            .topology_spread_constraints
            .as_ref()
            .context("the default spread")?;
        ensure!(
            spread[0].topology_key == "kubernetes.io/hostname",
            "{spread:?}"
        );
    }
    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_refused_config_stalls_naming_it_and_heals() -> Result<()> {
    let cluster = require_cluster!("e2e_a_refused_config_stalls_naming_it_and_heals", Ok(()));
    let (ns, operator) = support::setup(&cluster, "op-transient").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "mx", "listeners: [{listen: '0:25'}]").await?;
    wait_ready(&api, "mx").await?;
    // A quota of zero ConfigMaps: the API server forbids the new config (403 is a
    // refusal, so this is a stall naming the object, retried with backoff).
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "no-more-configmaps"},
        "spec": {"hard": {"count/configmaps": "0"}},
    });
    postern_e2e::apply(
        &ns.api::<k8s_openapi::api::core::v1::ResourceQuota>(),
        "no-more-configmaps",
        &quota,
    )
    .await?;
    apply_listener(
        &api,
        "mx",
        "listeners: [{listen: '0:25', hostname: q.example.com}]",
    )
    .await?;
    let l = wait_condition(&api, "mx", STALLED, "True", 2).await?;
    let (_, reason, message) = condition(&l, STALLED).context("Stalled")?;
    ensure!(reason == "Rejected", "{reason}: {message}");
    ensure!(message.contains("ConfigMap 'mx-config-"), "{message}");
    ensure!(message.contains("exceeded quota"), "{message}");
    let (reconciling, _, _) = condition(&l, RECONCILING).context("Reconciling")?;
    ensure!(reconciling == "False");
    // The pods keep running the old config, and nothing after the config was touched.
    ensure!(ns.api::<Deployment>().get_opt("mx-0").await?.is_some());
    ns.api::<k8s_openapi::api::core::v1::ResourceQuota>()
        .delete("no-more-configmaps", &DeleteParams::default())
        .await?;
    wait_condition(&api, "mx", READY, "True", 2).await?;
    operator.stop().await;
    ns.cleanup().await
}

//! Scale-down drains before it removes, on the real control plane, with real listeners.
//!
//! **What is simulated, exactly.** kwok runs no containers: the pods of the surplus
//! ordinals are kwok pods (Running and Ready, with fake IPs). Standing in for each, the
//! test runs the real `postern-listener` binary on loopback, on the config the operator
//! rendered into the cluster's ConfigMap (only the spool directory, which stands in for
//! the ordinal's claim, and the listen and admin addresses are rewritten, as in
//! `e2e_listener_binary.rs`). The operator reaches "the pod's admin endpoint" through an
//! [`AdminAddress`] that maps the pod's ordinal to that process's loopback admin address
//! instead of the pod IP and port 8025. Everything else is real: the API server,
//! kube-controller-manager (EndpointSlices, garbage collection, claim binding), the
//! operator, the listener's drain and delivery, and Postfix's `smtp-sink` as the next hop.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolumeClaim, Pod},
    discovery::v1::EndpointSlice,
};
use kube::{ResourceExt, api::ListParams};
use postern_e2e::{TestNamespace, poll, require_cluster};
use postern_operator::{
    build::{LISTENER_LABEL, ordinal_of},
    crd::EsmtpListener,
    drain::{AdminAddress, AdminReach},
    scale_down::{DRAIN_TIMEOUT, SERVING_LABEL},
    status::{self, READY, RECONCILING, STALLED},
};
use support::{
    Operator, TIMEOUT, apply_listener, force_scale_down, install_crd,
    listener::{RunningListener, Sink, connect, free_port, queue, run_rendered, send},
    rendered_config, wait_condition, wait_ready,
};

/// The test's stand-in for "pod IP : admin port": the loopback admin address of the
/// listener process that plays the pod's ordinal.
struct Loopback(BTreeMap<u32, SocketAddr>);

impl AdminAddress for Loopback {
    fn admin_address(&self, pod: &Pod) -> Option<SocketAddr> {
        self.0.get(&ordinal_of(pod)?).copied()
    }
}

fn spec(replicas: u32, sink: u16, extra: &str) -> String {
    format!(
        "
listeners:
  - listen: 0.0.0.0:25
    hostname: mx.example.com
    relayHosts: [127.0.0.0/8]
    delivery: {{smarthost: {{host: 127.0.0.1, port: {sink}, tls: none}}, retryInterval: 1s, maxRetryInterval: 1s}}
replicas: {replicas}
{extra}"
    )
}

async fn deployments(ns: &TestNamespace, name: &str) -> Result<BTreeSet<String>> {
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}={name}"));
    Ok(ns
        .api::<Deployment>()
        .list(&lp)
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect())
}

async fn claims(ns: &TestNamespace, name: &str) -> Result<BTreeSet<String>> {
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}={name}"));
    Ok(ns
        .api::<PersistentVolumeClaim>()
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect())
}

/// The listener's pods by ordinal: (name, pod IP, serving label).
async fn pods(ns: &TestNamespace, name: &str) -> Result<BTreeMap<u32, (String, String, String)>> {
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}={name}"));
    let mut out = BTreeMap::new();
    for p in ns.api::<Pod>().list(&lp).await?.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(o) = ordinal_of(&p) else { continue };
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let serving = p.labels().get(SERVING_LABEL).cloned().unwrap_or_default();
        out.insert(o, (p.name_any(), ip, serving));
    }
    Ok(out)
}

/// The addresses of the Service `name`'s endpoints.
async fn endpoint_ips(ns: &TestNamespace, name: &str) -> Result<BTreeSet<String>> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    Ok(ns
        .api::<EndpointSlice>()
        .list(&lp)
        .await?
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .flat_map(|e| e.addresses.iter().cloned())
        .collect())
}

/// Queues `count` messages in `listener` (its next hop is down) and waits until its
/// queue holds them all.
async fn queue_mail(listener: &RunningListener, tag: &str, count: usize) -> Result<()> {
    for i in 0..count {
        send(listener.smtp, "user@example.net", &format!("{tag}-{i}"))?;
    }
    poll("the messages to queue", TIMEOUT, || async {
        Ok((queue(listener.admin)?.1 == count as u64).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_scale_down_drains_each_surplus_replica_before_it_goes() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_scale_down_drains_each_surplus_replica_before_it_goes",
        Ok(())
    );
    install_crd(&cluster.client()).await?;
    cluster.recycle_volumes().await?;
    let ns = cluster.namespace("op-drain").await?;
    let admins: BTreeMap<u32, SocketAddr> = [1, 2]
        .into_iter()
        .map(|o| Ok((o, format!("127.0.0.1:{}", free_port()?).parse()?)))
        .collect::<Result<_>>()?;
    let operator = Operator::start_reaching(
        &cluster,
        ns.name(),
        AdminReach(Arc::new(Loopback(admins.clone()))),
    )
    .await?;
    let api = ns.api::<EsmtpListener>();
    let sink_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let extra = "storage: {whenScaled: Delete}\n";

    apply_listener(&api, "mx", &spec(3, sink_addr.port(), extra)).await?;
    wait_ready(&api, "mx").await?;
    let config = rendered_config(&ns, "mx").await?;
    // Ordinals 1 and 2, each with 4 messages queued toward a next hop that is down.
    let mut listeners = BTreeMap::new();
    for (ordinal, admin) in &admins {
        let l = run_rendered(&config, *admin, &BTreeMap::new()).await?;
        queue_mail(&l, &format!("ordinal-{ordinal}"), 4).await?;
        listeners.insert(*ordinal, l);
    }
    let before = pods(&ns, "mx").await?;
    ensure!(before.len() == 3, "{before:?}");
    ensure!(
        before.values().all(|(_, _, serving)| serving == "true"),
        "{before:?}"
    );
    let serving_ips: BTreeSet<String> = before.values().map(|(_, ip, _)| ip.clone()).collect();
    poll("the Service to list all three pods", TIMEOUT, || async {
        Ok((endpoint_ips(&ns, "mx").await? == serving_ips).then_some(()))
    })
    .await?;

    apply_listener(&api, "mx", &spec(1, sink_addr.port(), extra)).await?;

    // Each surplus listener drains only after its pod left the Service: its queue is
    // read before its pod, so a drain seen before the label flipped would show here.
    let mut seen_draining = BTreeSet::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while seen_draining.len() < 2 {
        for (ordinal, l) in &listeners {
            let (draining, depth) = queue(l.admin)?;
            let now = pods(&ns, "mx").await?;
            if draining {
                let serving = now.get(ordinal).map(|p| p.2.as_str());
                ensure!(
                    serving == Some("false"),
                    "ordinal {ordinal} drains while its pod is still serving ({serving:?})"
                );
                ensure!(depth == 4, "nothing delivers yet: depth {depth}");
                seen_draining.insert(*ordinal);
            }
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the surplus listeners did not drain in {TIMEOUT:?}; drained: {seen_draining:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Out of the Service; still there, with their mail; new mail refused.
    let during = pods(&ns, "mx").await?;
    let remaining: BTreeSet<String> = std::iter::once(during[&0].1.clone()).collect();
    poll("the Service to list only ordinal 0", TIMEOUT, || async {
        Ok((endpoint_ips(&ns, "mx").await? == remaining).then_some(()))
    })
    .await?;
    ensure!(deployments(&ns, "mx").await? == set(&["mx-0", "mx-1", "mx-2"]));
    ensure!(claims(&ns, "mx").await? == set(&["mx-spool-0", "mx-spool-1", "mx-spool-2"]));
    let (_, _, greeting) = connect(listeners[&1].smtp)?;
    ensure!(
        greeting.starts_with("421"),
        "a draining listener: {greeting}"
    );
    let l = poll(
        "Reconciling=Draining naming the queues",
        TIMEOUT,
        || async {
            let l = api.get("mx").await?;
            let c = status::condition(l.status.as_ref(), RECONCILING).cloned();
            Ok(c.filter(|c| c.reason == "Draining" && c.status == "True")
                .map(|c| c.message))
        },
    )
    .await?;
    ensure!(
        l.contains("ordinal 1: 4 queued message(s)")
            && l.contains("ordinal 2: 4 queued message(s)"),
        "{l}"
    );

    // The next hop comes up: the queues empty, and only then do the replicas go.
    let Some(sink) = Sink::start(sink_addr)? else {
        return Ok(());
    };
    poll("the surplus Deployments to go", TIMEOUT, || async {
        let left = deployments(&ns, "mx").await?;
        for ordinal in [1, 2] {
            if !left.contains(&format!("mx-{ordinal}")) {
                for i in 0..4 {
                    let n = sink.count(&format!("ordinal-{ordinal}-{i}"))?;
                    ensure!(
                        n == 1,
                        "mx-{ordinal} went with ordinal-{ordinal}-{i} delivered {n} times"
                    );
                }
            }
        }
        Ok((left == set(&["mx-0"])).then_some(()))
    })
    .await?;
    poll(
        "their claims to go (whenScaled: Delete)",
        TIMEOUT,
        || async { Ok((claims(&ns, "mx").await? == set(&["mx-spool-0"])).then_some(())) },
    )
    .await?;
    for (ordinal, l) in &listeners {
        ensure!(queue(l.admin)? == (true, 0), "ordinal {ordinal}");
    }
    // Every message exactly once at the sink, nothing else.
    let received = sink.messages()?;
    ensure!(
        received.len() == 8,
        "{} messages at the sink",
        received.len()
    );
    for ordinal in [1, 2] {
        for i in 0..4 {
            ensure!(sink.count(&format!("ordinal-{ordinal}-{i}"))? == 1);
        }
    }
    let s = poll("Ready and no longer Reconciling", TIMEOUT, || async {
        let s = api.get("mx").await?.status.unwrap_or_default();
        let is = |t, v| status::condition(Some(&s), t).is_some_and(|c| c.status == v);
        Ok((is(READY, "True") && is(RECONCILING, "False")).then_some(s.clone()))
    })
    .await?;
    ensure!(s.retained_claims.is_empty(), "{s:?}");

    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_drain_past_its_deadline_stalls_and_the_annotation_forces() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_a_drain_past_its_deadline_stalls_and_the_annotation_forces",
        Ok(())
    );
    install_crd(&cluster.client()).await?;
    cluster.recycle_volumes().await?;
    let ns = cluster.namespace("op-drain-stall").await?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let operator = Operator::start_reaching(
        &cluster,
        ns.name(),
        AdminReach(Arc::new(Loopback(BTreeMap::from([(1, admin)])))),
    )
    .await?;
    let api = ns.api::<EsmtpListener>();
    // A next hop that never comes up; claims retained (the default).
    let sink_port = free_port()?;
    let extra = "scaleDown: {drainTimeoutSeconds: 2}\n";

    apply_listener(&api, "mx", &spec(2, sink_port, extra)).await?;
    wait_ready(&api, "mx").await?;
    let l1 = run_rendered(&rendered_config(&ns, "mx").await?, admin, &BTreeMap::new()).await?;
    queue_mail(&l1, "stuck", 3).await?;

    apply_listener(&api, "mx", &spec(1, sink_port, extra)).await?;
    let stalled = wait_condition(&api, "mx", STALLED, "True", 2).await?;
    let c = status::condition(stalled.status.as_ref(), STALLED)
        .cloned()
        .context("Stalled")?;
    ensure!(c.reason == DRAIN_TIMEOUT, "{c:?}");
    ensure!(
        c.message
            .starts_with("ordinal 1: 3 queued message(s); not drained within the 2s"),
        "{}",
        c.message
    );
    ensure!(
        c.message.contains("postern.io/force-scale-down"),
        "{}",
        c.message
    );
    // Stalled, not given up on the mail: the replica and its claim stay.
    ensure!(deployments(&ns, "mx").await? == set(&["mx-0", "mx-1"]));
    ensure!(queue(l1.admin)? == (true, 3));
    ensure!(
        stalled
            .status
            .as_ref()
            .is_some_and(|s| s.retained_claims.is_empty()),
        "a draining ordinal's claim is not retained yet"
    );

    // Forced: the replica goes at once; its claim (with the 3 messages) is retained and
    // listed until an ordinal takes it back.
    force_scale_down(&api, "mx").await?;
    poll("mx-1 to go", TIMEOUT, || async {
        Ok((deployments(&ns, "mx").await? == set(&["mx-0"])).then_some(()))
    })
    .await?;
    ensure!(claims(&ns, "mx").await? == set(&["mx-spool-0", "mx-spool-1"]));
    let retained = poll("mx-spool-1 in status.retainedClaims", TIMEOUT, || async {
        let l = api.get("mx").await?;
        let s = l.status.unwrap_or_default();
        let stalled = status::condition(Some(&s), STALLED).is_some_and(|c| c.status == "True");
        Ok((s.retained_claims == ["mx-spool-1"] && !stalled).then_some(s))
    })
    .await?;
    ensure!(
        status::condition(Some(&retained), READY).is_some_and(|c| c.status == "True"),
        "{retained:?}"
    );
    ensure!(
        queue(l1.admin)?.1 == 3,
        "forcing deletes nothing but the replica"
    );

    apply_listener(&api, "mx", &spec(2, sink_port, extra)).await?;
    let back = wait_condition(&api, "mx", READY, "True", 3).await?;
    ensure!(
        back.status
            .as_ref()
            .is_some_and(|s| s.retained_claims.is_empty()),
        "{:?}",
        back.status
    );
    ensure!(
        pods(&ns, "mx").await?.get(&1).map(|p| p.2.as_str()) == Some("true"),
        "the new ordinal 1 serves"
    );

    operator.stop().await;
    ns.cleanup().await
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

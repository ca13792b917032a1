//! The operator against the real control plane of `e2e/cluster up` (kwok makes pods
//! Ready). Each test has its own namespace and runs the controller in-process for it.
//! Without a cluster the tests skip loudly; under `CI=1` they fail.

mod support;

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{ConfigMap, Event, PersistentVolumeClaim, Secret, Service},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use postern_e2e::{TestNamespace, poll, require_cluster};
use postern_operator::{
    build::{CONFIG_HASH_ANNOTATION, LISTENER_LABEL},
    crd::EsmtpListener,
    status::{READY, STALLED},
};
use support::{TIMEOUT, apply_listener, setup, wait_condition, wait_ready};

fn names<K: kube::Resource>(items: &[K]) -> BTreeSet<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

async fn owned<K>(ns: &TestNamespace, listener: &str) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}={listener}"));
    Ok(ns.api::<K>().list(&lp).await?.items)
}

fn template_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .cloned()
}

const MX: &str = "
listeners:
  - listen: 0.0.0.0:25
    hostname: mx.example.com
    relayHosts: [10.0.0.0/8]
  - listen: 0.0.0.0:2026
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_apply_becomes_ready_and_a_change_rolls_the_pods() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_apply_becomes_ready_and_a_change_rolls_the_pods",
        Ok(())
    );
    let (ns, operator) = setup(&cluster, "op-ready").await?;
    let api = ns.api::<EsmtpListener>();

    apply_listener(&api, "mx", MX).await?;
    let l = wait_ready(&api, "mx").await?;
    let s = l.status.clone().context("status")?;
    ensure!(s.observed_generation == Some(1), "{s:?}");
    ensure!((s.replicas, s.ready_replicas) == (1, 1), "{s:?}");
    ensure!(s.listen.as_deref() == Some("25,2026"), "{s:?}");

    // What it made: the config, one Deployment and claim, the Service; no PDB for one replica.
    let cm = support::current_config(&ns, "mx").await?;
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml"))
        .context("config.yaml")?;
    ensure!(text.contains("0.0.0.0:10025"), "{text}");
    ensure!(names(&owned::<Deployment>(&ns, "mx").await?) == set(&["mx-0"]));
    ensure!(names(&owned::<PersistentVolumeClaim>(&ns, "mx").await?) == set(&["mx-spool-0"]));
    let svc = ns.api::<Service>().get("mx").await?;
    let ports: Vec<_> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.port, p.target_port))
        .collect();
    ensure!(ports.len() == 2 && ports[0].0 == 25, "{ports:?}");
    ensure!(
        ns.api::<PodDisruptionBudget>()
            .get_opt("mx")
            .await?
            .is_none()
    );
    for cm in owned::<ConfigMap>(&ns, "mx").await? {
        let owner = &cm.owner_references()[0];
        ensure!(owner.kind == "EsmtpListener" && owner.controller == Some(true));
    }
    let before = ns.api::<Deployment>().get("mx-0").await?;
    let hash_before = template_hash(&before).context("config hash on the pod template")?;

    // A parameter changes: the ConfigMap, then the pods, follow; observedGeneration too.
    apply_listener(
        &api,
        "mx",
        &MX.replace("hostname: mx.example.com", "hostname: mx2.example.com"),
    )
    .await?;
    let l = wait_condition(&api, "mx", READY, "True", 2).await?;
    ensure!(l.status.as_ref().unwrap().observed_generation == Some(2));
    let cm = support::current_config(&ns, "mx").await?;
    ensure!(cm.data.unwrap()["config.yaml"].contains("mx2.example.com"));
    let after = ns.api::<Deployment>().get("mx-0").await?;
    let hash_after = template_hash(&after).context("config hash")?;
    ensure!(
        hash_before != hash_after,
        "the pod template hash did not change"
    );
    // The rollout made a new ReplicaSet whose pod-template-hash differs from the first.
    let replica_sets = poll("a second ReplicaSet for mx-0", TIMEOUT, || async {
        let rs = owned::<ReplicaSet>(&ns, "mx").await?;
        let hashes: BTreeSet<_> = rs
            .iter()
            .filter_map(|r| r.labels().get("pod-template-hash").cloned())
            .collect();
        Ok((hashes.len() >= 2).then_some(hashes))
    })
    .await?;
    ensure!(replica_sets.len() >= 2);

    // Events were published for what it created and updated.
    let events = ns.api::<Event>().list(&ListParams::default()).await?.items;
    let reasons: BTreeSet<_> = events.iter().filter_map(|e| e.reason.clone()).collect();
    ensure!(
        reasons.contains("Created") && reasons.contains("Updated"),
        "{reasons:?}"
    );
    ensure!(operator.metrics.total_reconciles() > 0);

    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_scale_one_to_three_to_one() -> Result<()> {
    let cluster = require_cluster!("e2e_scale_one_to_three_to_one", Ok(()));
    let (ns, operator) = setup(&cluster, "op-scale").await?;
    let api = ns.api::<EsmtpListener>();
    let spec = |n: u32| format!("{MX}replicas: {n}\nstorage: {{whenScaled: Delete}}\n");

    apply_listener(&api, "mx", &spec(1)).await?;
    wait_ready(&api, "mx").await?;

    apply_listener(&api, "mx", &spec(3)).await?;
    let l = wait_condition(&api, "mx", READY, "True", 2).await?;
    ensure!(l.status.as_ref().unwrap().ready_replicas == 3);
    ensure!(names(&owned::<Deployment>(&ns, "mx").await?) == set(&["mx-0", "mx-1", "mx-2"]));
    ensure!(
        names(&owned::<PersistentVolumeClaim>(&ns, "mx").await?)
            == set(&["mx-spool-0", "mx-spool-1", "mx-spool-2"])
    );
    ensure!(
        ns.api::<PodDisruptionBudget>()
            .get_opt("mx")
            .await?
            .is_some()
    );

    // kwok's pods run no listener to drain: forced, scale-down removes at once (the
    // drain itself is e2e_scale_down.rs's, with real listener processes).
    support::force_scale_down(&api, "mx").await?;
    apply_listener(&api, "mx", &spec(1)).await?;
    let l = wait_condition(&api, "mx", READY, "True", 3).await?;
    ensure!(l.status.as_ref().unwrap().ready_replicas == 1);
    poll("the scaled-down replicas to go", TIMEOUT, || async {
        let deployments = names(&owned::<Deployment>(&ns, "mx").await?);
        let claims = names(&owned::<PersistentVolumeClaim>(&ns, "mx").await?);
        let pdb = ns.api::<PodDisruptionBudget>().get_opt("mx").await?;
        Ok(
            (deployments == set(&["mx-0"]) && claims == set(&["mx-spool-0"]) && pdb.is_none())
                .then_some(()),
        )
    })
    .await?;

    // With whenScaled: Retain (the default) the scaled-down replica's spool stays.
    apply_listener(&api, "kept", &format!("{MX}replicas: 2\n")).await?;
    wait_ready(&api, "kept").await?;
    support::force_scale_down(&api, "kept").await?;
    apply_listener(&api, "kept", &format!("{MX}replicas: 1\n")).await?;
    wait_condition(&api, "kept", READY, "True", 2).await?;
    poll("kept-1 to go", TIMEOUT, || async {
        Ok((names(&owned::<Deployment>(&ns, "kept").await?) == set(&["kept-0"])).then_some(()))
    })
    .await?;
    ensure!(
        names(&owned::<PersistentVolumeClaim>(&ns, "kept").await?)
            == set(&["kept-spool-0", "kept-spool-1"])
    );
    // The kept claim is listed in status until an ordinal takes it back.
    let retained = poll("kept-spool-1 in status.retainedClaims", TIMEOUT, || async {
        let l = api.get("kept").await?;
        let claims = l.status.map(|s| s.retained_claims).unwrap_or_default();
        Ok((claims == ["kept-spool-1"]).then_some(claims))
    })
    .await?;
    ensure!(retained.len() == 1);
    apply_listener(&api, "kept", &format!("{MX}replicas: 2\n")).await?;
    let l = wait_condition(&api, "kept", READY, "True", 3).await?;
    ensure!(
        l.status.as_ref().unwrap().retained_claims.is_empty(),
        "{:?}",
        l.status
    );

    operator.stop().await;
    ns.cleanup().await
}

fn tls_secret(name: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_string(),
                    ByteString(b"not checked by the operator".to_vec()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(b"not checked either".to_vec()),
                ),
            ]
            .into(),
        ),
        ..Secret::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_deleting_a_referenced_secret_stalls_only_that_listener() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_deleting_a_referenced_secret_stalls_only_that_listener",
        Ok(())
    );
    let (ns, operator) = setup(&cluster, "op-stall").await?;
    let api = ns.api::<EsmtpListener>();
    let secrets = ns.api::<Secret>();
    secrets
        .create(&PostParams::default(), &tls_secret("mx-tls"))
        .await?;

    let tls = "
listeners:
  - listen: 0.0.0.0:25
    tlsCertificate: {secretName: mx-tls}
    tlsPrivateKey: {secretName: mx-tls}
";
    apply_listener(&api, "mx", tls).await?;
    wait_ready(&api, "mx").await?;
    let deployment = ns.api::<Deployment>().get("mx-0").await?;
    let mounted = deployment
        .spec
        .clone()
        .and_then(|s| s.template.spec)
        .and_then(|p| p.volumes)
        .unwrap_or_default()
        .iter()
        .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("mx-tls"));
    ensure!(mounted, "the TLS Secret is not mounted");

    // A renewed certificate reaches the pod through the Secret volume: no rollout.
    let generation = deployment.metadata.generation;
    let mut renewed = tls_secret("mx-tls");
    renewed.data.as_mut().unwrap().insert(
        "tls.crt".into(),
        ByteString(b"a renewed certificate".to_vec()),
    );
    secrets
        .replace("mx-tls", &PostParams::default(), &renewed)
        .await?;
    wait_condition(&api, "mx", READY, "True", 1).await?;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = ns.api::<Deployment>().get("mx-0").await?;
    ensure!(
        after.metadata.generation == generation,
        "renewing the Secret changed the Deployment"
    );

    secrets.delete("mx-tls", &DeleteParams::default()).await?;
    let l = wait_condition(&api, "mx", STALLED, "True", 1).await?;
    let status = l.status.as_ref().unwrap();
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .unwrap();
    ensure!(stalled.reason == "SecretNotFound", "{stalled:?}");
    ensure!(
        stalled.message.contains("Secret 'mx-tls' not found"),
        "{stalled:?}"
    );
    let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    ensure!(ready.status == "False", "{ready:?}");
    poll("a SecretNotFound event", TIMEOUT, || async {
        let events = ns.api::<Event>().list(&ListParams::default()).await?.items;
        Ok(events
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("SecretNotFound")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(()))
    })
    .await?;

    // A stalled listener does not hold up the others, nor is it retried hot.
    apply_listener(&api, "other", "listeners: [{listen: '0.0.0.0:587'}]").await?;
    wait_ready(&api, "other").await?;
    let before = operator.metrics.reconciles_of("stalled");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let retries = operator.metrics.reconciles_of("stalled") - before;
    ensure!(
        retries == 0,
        "the stalled listener was retried {retries} times in 3s while nothing changed"
    );

    // Recreating the Secret heals it without touching the spec.
    secrets
        .create(&PostParams::default(), &tls_secret("mx-tls"))
        .await?;
    wait_condition(&api, "mx", READY, "True", 1).await?;
    let l = api.get("mx").await?;
    let stalled = l
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .unwrap()
        .clone();
    ensure!(stalled.status == "False", "{stalled:?}");

    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_invalid_objects_are_rejected_with_the_cel_message() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_invalid_objects_are_rejected_with_the_cel_message",
        Ok(())
    );
    support::install_crd(&cluster.client()).await?;
    let ns = cluster.namespace("op-cel").await?;
    let api = ns.api::<EsmtpListener>();
    for (name, spec, message) in [
        (
            "shared-port",
            "listeners: [{listen: '0.0.0.0:25'}, {listen: '[::]:25'}]",
            "each listener needs its own port",
        ),
        (
            "bad-port",
            "listeners: [{listen: '0.0.0.0:99999'}]",
            "every listen port must be 1-65535",
        ),
        (
            "bad-relay",
            "listeners: [{listen: '0:25', relayHosts: [10.0.0.300]}]",
            "must be an IP address such as 10.0.0.1 or a CIDR block",
        ),
        (
            "bad-tls",
            "listeners: [{listen: '0:25', tlsCertificate: {secretName: a, path: /b}, tlsPrivateKey: {secretName: a}}]",
            "set exactly one of path, vaultMount (with vaultPath) or secretName",
        ),
        (
            "bad-policy",
            "listeners: [{listen: '0:25'}]\nservice: {externalTrafficPolicy: Local}",
            "externalTrafficPolicy needs service.type NodePort or LoadBalancer",
        ),
        (
            "host-bits",
            "listeners: [{listen: '0:25', relayHosts: [10.0.0.1/24]}]",
            "a CIDR block with zero host bits",
        ),
        (
            "bare-number",
            "listeners: [{listen: '0:25', clientTimeout: '60'}]",
            "clientTimeout",
        ),
        (
            "bad-address",
            "listeners: [{listen: '300.1.1.1:25'}]",
            "the address must be an IPv4 address",
        ),
        (
            "too-big",
            "listeners: [{listen: '0:25', maxRecipientsPerMessage: 5000000000}]",
            "maxRecipientsPerMessage",
        ),
        (
            "inline-token",
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultAddress: 'https://v', vaultToken: hvs.x}, tlsPrivateKey: {secretName: k}}]",
            "vaultToken is not allowed in an EsmtpListener",
        ),
        (
            "vault-shape",
            "listeners: [{listen: '0:25', tlsCertificate: {vaultMount: s, vaultPath: c, vaultRole: r, vaultTokenSecret: {name: a, key: b}}, tlsPrivateKey: {secretName: k}}]",
            "give at most one of 'vaultToken'",
        ),
        (
            "path-shape",
            "listeners: [{listen: '0:25', tlsCertificate: {path: /c, vaultRole: r}, tlsPrivateKey: {secretName: k}}]",
            "'path' takes no other fields",
        ),
        (
            "proxy-alone",
            "listeners: [{listen: '0:25', requireProxyProtocol: true}]",
            "requireProxyProtocol: true and a non-empty proxyProtocolFrom",
        ),
        (
            "xclient-alone",
            "listeners: [{listen: '0:25', allowXclient: true}]",
            "allowXclient: true needs a non-empty xclientFrom",
        ),
        (
            "9starts-with-a-digit",
            "listeners: [{listen: '0:25'}]",
            "metadata.name must start with a letter",
        ),
    ] {
        let err = apply_listener(&api, name, spec)
            .await
            .err()
            .with_context(|| format!("{name} was accepted"))?;
        let text = format!("{err:#}");
        ensure!(
            text.contains(message),
            "{name}: expected '{message}' in: {text}"
        );
    }
    // Claims may only grow, and keep their storage class.
    apply_listener(
        &api,
        "claims",
        "listeners: [{listen: '0:25'}]\nstorage: {size: 2Gi}",
    )
    .await?;
    for (spec, message) in [
        (
            "listeners: [{listen: '0:25'}]\nstorage: {size: 1Gi}",
            "storage.size may only grow",
        ),
        (
            "listeners: [{listen: '0:25'}]\nstorage: {size: 2Gi, storageClassName: other}",
            "storage.storageClassName is immutable",
        ),
    ] {
        let err = apply_listener(&api, "claims", spec)
            .await
            .err()
            .with_context(|| format!("{spec} was accepted"))?;
        let text = format!("{err:#}");
        ensure!(text.contains(message), "expected '{message}' in: {text}");
    }
    apply_listener(
        &api,
        "claims",
        "listeners: [{listen: '0:25'}]\nstorage: {size: 3Gi}",
    )
    .await?;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_delete_removes_what_it_made_and_claims_follow_the_policy() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_delete_removes_what_it_made_and_claims_follow_the_policy",
        Ok(())
    );
    let (ns, operator) = setup(&cluster, "op-gc").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "keep", &format!("{MX}replicas: 2\n")).await?;
    apply_listener(
        &api,
        "drop",
        "listeners: [{listen: '0:25'}]\nstorage: {whenDeleted: Delete}\n",
    )
    .await?;
    wait_ready(&api, "keep").await?;
    wait_ready(&api, "drop").await?;

    for name in ["keep", "drop"] {
        api.delete(name, &DeleteParams::background()).await?;
    }
    poll(
        "the garbage collector to remove the children",
        TIMEOUT,
        || async {
            let mut left = Vec::new();
            for name in ["keep", "drop"] {
                left.extend(names(&owned::<Deployment>(&ns, name).await?));
                left.extend(names(&owned::<ConfigMap>(&ns, name).await?));
                left.extend(names(&owned::<Service>(&ns, name).await?));
                left.extend(names(&owned::<PodDisruptionBudget>(&ns, name).await?));
                left.extend(names(&owned::<ReplicaSet>(&ns, name).await?));
                left.extend(names(
                    &owned::<k8s_openapi::api::core::v1::Pod>(&ns, name).await?,
                ));
            }
            left.extend(names(&owned::<PersistentVolumeClaim>(&ns, "drop").await?));
            Ok(left.is_empty().then_some(()))
        },
    )
    .await?;
    // whenDeleted: Retain (the default) keeps the spools and the messages in them.
    ensure!(
        names(&owned::<PersistentVolumeClaim>(&ns, "keep").await?)
            == set(&["keep-spool-0", "keep-spool-1"])
    );

    operator.stop().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_leader_election_hands_the_lease_over() -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    use postern_operator::leader::{LeaseOptions, acquire};

    let cluster = require_cluster!("e2e_leader_election_hands_the_lease_over", Ok(()));
    let ns = cluster.namespace("op-lease").await?;
    let options = |identity: &str| LeaseOptions {
        name: "postern-operator".into(),
        namespace: ns.name().into(),
        identity: identity.into(),
    };
    let holder = || async {
        let lease = ns.api::<Lease>().get("postern-operator").await?;
        Ok::<_, anyhow::Error>(lease.spec.and_then(|s| s.holder_identity))
    };

    let first = acquire(cluster.client(), &options("first")).await?;
    ensure!(holder().await?.as_deref() == Some("first"));
    let (client, second_options) = (cluster.client(), options("second"));
    let second = tokio::spawn(async move { acquire(client, &second_options).await });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    ensure!(!second.is_finished(), "two leaders at once");

    first.release().await;
    let second = tokio::time::timeout(TIMEOUT, second).await???;
    ensure!(holder().await?.as_deref() == Some("second"));
    second.release().await;
    ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_spec_the_api_server_refuses_stalls_with_its_reason() -> Result<()> {
    let cluster = require_cluster!(
        "e2e_a_spec_the_api_server_refuses_stalls_with_its_reason",
        Ok(())
    );
    let (ns, operator) = setup(&cluster, "op-refused").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(&api, "mx", "listeners: [{listen: '0:25'}]").await?;
    wait_ready(&api, "mx").await?;

    // A Service annotation the API server refuses: the listener stalls naming the
    // Service, while the unrelated change (the hostname) still reaches the config and
    // the Deployment.
    apply_listener(
        &api,
        "mx",
        "listeners: [{listen: '0:25', hostname: changed.example.com}]\nservice: {annotations: {'not a key!': x}}",
    )
    .await?;
    let l = wait_condition(&api, "mx", STALLED, "True", 2).await?;
    let stalled = l
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .unwrap()
        .clone();
    ensure!(stalled.reason == "Rejected", "{stalled:?}");
    ensure!(
        stalled
            .message
            .contains("the API server refused Service 'mx'"),
        "{stalled:?}"
    );
    let cm = support::current_config(&ns, "mx").await?;
    ensure!(
        cm.data.unwrap()["config.yaml"].contains("changed.example.com"),
        "the config did not follow while the Service was refused"
    );

    // Putting it back heals it.
    apply_listener(
        &api,
        "mx",
        "listeners: [{listen: '0:25', hostname: changed.example.com}]",
    )
    .await?;
    wait_condition(&api, "mx", READY, "True", 3).await?;

    operator.stop().await;
    ns.cleanup().await
}

/// Runs the e2e cluster's `kubectl` with `args` in `ns`, feeding `stdin`.
fn kubectl(
    cluster: &postern_e2e::Cluster,
    ns: &str,
    args: &[&str],
    stdin: &str,
) -> Result<std::process::Output> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(cluster.tool("kubectl"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["-n", ns])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(stdin.as_bytes())?;
    Ok(child.wait_with_output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_kubectl_apply_wait_and_get_as_the_docs_say() -> Result<()> {
    let cluster = require_cluster!("e2e_kubectl_apply_wait_and_get_as_the_docs_say", Ok(()));
    let (ns, operator) = setup(&cluster, "op-kubectl").await?;
    let manifest = "
apiVersion: postern.io/v1alpha1
kind: EsmtpListener
metadata:
  name: mx
spec:
  listeners:
    - listen: 0.0.0.0:25
      hostname: mx.example.com
      relayHosts: [10.0.0.0/8]
      domains:
        example.com: {relayTo: true}
    - listen: 0.0.0.0:587
      hostname: mx.example.com
";
    let out = kubectl(&cluster, ns.name(), &["apply", "-f", "-"], manifest)?;
    ensure!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::spawn_blocking({
        let (cluster, ns) = (cluster.clone(), ns.name().to_string());
        move || {
            kubectl(
                &cluster,
                &ns,
                &[
                    "wait",
                    "--for=condition=Ready",
                    "esmtplistener/mx",
                    "--timeout=90s",
                ],
                "",
            )
        }
    })
    .await??;
    ensure!(
        out.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&cluster, ns.name(), &["get", "esmtp"], "")?;
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header == ["NAME", "READY", "REASON", "LISTEN", "AGE"],
        "{table}"
    );
    let row: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        row.get(..4) == Some(&["mx", "1/1", "Available", "25,587"][..]),
        "{table}"
    );

    operator.stop().await;
    ns.cleanup().await
}

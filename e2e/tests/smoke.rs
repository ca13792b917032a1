//! Smoke test of the e2e control plane: what the operator will rely on works
//! against the real API server and controllers started by `e2e/cluster up`.
//!
//! * a CRD with a status subresource and a CEL (`x-kubernetes-validations`)
//!   rule is served, and the API server rejects an object breaking the rule
//!   with the rule's message;
//! * the status subresource is separate from the main resource;
//! * a Deployment in a `restricted` Pod Security namespace gets a ReplicaSet
//!   and pods (controller-manager), the pods are scheduled on the kwok node
//!   (scheduler) and "run" (kwok), so the Deployment becomes Available;
//! * deleting the Deployment's owner (a custom resource) makes the garbage
//!   collector delete the Deployment and its pods;
//! * claims bind to the pre-made volume pool (there is no provisioner);
//! * a dropped [`postern_e2e::TestNamespace`] deletes its namespace.
//!
//! Everything is created with server-side apply as field manager
//! [`postern_e2e::FIELD_MANAGER`].

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Resource, ResourceExt};
use postern_e2e::{
    Cluster, DEFAULT_TIMEOUT, FIELD_MANAGER, GC_TIMEOUT, POD_SECURITY_RESTRICTED, apply, poll,
    require_cluster, wait_deleted, wait_deployment_available, wait_for,
};
use serde_json::{Value, json};

const GROUP: &str = "smoke.e2e.postern.test";
const KIND: &str = "RelayPool";
const PLURAL: &str = "relaypools";
const CEL_MESSAGE: &str = "minReplicas must not exceed maxReplicas";

/// The test CRD: a namespaced `RelayPool` whose spec must keep
/// `minReplicas <= maxReplicas` (a CEL rule), with a status subresource.
fn crd_manifest() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{PLURAL}.{GROUP}") },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": "relaypool",
                "listKind": "RelayPoolList",
            },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["minReplicas", "maxReplicas"],
                            "properties": {
                                "minReplicas": { "type": "integer", "minimum": 0 },
                                "maxReplicas": { "type": "integer", "minimum": 0 },
                            },
                            "x-kubernetes-validations": [{
                                "rule": "self.minReplicas <= self.maxReplicas",
                                "message": CEL_MESSAGE,
                                "fieldPath": ".minReplicas",
                            }],
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": { "type": "string" },
                                "observedGeneration": { "type": "integer" },
                            },
                        },
                    },
                }},
            }],
        },
    })
}

/// Applies the CRD (idempotent, so every test can call it) and waits until
/// it is Established.  The CRD is left installed: tests may run in parallel
/// and the cluster is thrown away by `e2e/cluster down`.
async fn install_crd(cluster: &Cluster) -> Result<()> {
    let crds = Api::<CustomResourceDefinition>::all(cluster.client());
    let name = format!("{PLURAL}.{GROUP}");
    apply(&crds, &name, &crd_manifest()).await?;
    wait_for(
        &crds,
        &name,
        "the CRD to be Established",
        DEFAULT_TIMEOUT,
        |crd: Option<&CustomResourceDefinition>| {
            crd.and_then(|c| c.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await?;
    Ok(())
}

fn relay_pool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", KIND), PLURAL)
}

fn relay_pool(name: &str, min: i64, max: i64) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": KIND,
        "metadata": { "name": name },
        "spec": { "minReplicas": min, "maxReplicas": max },
    })
}

#[tokio::test]
async fn crd_cel_rule_and_status_subresource() -> Result<()> {
    let cluster = require_cluster!("crd_cel_rule_and_status_subresource", Ok(()));
    install_crd(&cluster).await?;
    let ns = cluster.namespace("smoke-crd").await?;
    let pools: Api<DynamicObject> =
        Api::namespaced_with(ns.client(), ns.name(), &relay_pool_resource());

    // The CEL rule is enforced by the API server, with the rule's message,
    // for server-side apply ...
    let err = pools
        .patch(
            "broken",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(relay_pool("broken", 5, 2)),
        )
        .await
        .expect_err("an object breaking the CEL rule must be rejected");
    assert_cel_rejection(err)?;
    // ... and for a plain create.
    let obj: DynamicObject = serde_json::from_value(relay_pool("broken", 3, 1))?;
    let err = pools
        .create(&PostParams::default(), &obj)
        .await
        .expect_err("an object breaking the CEL rule must be rejected");
    assert_cel_rejection(err)?;
    ensure!(
        pools.get_opt("broken").await?.is_none(),
        "rejected object was stored"
    );

    // A valid object is stored.
    let pool = apply(&pools, "good", &relay_pool("good", 1, 3)).await?;
    let generation = pool.metadata.generation;
    ensure!(
        pool.data.get("status").is_none(),
        "status must not be set through the main resource"
    );

    // The status subresource: status written there is kept, does not bump
    // the generation, and the main resource ignores status changes.
    let status = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": KIND,
        "metadata": { "name": "good" },
        "status": { "phase": "Ready", "observedGeneration": generation },
    });
    let patched = pools
        .patch_status(
            "good",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .context("applying the status subresource")?;
    ensure!(
        patched.data["status"]["phase"] == "Ready",
        "status not stored: {:?}",
        patched.data
    );
    ensure!(
        patched.metadata.generation == generation,
        "a status change bumped the generation"
    );
    let mut with_status = relay_pool("good", 1, 3);
    with_status["status"] = json!({ "phase": "Hacked" });
    let after = apply(&pools, "good", &with_status).await?;
    ensure!(
        after.data["status"]["phase"] == "Ready",
        "the main resource changed the status: {:?}",
        after.data["status"]
    );

    ns.cleanup().await
}

/// The rejection is a 422 Invalid whose message carries the rule's message.
fn assert_cel_rejection(err: kube::Error) -> Result<()> {
    match err {
        kube::Error::Api(status) => {
            ensure!(
                status.code == 422 && status.reason == "Invalid",
                "expected 422 Invalid, got {} {}: {}",
                status.code,
                status.reason,
                status.message
            );
            ensure!(
                status.message.contains(CEL_MESSAGE),
                "the rejection does not carry the rule's message: {}",
                status.message
            );
            eprintln!("rejected as expected: {}", status.message);
            Ok(())
        }
        other => bail!("expected an API error, got {other}"),
    }
}

/// A Deployment whose pods pass the `restricted` Pod Security profile.
fn deployment(name: &str, owner: &DynamicObject, replicas: i32) -> Result<Value> {
    let owner_ref = owner
        .controller_owner_ref(&relay_pool_resource())
        .context("owner has no name or uid")?;
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "ownerReferences": [owner_ref],
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "relay",
                        "image": "registry.invalid/postern/relay:e2e",
                        "ports": [{ "containerPort": 2525, "name": "smtp" }],
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                    }],
                },
            },
        },
    }))
}

#[tokio::test]
async fn deployment_becomes_available_and_is_garbage_collected() -> Result<()> {
    let cluster = require_cluster!(
        "deployment_becomes_available_and_is_garbage_collected",
        Ok(())
    );
    install_crd(&cluster).await?;
    let ns = cluster
        .namespace_with_labels("smoke-gc", POD_SECURITY_RESTRICTED)
        .await?;
    let pools: Api<DynamicObject> =
        Api::namespaced_with(ns.client(), ns.name(), &relay_pool_resource());
    let deployments: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();

    // Pod Security admission is on: a privileged pod is refused here.
    let privileged: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "privileged" },
        "spec": { "containers": [{
            "name": "c",
            "image": "registry.invalid/any",
            "securityContext": { "privileged": true },
        }]},
    }))?;
    match pods.create(&PostParams::default(), &privileged).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("PodSecurity") => {}
        other => bail!("a privileged pod in a restricted namespace was not refused: {other:?}"),
    }

    // The owner, and a Deployment it controls.
    let owner = apply(&pools, "relays", &relay_pool("relays", 2, 4)).await?;
    apply(&deployments, "relay", &deployment("relay", &owner, 2)?).await?;
    let available =
        wait_deployment_available(&deployments, "relay", Duration::from_secs(90)).await?;
    let deployment_uid = available.uid().context("deployment has no uid")?;

    // Its pods really went through the scheduler to the kwok node.
    let running = pods
        .list(&ListParams::default().labels("app=relay"))
        .await?;
    ensure!(
        running.items.len() == 2,
        "expected 2 pods, found {}",
        running.items.len()
    );
    for pod in &running.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        ensure!(
            node.as_deref().is_some_and(|n| n.starts_with("kwok-node-")),
            "pod {} is on node {node:?}",
            pod.name_any()
        );
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        ensure!(
            phase.as_deref() == Some("Running"),
            "pod {} is {phase:?}",
            pod.name_any()
        );
    }

    // Deleting the owner lets the garbage collector remove the Deployment,
    // then its ReplicaSet and pods (background propagation).  Right after
    // the CRD was created this takes up to GC_DISCOVERY_PERIOD longer: the
    // collector has to discover the new kind first.
    pools
        .delete("relays", &DeleteParams::background())
        .await
        .context("deleting the owner")?;
    wait_deleted(&deployments, "relay", &deployment_uid, GC_TIMEOUT).await?;
    let replica_sets: Api<ReplicaSet> = ns.api();
    poll(
        "the ReplicaSets and pods of the collected Deployment to be gone",
        DEFAULT_TIMEOUT,
        || async {
            let rs = replica_sets
                .list(&ListParams::default().labels("app=relay"))
                .await?;
            let pods = pods
                .list(&ListParams::default().labels("app=relay"))
                .await?;
            Ok((rs.items.is_empty() && pods.items.is_empty()).then_some(()))
        },
    )
    .await?;

    ns.cleanup().await
}

#[tokio::test]
async fn claims_bind_to_the_volume_pool() -> Result<()> {
    let cluster = require_cluster!("claims_bind_to_the_volume_pool", Ok(()));
    let ns = cluster.namespace("smoke-pvc").await?;
    let claims: Api<PersistentVolumeClaim> = ns.api();

    // No provisioner: the claim binds to one of the pre-made volumes of the
    // default StorageClass.
    let claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": "spool" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Gi" } },
        },
    });
    apply(&claims, "spool", &claim).await?;
    let bound = wait_for(
        &claims,
        "spool",
        "the claim to be Bound",
        DEFAULT_TIMEOUT,
        |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Bound")
        },
    )
    .await?
    .context("claim disappeared")?;
    let volume = bound
        .spec
        .and_then(|s| s.volume_name)
        .context("bound claim names no volume")?;
    ensure!(volume.starts_with("postern-e2e-pv-"), "bound to {volume}");

    // Once the claim is gone its volume is Released; recycling makes it
    // Available again.
    let uid = claims.get("spool").await?.uid().unwrap_or_default();
    claims.delete("spool", &DeleteParams::default()).await?;
    wait_deleted(&claims, "spool", &uid, DEFAULT_TIMEOUT).await?;
    let volumes: Api<PersistentVolume> = Api::all(cluster.client());
    let phase_of = |pv: Option<&PersistentVolume>| {
        pv.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    wait_for(
        &volumes,
        &volume,
        "the volume to be Released",
        DEFAULT_TIMEOUT,
        |pv: Option<&PersistentVolume>| phase_of(pv) == "Released",
    )
    .await?;
    ensure!(cluster.recycle_volumes().await? >= 1, "nothing recycled");
    wait_for(
        &volumes,
        &volume,
        "the volume to be Available",
        DEFAULT_TIMEOUT,
        |pv: Option<&PersistentVolume>| phase_of(pv) == "Available",
    )
    .await?;

    ns.cleanup().await
}

#[tokio::test]
async fn namespace_is_deleted_on_drop() -> Result<()> {
    let cluster = require_cluster!("namespace_is_deleted_on_drop", Ok(()));
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let ns = cluster.namespace("smoke-drop").await?;
    let name = ns.name().to_owned();
    let uid = namespaces.get(&name).await?.uid().unwrap_or_default();
    drop(ns);
    // Dropping asked for the deletion; the namespace controller finishes it.
    wait_deleted(&namespaces, &name, &uid, DEFAULT_TIMEOUT).await
}

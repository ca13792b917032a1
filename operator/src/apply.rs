//! Apply: server-side apply of the built objects with one field manager, pruning of
//! replicas past `spec.replicas`, and an Event for each object created, updated or
//! deleted.

use std::fmt::Debug;

use futures::future::{join_all, try_join_all};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ObjectReference, PersistentVolumeClaim},
        policy::v1::PodDisruptionBudget,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PropagationPolicy},
    runtime::{
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    build::{Desired, LISTENER_LABEL, MANAGER, ordinal_of},
    controller::Stores,
    crd::{ClaimPolicy, EsmtpListener},
};

/// What an apply did to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The object did not exist.
    Created,
    /// The object's spec (or data) changed.
    Updated,
    /// The object already was as desired.
    Unchanged,
}

/// Server-side applies `obj` as [`MANAGER`], taking over conflicting fields; `store`
/// holds what the object looked like before, to tell a creation from an update.
pub async fn apply<K>(
    client: &Client,
    store: &Store<K>,
    obj: &K,
) -> Result<(K, Change), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let ns = obj.meta().namespace.as_deref().unwrap_or_default();
    let before = store.get(&ObjectRef::new(name).within(ns));
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let after = api
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?;
    let change = match before {
        None => Change::Created,
        Some(before) => {
            let (b, a) = (before.meta(), after.meta());
            let changed = match (b.generation, a.generation) {
                (Some(bg), Some(ag)) => bg != ag,
                _ => b.resource_version != a.resource_version,
            };
            if changed {
                Change::Updated
            } else {
                Change::Unchanged
            }
        }
    };
    Ok((after, change))
}

/// Deletes the namespaced `K` called `name`; `Ok(false)` when it was already gone.
pub async fn delete<K>(client: &Client, ns: &str, name: &str) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// A reference to `obj` for an Event's `related` object.
fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

/// Publishes a Normal event about `listener` for a change to one of its children.
pub async fn record<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    listener: &EsmtpListener,
    child: &K,
    change: Change,
) {
    let (reason, verb) = match change {
        Change::Created => ("Created", "created"),
        Change::Updated => ("Updated", "updated"),
        Change::Unchanged => return,
    };
    let note = format!("{verb} {} {}", K::kind(&()), child.name_any());
    publish(
        recorder,
        listener,
        EventType::Normal,
        reason,
        note,
        Some(reference(child)),
    )
    .await;
}

/// Publishes an event about `listener`; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    listener: &EsmtpListener,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: related,
    };
    if let Err(e) = recorder.publish(&event, &listener.object_ref(&())).await {
        tracing::warn!(error = %e, listener = %listener.name_any(), "cannot publish an event");
    }
}

/// Applies everything in `desired`, deletes what `listener` no longer needs, and returns
/// the applied replica Deployments (with their current status).
pub async fn apply_all(
    client: &Client,
    stores: &Stores,
    recorder: &Recorder,
    listener: &EsmtpListener,
    desired: &Desired,
) -> Result<Vec<Deployment>, kube::Error> {
    // The config, claims and Service do not depend on each other: apply them at once,
    // then the Deployments that mount the config and claims.
    let claims = try_join_all(
        desired
            .claims
            .iter()
            .map(|c| apply(client, &stores.claims, c)),
    );
    let config_map = apply(client, &stores.config_maps, &desired.config_map);
    let service = apply(client, &stores.services, &desired.service);
    let ((cm, cm_change), claims, (svc, svc_change)) =
        futures::try_join!(config_map, claims, service)?;
    let deployments = try_join_all(
        desired
            .deployments
            .iter()
            .map(|d| apply(client, &stores.deployments, d)),
    )
    .await?;
    futures::join!(
        record(recorder, listener, &cm, cm_change),
        record(recorder, listener, &svc, svc_change),
        join_all(
            claims
                .iter()
                .map(|(c, change)| record(recorder, listener, c, *change))
        ),
        join_all(
            deployments
                .iter()
                .map(|(d, change)| record(recorder, listener, d, *change))
        ),
    );
    let deployments: Vec<Deployment> = deployments.into_iter().map(|(d, _)| d).collect();
    match &desired.pdb {
        Some(pdb) => {
            let (pdb, change) = apply(client, &stores.pdbs, pdb).await?;
            record(recorder, listener, &pdb, change).await;
        }
        None => {
            let name = listener.name_any();
            let ns = listener.namespace().unwrap_or_default();
            if stores
                .pdbs
                .get(&ObjectRef::new(&name).within(&ns))
                .is_some()
                && delete::<PodDisruptionBudget>(client, &ns, &name).await?
            {
                deleted(recorder, listener, "PodDisruptionBudget", &name).await;
            }
        }
    }
    prune(client, stores, recorder, listener).await?;
    Ok(deployments)
}

async fn deleted(recorder: &Recorder, listener: &EsmtpListener, kind: &str, name: &str) {
    publish(
        recorder,
        listener,
        EventType::Normal,
        "Deleted",
        format!("deleted {kind} {name}"),
        None,
    )
    .await;
}

/// Whether `obj` in the cache belongs to `listener` and is past its desired replicas.
fn surplus<K: Resource>(obj: &K, listener: &EsmtpListener) -> bool {
    let meta = obj.meta();
    meta.namespace == listener.metadata.namespace
        && meta.labels.as_ref().and_then(|l| l.get(LISTENER_LABEL))
            == listener.metadata.name.as_ref()
        && ordinal_of(obj).is_some_and(|o| i64::from(o) >= i64::from(listener.spec.replicas))
        && meta.deletion_timestamp.is_none()
}

/// Scale-down: deletes the Deployments of replicas past `spec.replicas`, and their spool
/// claims when `storage.whenScaled` is `Delete`.
async fn prune(
    client: &Client,
    stores: &Stores,
    recorder: &Recorder,
    listener: &EsmtpListener,
) -> Result<(), kube::Error> {
    let ns = listener.namespace().unwrap_or_default();
    for d in stores.deployments.state_filter(|d| surplus(d, listener)) {
        if delete::<Deployment>(client, &ns, &d.name_any()).await? {
            deleted(recorder, listener, "Deployment", &d.name_any()).await;
        }
    }
    if listener.spec.storage.when_scaled == ClaimPolicy::Delete {
        for c in stores.claims.state_filter(|c| surplus(c, listener)) {
            if delete::<PersistentVolumeClaim>(client, &ns, &c.name_any()).await? {
                deleted(recorder, listener, "PersistentVolumeClaim", &c.name_any()).await;
            }
        }
    }
    Ok(())
}

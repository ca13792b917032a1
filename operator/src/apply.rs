//! Apply: server-side apply of the built objects with one field manager, never onto an
//! object this listener does not own; the replica Deployments in rollout order; removal
//! of ConfigMaps no Deployment mounts any more (replicas past `spec.replicas` are left to
//! [`crate::drain`]); and an Event for each object created, updated or deleted. Each child is applied on
//! its own, so one that fails is reported without holding up the others.

use std::fmt::Debug;

use futures::future::join_all;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, ObjectReference},
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
    build::{Desired, LISTENER_LABEL, MANAGED_BY_LABEL, MANAGER, ordinal_of},
    controller::Stores,
    crd::EsmtpListener,
    rollout,
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
    listener: &impl Resource<DynamicType = ()>,
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
    listener: &impl Resource<DynamicType = ()>,
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
        tracing::warn!(error = %e, listener = ?listener.meta().name, "cannot publish an event");
    }
}

/// Why one child could not be applied.
#[derive(Debug)]
pub enum Problem {
    /// An object of that name exists and this listener does not own it.
    NotOwned {
        /// Its kind, e.g. `Service`.
        kind: String,
        /// Its name.
        name: String,
    },
    /// The API server refused the object (4xx): the spec must change.
    Refused {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// The API server's message.
        message: String,
    },
    /// A failure worth retrying (the API server unreachable, a conflict, 5xx).
    Failed {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// The error.
        error: kube::Error,
    },
}

impl Problem {
    /// The problem `error` is for the `kind` called `name`.
    pub fn from_error(kind: &str, name: &str, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(s)
                if (400..500).contains(&s.code) && ![409, 429].contains(&s.code) =>
            {
                Self::Refused {
                    kind: kind.into(),
                    name: name.into(),
                    message: s.message,
                }
            }
            error => Self::Failed {
                kind: kind.into(),
                name: name.into(),
                error,
            },
        }
    }

    /// Whether retrying without a change to anything may succeed.
    pub const fn transient(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotOwned { kind, name } => write!(
                f,
                "{kind} '{name}' already exists and is not owned by this EsmtpListener; the operator does not adopt it: delete or rename it"
            ),
            Self::Refused {
                kind,
                name,
                message,
            } => write!(f, "the API server refused {kind} '{name}': {message}"),
            Self::Failed { kind, name, error } => write!(f, "{kind} '{name}': {error}"),
        }
    }
}

/// Whether the existing `obj` may be applied over by `listener`: it carries the
/// listener's owner reference, or (spool claims only, which a retained spool outlives)
/// the listener's labels.
pub fn belongs<K: Resource>(obj: &K, listener: &EsmtpListener, by_labels: bool) -> bool {
    let meta = obj.meta();
    let uid = listener.metadata.uid.as_deref();
    let owned = meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid);
    let labelled = meta.labels.as_ref().is_some_and(|l| {
        l.get(LISTENER_LABEL) == listener.metadata.name.as_ref()
            && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
    });
    let foreign_controller = meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) != uid);
    owned || (by_labels && labelled && !foreign_controller)
}

/// Applies `obj` unless an object of its name exists that `listener` does not own; the
/// cache is asked first, the API server only when the cache has no such object.
async fn apply_owned<K>(
    client: &Client,
    store: &Store<K>,
    listener: &EsmtpListener,
    obj: &K,
    by_labels: bool,
) -> Result<(K, Change), Problem>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let kind = K::kind(&()).to_string();
    let name = obj.meta().name.clone().unwrap_or_default();
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let existing = match store.get(&ObjectRef::new(&name).within(&ns)) {
        Some(o) => Some((*o).clone()),
        None => Api::<K>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|e| Problem::from_error(&kind, &name, e))?,
    };
    if let Some(existing) = &existing
        && !belongs(existing, listener, by_labels)
    {
        return Err(Problem::NotOwned { kind, name });
    }
    apply(client, store, obj)
        .await
        .map_err(|e| Problem::from_error(&kind, &name, e))
}

/// What [`apply_all`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Each desired ordinal's Deployment as it now is (`None`: not created yet).
    pub deployments: Vec<Option<Deployment>>,
    /// The children that could not be applied.
    pub problems: Vec<Problem>,
}

/// Applies everything in `desired` (the Deployments in rollout order), deletes what
/// `listener` no longer needs, and reports what it could not do.
pub async fn apply_all(
    client: &Client,
    stores: &Stores,
    recorder: &Recorder,
    listener: &EsmtpListener,
    desired: &Desired,
) -> Applied {
    let mut problems = Vec::new();
    let ns = listener.namespace().unwrap_or_default();
    let name = listener.name_any();
    // The config, claims and Service do not depend on each other: apply them at once,
    // then the Deployments that mount the config and claims.
    let config_map = apply_owned(
        client,
        &stores.config_maps,
        listener,
        &desired.config_map,
        false,
    );
    let claims = join_all(
        desired
            .claims
            .iter()
            .map(|c| apply_owned(client, &stores.claims, listener, c, true)),
    );
    let service = apply_owned(client, &stores.services, listener, &desired.service, false);
    let (config_map, claims, service) = futures::join!(config_map, claims, service);
    let config_ok = match config_map {
        Ok((cm, change)) => {
            record(recorder, listener, &cm, change).await;
            true
        }
        Err(p) => {
            problems.push(p);
            false
        }
    };
    let mut claim_ok = Vec::with_capacity(claims.len());
    for result in claims {
        match result {
            Ok((c, change)) => {
                record(recorder, listener, &c, change).await;
                claim_ok.push(true);
            }
            // A claim that exists but refuses the change (e.g. grown by hand) still
            // serves its pod; one that is not ours must never be mounted.
            Err(p) => {
                claim_ok.push(!matches!(p, Problem::NotOwned { .. }));
                problems.push(p);
            }
        }
    }
    match service {
        Ok((svc, change)) => record(recorder, listener, &svc, change).await,
        Err(p) => problems.push(p),
    }

    let mut current: Vec<Option<Deployment>> = desired
        .deployments
        .iter()
        .map(|d| {
            let n = d.metadata.name.as_deref().unwrap_or_default();
            stores
                .deployments
                .get(&ObjectRef::new(n).within(&ns))
                .map(|d| (*d).clone())
        })
        .collect();
    let allowed = rollout::allowed(&desired.deployments, &current);
    for (i, d) in desired.deployments.iter().enumerate() {
        if !allowed[i] || !config_ok || !claim_ok.get(i).copied().unwrap_or(false) {
            continue;
        }
        match apply_owned(client, &stores.deployments, listener, d, false).await {
            Ok((d, change)) => {
                record(recorder, listener, &d, change).await;
                current[i] = Some(d);
            }
            Err(p) => {
                problems.push(p);
                break;
            }
        }
    }

    match &desired.pdb {
        Some(pdb) => match apply_owned(client, &stores.pdbs, listener, pdb, false).await {
            Ok((pdb, change)) => record(recorder, listener, &pdb, change).await,
            Err(p) => problems.push(p),
        },
        None => {
            let ours = stores
                .pdbs
                .get(&ObjectRef::new(&name).within(&ns))
                .is_some_and(|p| belongs(&*p, listener, false));
            if ours {
                match delete::<PodDisruptionBudget>(client, &ns, &name).await {
                    Ok(true) => deleted(recorder, listener, "PodDisruptionBudget", &name).await,
                    Ok(false) => {}
                    Err(e) => problems.push(Problem::from_error("PodDisruptionBudget", &name, e)),
                }
            }
        }
    }
    if config_ok
        && let Err(e) =
            collect_config_maps(client, stores, recorder, listener, desired, &current).await
    {
        problems.push(Problem::from_error("ConfigMap", &name, e));
    }
    Applied {
        deployments: current,
        problems,
    }
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

/// Spool claims of ordinals past `spec.replicas` whose Deployment is gone (kept by
/// `whenScaled: Retain`, or not deleted yet), by name; an ordinal still draining is not
/// listed.
pub fn retained_claims(stores: &Stores, listener: &EsmtpListener) -> Vec<String> {
    let live: Vec<u32> = stores
        .deployments
        .state()
        .iter()
        .filter(|d| surplus(&***d, listener))
        .filter_map(|d| ordinal_of(&**d))
        .collect();
    let mut names: Vec<String> = stores
        .claims
        .state()
        .iter()
        .filter(|c| surplus(&***c, listener))
        .filter(|c| ordinal_of(&***c).is_some_and(|o| !live.contains(&o)))
        .map(|c| c.name_any())
        .collect();
    names.sort();
    names
}

/// The ConfigMap a Deployment's pods mount.
fn mounted_config(d: &Deployment) -> Option<&str> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.config_map.as_ref().map(|c| c.name.as_str()))
}

/// Deletes this listener's ConfigMaps that neither the desired config nor any of its
/// Deployments (current or surplus) mounts: the configs of finished rollouts.
async fn collect_config_maps(
    client: &Client,
    stores: &Stores,
    recorder: &Recorder,
    listener: &EsmtpListener,
    desired: &Desired,
    current: &[Option<Deployment>],
) -> Result<(), kube::Error> {
    let ns = listener.namespace().unwrap_or_default();
    let name = listener.name_any();
    let mut keep: Vec<String> = vec![desired.config_map.metadata.name.clone().unwrap_or_default()];
    keep.extend(
        current
            .iter()
            .flatten()
            .filter_map(|d| mounted_config(d).map(String::from)),
    );
    keep.extend(
        stores
            .deployments
            .state_filter(|d| {
                d.metadata.namespace.as_deref() == Some(ns.as_str())
                    && d.labels().get(LISTENER_LABEL) == Some(&name)
            })
            .iter()
            .filter_map(|d| mounted_config(d).map(String::from)),
    );
    let old: Vec<_> = stores.config_maps.state_filter(|cm: &ConfigMap| {
        cm.metadata.namespace.as_deref() == Some(ns.as_str())
            && cm.labels().get(LISTENER_LABEL) == Some(&name)
            && cm.metadata.deletion_timestamp.is_none()
            && belongs(cm, listener, false)
            && !keep.iter().any(|k| Some(k) == cm.metadata.name.as_ref())
    });
    for cm in old {
        if delete::<ConfigMap>(client, &ns, &cm.name_any()).await? {
            deleted(recorder, listener, "ConfigMap", &cm.name_any()).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};

    use super::*;
    use crate::build::{labels, owner_ref, tests::listener};

    #[test]
    fn only_owned_objects_are_applied_over_and_claims_also_by_label() {
        let l = listener("listeners: [{listen: '0:25'}]");
        let mut svc = Service::default();
        assert!(!belongs(&svc, &l, true), "a bare object is not ours");
        svc.metadata.labels = Some(labels("mx"));
        assert!(
            !belongs(&svc, &l, false),
            "labels do not make a Service ours"
        );
        assert!(
            belongs(&svc, &l, true),
            "they do make a retained claim ours"
        );
        svc.metadata.owner_references = Some(vec![owner_ref(&l)]);
        assert!(belongs(&svc, &l, false));
        let mut other = l.clone();
        other.metadata.uid = Some("another".into());
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.labels = Some(labels("mx"));
        claim.metadata.owner_references = Some(vec![owner_ref(&other)]);
        assert!(!belongs(&claim, &l, true), "another owner's claim");
        claim.metadata.labels = Some(BTreeMap::new());
        claim.metadata.owner_references = None;
        assert!(!belongs(&claim, &l, true));
    }
}

//! The pure half of reconcile: an `EsmtpListener` and its validated plan in, the
//! Kubernetes objects that realise it out. Nothing here talks to the API server.

pub mod configmap;
pub mod deployment;
pub mod pdb;
pub mod pvc;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, PersistentVolumeClaim, Service},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Resource, ResourceExt};

use crate::{crd::EsmtpListener, validate::Plan};

/// Label naming the `EsmtpListener` an object belongs to.
pub const LISTENER_LABEL: &str = "postern.io/listener";
/// Label holding a replica's ordinal on its Deployment, pod and spool claim.
pub const REPLICA_LABEL: &str = "postern.io/replica";
/// The standard `managed-by` label, also the operator's watch selector.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on everything the operator makes.
pub const MANAGER: &str = "postern-operator";
/// Pod-template annotation with the hash of the rendered config; a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "postern.io/config-hash";
/// Deployment annotation with the hash of everything the operator sets on it: the
/// rollout compares it to tell an updated ordinal from one still to update.
pub const SPEC_HASH_ANNOTATION: &str = "postern.io/spec-hash";

/// What the operator fills in where a spec leaves a pod setting open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// The listener image when `spec.image` is unset (`--listener-image`).
    pub image: String,
    /// The pods' `fsGroup` when `spec.podSecurityContext` is unset (`--listener-fs-group`);
    /// `None` leaves it to the platform (OpenShift's restricted-v2 assigns one).
    pub fs_group: Option<i64>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            image: crate::crd::DEFAULT_IMAGE.into(),
            fs_group: Some(deployment::LISTENER_UID),
        }
    }
}

/// Everything one `EsmtpListener` should own.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The rendered listener configuration.
    pub config_map: ConfigMap,
    /// SHA-256 (hex) of the rendered configuration file.
    pub config_hash: String,
    /// One Deployment per replica ordinal.
    pub deployments: Vec<Deployment>,
    /// One spool claim per replica ordinal.
    pub claims: Vec<PersistentVolumeClaim>,
    /// The Service over all replicas.
    pub service: Service,
    /// The disruption budget, when there is more than one replica.
    pub pdb: Option<PodDisruptionBudget>,
}

/// Builds every object for `listener` from its validated `plan`.
pub fn build(listener: &EsmtpListener, plan: &Plan, defaults: &Defaults) -> Desired {
    let (config_map, config_hash) = configmap::build(listener, plan);
    let replicas = u32::try_from(listener.spec.replicas).unwrap_or(0);
    Desired {
        deployments: (0..replicas)
            .map(|i| deployment::build(listener, plan, defaults, i, &config_hash))
            .collect(),
        claims: (0..replicas).map(|i| pvc::build(listener, i)).collect(),
        service: service::build(listener, plan),
        pdb: pdb::build(listener),
        config_map,
        config_hash,
    }
}

/// Name of the immutable ConfigMap holding the rendered config with SHA-256 `hash`:
/// content-addressed, so a pod always mounts the config its Deployment names.
pub fn config_map_name(listener: &str, hash: &str) -> String {
    format!("{listener}-config-{}", &hash[..hash.len().min(10)])
}

/// SHA-256 of `text`, in hex.
pub fn sha256_hex(text: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Name of replica `ordinal`'s Deployment.
pub fn deployment_name(listener: &str, ordinal: u32) -> String {
    format!("{listener}-{ordinal}")
}

/// Name of replica `ordinal`'s spool claim.
pub fn claim_name(listener: &str, ordinal: u32) -> String {
    format!("{listener}-spool-{ordinal}")
}

/// Labels shared by everything made for `listener`.
pub fn labels(listener: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "postern-listener".into()),
        ("app.kubernetes.io/instance".into(), listener.into()),
        (MANAGED_BY_LABEL.into(), MANAGER.into()),
        (LISTENER_LABEL.into(), listener.into()),
    ])
}

/// Labels of one replica's objects.
pub fn replica_labels(listener: &str, ordinal: u32) -> BTreeMap<String, String> {
    let mut labels = labels(listener);
    labels.insert(REPLICA_LABEL.into(), ordinal.to_string());
    labels
}

/// The controller owner reference to `listener`, so the garbage collector removes children.
pub fn owner_ref(listener: &EsmtpListener) -> OwnerReference {
    listener
        .controller_owner_ref(&())
        .expect("an EsmtpListener from the API server has a name and uid")
}

/// Metadata of a child object named `name` with `labels`, owned by `listener` when `owned`.
pub(crate) fn child_meta(
    listener: &EsmtpListener,
    name: String,
    labels: BTreeMap<String, String>,
    owned: bool,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: listener.namespace(),
        labels: Some(labels),
        owner_references: owned.then(|| vec![owner_ref(listener)]),
        ..ObjectMeta::default()
    }
}

/// The replica ordinal of a child, from its [`REPLICA_LABEL`].
pub fn ordinal_of<K: Resource>(obj: &K) -> Option<u32> {
    obj.meta().labels.as_ref()?.get(REPLICA_LABEL)?.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use postern_config::ListenerConfig;

    use super::*;
    use crate::{
        crd::EsmtpListenerSpec,
        validate::{SecretLookup, validate},
    };

    /// Builds with the operator's defaults.
    pub(crate) fn build(l: &EsmtpListener, plan: &Plan) -> Desired {
        super::build(l, plan, &Defaults::default())
    }

    /// A listener named `mx` in `mail`, as the API server would return it.
    pub(crate) fn listener(yaml: &str) -> EsmtpListener {
        let spec: EsmtpListenerSpec = serde_yaml::from_str(yaml).expect("test spec parses");
        let mut l = EsmtpListener::new("mx", spec);
        l.metadata.namespace = Some("mail".into());
        l.metadata.uid = Some("0b0b0b0b-uid".into());
        l.metadata.generation = Some(3);
        l
    }

    /// The plan of a listener whose referenced Secrets all exist with the keys asked for.
    pub(crate) fn plan(l: &EsmtpListener) -> Plan {
        let lookup = SecretLookup::all_present(&l.spec);
        validate(l, &lookup).expect("test listener validates")
    }

    pub(crate) const MX: &str = "
listeners:
  - listen: 0.0.0.0:25
    hostname: mx.example.com
    relayHosts: [10.0.0.0/8]
    tlsCertificate: {secretName: mx-tls}
    tlsPrivateKey: {secretName: mx-tls}
  - listen: 0.0.0.0:2026
replicas: 2
";

    #[test]
    fn builds_one_deployment_and_claim_per_replica() {
        let l = listener(MX);
        let d = build(&l, &plan(&l));
        let names: Vec<_> = d
            .deployments
            .iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["mx-0", "mx-1"]);
        let claims: Vec<_> = d
            .claims
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(claims, ["mx-spool-0", "mx-spool-1"]);
        assert!(d.pdb.is_some());
        let cm_name = d.config_map.metadata.name.clone().unwrap();
        assert_eq!(cm_name, format!("mx-config-{}", &d.config_hash[..10]));
        assert_eq!(d.config_map.immutable, Some(true));
    }

    #[test]
    fn every_child_is_owned_and_labelled() {
        let l = listener(MX);
        let d = build(&l, &plan(&l));
        let metas = [
            &d.config_map.metadata,
            &d.deployments[0].metadata,
            &d.service.metadata,
            &d.pdb.as_ref().unwrap().metadata,
        ];
        for meta in metas {
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.controller),
                ("EsmtpListener", "mx", Some(true))
            );
            assert_eq!(meta.namespace.as_deref(), Some("mail"));
            assert_eq!(meta.labels.as_ref().unwrap()[LISTENER_LABEL], "mx");
        }
        assert_eq!(ordinal_of(&d.deployments[1]), Some(1));
    }

    #[test]
    fn zero_replicas_build_no_pods_and_no_budget() {
        let l = listener("listeners: [{listen: '0:25'}]\nreplicas: 0");
        let d = build(&l, &plan(&l));
        assert!(d.deployments.is_empty() && d.claims.is_empty() && d.pdb.is_none());
    }

    #[test]
    fn default_listener_config_is_complete() {
        // The spec's listener type is the listener's own: defaults match the file's.
        let l = listener("listeners: [{}]");
        assert_eq!(l.spec.listeners[0], ListenerConfig::default());
    }
}

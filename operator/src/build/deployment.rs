//! One Deployment per replica ordinal: `replicas: 1`, `Recreate`, its own spool claim,
//! so a ReadWriteOnce spool is never shared by two live pods. The Deployment carries
//! [`SPEC_HASH_ANNOTATION`], which the ordered rollout compares.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
            SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use crate::{
    build::{
        CONFIG_HASH_ANNOTATION, Defaults, LISTENER_LABEL, REPLICA_LABEL, SPEC_HASH_ANNOTATION,
        child_meta, claim_name, config_map_name,
        configmap::{CONFIG_KEY, CONFIG_PATH, SECRETS_DIR, SHUTDOWN_GRACE_SECS, SPOOL_DIR},
        deployment_name, replica_labels, sha256_hex,
    },
    crd::{EsmtpListener, PullPolicy},
    scale_down::SERVING_LABEL,
    validate::{ADMIN_PORT, Plan, secret_refs},
};

/// The listener's binary in the image.
pub const LISTENER_COMMAND: &str = "postern-listener";
/// The user and group the listener runs as.
pub const LISTENER_UID: i64 = 65532;
/// Name of the listener container.
pub const CONTAINER_NAME: &str = "listener";

/// The topology key of the default spread: one node per replica where there are enough.
pub const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Resources of the listener container when `spec.resources` is unset.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("100m".into())),
            ("memory".into(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity("512Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The pods' security context when `spec.podSecurityContext` is unset: non-root (the
/// image's numeric user), `RuntimeDefault` seccomp and no fixed user or group, which
/// OpenShift's restricted-v2 also admits; `fs_group` only when the operator sets one.
pub fn default_pod_security_context(fs_group: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        fs_group,
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Replica `ordinal`'s Deployment; `config_hash` names the config it mounts and goes on
/// the pod template, so a new config rolls it.
pub fn build(
    listener: &EsmtpListener,
    plan: &Plan,
    defaults: &Defaults,
    ordinal: u32,
    config_hash: &str,
) -> Deployment {
    let name = listener.metadata.name.as_deref().unwrap_or_default();
    let spec = &listener.spec;
    let labels = replica_labels(name, ordinal);
    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(labels.clone());
    // In the Service from the start; scale-down flips it on the pod, not the template.
    pod_labels.insert(SERVING_LABEL.into(), "true".into());
    let selector = BTreeMap::from([
        (LISTENER_LABEL.to_string(), name.to_string()),
        (REPLICA_LABEL.to_string(), ordinal.to_string()),
    ]);
    let mut annotations = spec.pod_annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());

    let secret_names: BTreeSet<String> = secret_refs(spec).into_iter().map(|r| r.name).collect();
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(name, config_hash),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "spool".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                    "64Mi".into(),
                )),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_PATH.into(),
            sub_path: Some(CONFIG_KEY.into()),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "spool".into(),
            mount_path: SPOOL_DIR.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    // Whole-Secret mounts (never subPath): a renewed certificate reaches the running
    // pod through the volume, without a rollout.
    for (i, secret) in secret_names.iter().enumerate() {
        let volume = format!("secret-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{SECRETS_DIR}/{secret}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    volumes.extend(spec.volumes.iter().cloned());
    mounts.extend(spec.volume_mounts.iter().cloned());

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let mut ports: Vec<ContainerPort> = plan
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| ContainerPort {
            name: Some(format!("smtp-{i}")),
            container_port: i32::from(p.pod_port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        })
        .collect();
    ports.push(ContainerPort {
        name: Some("admin".into()),
        container_port: i32::from(ADMIN_PORT),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    });

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(listener.image(&defaults.image).into()),
        image_pull_policy: spec.image_pull_policy.map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .into()
        }),
        command: Some(vec![
            LISTENER_COMMAND.into(),
            "--config".into(),
            CONFIG_PATH.into(),
        ]),
        ports: Some(ports),
        liveness_probe: Some(probe("/livez", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        service_account_name: spec.service_account_name.clone(),
        automount_service_account_token: Some(plan.vault_kubernetes_auth),
        security_context: Some(
            spec.pod_security_context
                .clone()
                .unwrap_or_else(|| default_pod_security_context(defaults.fs_group)),
        ),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        priority_class_name: spec.priority_class_name.clone(),
        topology_spread_constraints: Some(
            spec.topology_spread_constraints
                .clone()
                .unwrap_or_else(|| default_spread(name)),
        )
        .filter(|c| !c.is_empty()),
        termination_grace_period_seconds: Some(
            i64::try_from(SHUTDOWN_GRACE_SECS).unwrap_or(30) + 10,
        ),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        ..PodSpec::default()
    };

    let mut deployment = Deployment {
        metadata: child_meta(
            listener,
            deployment_name(name, ordinal),
            labels.clone(),
            true,
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            progress_deadline_seconds: Some(spec.rollout.progress_deadline_seconds),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    let hash = spec_hash(&deployment);
    deployment.metadata.annotations = Some(BTreeMap::from([(SPEC_HASH_ANNOTATION.into(), hash)]));
    deployment
}

/// The hash of what the operator sets on a Deployment (its labels and spec).
pub fn spec_hash(d: &Deployment) -> String {
    let text = serde_json::to_vec(&(&d.metadata.labels, &d.spec)).expect("a Deployment serializes");
    sha256_hex(&text)[..16].to_string()
}

/// The hash a Deployment carries in [`SPEC_HASH_ANNOTATION`], if any.
pub fn recorded_hash(d: &Deployment) -> Option<&str> {
    d.metadata
        .annotations
        .as_ref()?
        .get(SPEC_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Spread the listener's pods across nodes, preferably (`ScheduleAnyway`), so a
/// one-node cluster still runs every replica.
pub fn default_spread(listener: &str) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: SPREAD_TOPOLOGY_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                LISTENER_LABEL.to_string(),
                listener.to_string(),
            )])),
            match_expressions: None,
        }),
        ..TopologySpreadConstraint::default()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{self as t, MX, listener, plan};

    fn build(l: &EsmtpListener, plan: &Plan, ordinal: u32, hash: &str) -> Deployment {
        super::build(l, plan, &Defaults::default(), ordinal, hash)
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn one_recreated_replica_with_its_own_claim() {
        let l = listener(MX);
        let d = build(&l, &plan(&l), 1, "h");
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("Recreate")
        );
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[REPLICA_LABEL],
            "1"
        );
        let spool = pod(&d)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "spool")
            .unwrap();
        assert_eq!(
            spool.persistent_volume_claim.as_ref().unwrap().claim_name,
            "mx-spool-1"
        );
    }

    #[test]
    fn the_container_is_locked_down_and_probed() {
        let l = listener(MX);
        let d = build(&l, &plan(&l), 0, "h");
        let c = &pod(&d).containers[0];
        assert_eq!(
            c.command.as_ref().unwrap(),
            &["postern-listener", "--config", "/etc/postern/config.yaml"]
        );
        assert_eq!(c.image.as_deref(), Some(crate::crd::DEFAULT_IMAGE));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        let psc = pod(&d).security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.fs_group, Some(LISTENER_UID));
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, [10025, 2026, 8025]);
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            (live.path.as_deref(), ready.path.as_deref()),
            (Some("/livez"), Some("/readyz"))
        );
        assert_eq!(pod(&d).automount_service_account_token, Some(false));
    }

    #[test]
    fn tls_secrets_are_whole_volume_mounts_and_not_hashed() {
        let l = listener(MX);
        let d = build(&l, &plan(&l), 0, "h");
        let secret = pod(&d)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find_map(|v| v.secret.as_ref())
            .unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("mx-tls"));
        let mount = pod(&d).containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/etc/postern/secrets/mx-tls")
            .unwrap();
        assert_eq!(mount.sub_path, None, "subPath mounts never see renewals");
        let annotations = d
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(
            annotations.len(),
            1,
            "only the config hash: {annotations:?}"
        );
        let config = pod(&d)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find_map(|v| v.config_map.as_ref())
            .unwrap();
        assert_eq!(config.name, "mx-config-h");
    }

    #[test]
    fn a_config_change_changes_the_pod_template_and_a_replica_change_does_not() {
        let a = listener(MX);
        let template = |l: &EsmtpListener| {
            let d = t::build(l, &plan(l));
            serde_json::to_value(&d.deployments[0].spec.as_ref().unwrap().template).unwrap()
        };
        let mut b = a.clone();
        b.spec.listeners[0].max_recipients_per_message = 7;
        assert_ne!(template(&a), template(&b));
        let mut c = a.clone();
        c.spec.replicas = 3;
        assert_eq!(template(&a), template(&c));
    }

    #[test]
    fn pod_settings_are_passed_through() {
        let l = listener(
            "listeners: [{listen: '0:25'}]
image: registry.example/postern:dev
imagePullPolicy: Never
podAnnotations: {a: b}
nodeSelector: {disk: ssd}
tolerations: [{key: mail, operator: Exists}]
serviceAccountName: mx
resources: {limits: {memory: 256Mi}}",
        );
        let d = build(&l, &plan(&l), 0, "h");
        let p = pod(&d);
        assert_eq!(
            p.containers[0].image.as_deref(),
            Some("registry.example/postern:dev")
        );
        assert_eq!(p.containers[0].image_pull_policy.as_deref(), Some("Never"));
        assert_eq!(p.node_selector.as_ref().unwrap()["disk"], "ssd");
        assert_eq!(p.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(p.service_account_name.as_deref(), Some("mx"));
        assert!(p.containers[0].resources.is_some());
        let annotations = d
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(annotations["a"], "b");
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "h");
    }

    #[test]
    fn defaults_spread_across_nodes_request_resources_and_fix_no_user() {
        let l = listener(MX);
        let d = build(&l, &plan(&l), 0, "h");
        let p = pod(&d);
        let spread = p.topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread[0].topology_key, SPREAD_TOPOLOGY_KEY);
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
        assert!(
            p.containers[0]
                .resources
                .as_ref()
                .unwrap()
                .requests
                .is_some()
        );
        let sc = p.security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_group), (None, None));
        // As OpenShift's restricted-v2 wants it: no fixed ids at all.
        let openshift = Defaults {
            fs_group: None,
            ..Defaults::default()
        };
        let d = super::build(&l, &plan(&l), &openshift, 0, "h");
        let sc = pod(&d).security_context.clone().unwrap();
        assert_eq!(
            (sc.run_as_user, sc.run_as_group, sc.fs_group),
            (None, None, None)
        );
        assert_eq!(sc.run_as_non_root, Some(true));
        let c = pod(&d).containers[0].security_context.clone().unwrap();
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.run_as_user, None);
        // `[]` turns the default spread off.
        let none = listener("listeners: [{listen: '0:25'}]\ntopologySpreadConstraints: []");
        assert_eq!(
            pod(&build(&none, &plan(&none), 0, "h")).topology_spread_constraints,
            None
        );
    }

    #[test]
    fn the_spec_hash_follows_the_deployment_and_the_image_comes_from_the_defaults() {
        let l = listener(MX);
        let mirror = Defaults {
            image: "mirror.example/postern:9".into(),
            ..Defaults::default()
        };
        let a = super::build(&l, &plan(&l), &Defaults::default(), 0, "h");
        let b = super::build(&l, &plan(&l), &mirror, 0, "h");
        assert_eq!(
            pod(&b).containers[0].image.as_deref(),
            Some("mirror.example/postern:9")
        );
        assert_ne!(recorded_hash(&a), recorded_hash(&b));
        assert_eq!(recorded_hash(&a), Some(spec_hash(&a).as_str()));
        let again = super::build(&l, &plan(&l), &Defaults::default(), 0, "h");
        assert_eq!(recorded_hash(&a), recorded_hash(&again));
        assert_eq!(
            d_spec(&a).progress_deadline_seconds,
            Some(600),
            "the rollout's default deadline"
        );
    }

    fn d_spec(d: &Deployment) -> &DeploymentSpec {
        d.spec.as_ref().unwrap()
    }
}

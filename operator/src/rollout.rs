//! Ordered rollouts, purely: which replica Deployments may be applied now, how far the
//! rollout is, and whether it is stuck.
//!
//! Ordinal N+1 is applied only when every ordinal up to N runs the desired Deployment
//! (its [`SPEC_HASH_ANNOTATION`](crate::build::SPEC_HASH_ANNOTATION) matches) and is
//! Available, so a config or image change takes one replica down at a time, in order.

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};

use crate::{
    build::deployment::recorded_hash,
    status::{Observed, deployment_current},
};

/// Whether `current` is `desired` (by the operator's hash) and has rolled out and is ready.
pub fn updated(desired: &Deployment, current: &Deployment) -> bool {
    recorded_hash(desired).is_some()
        && recorded_hash(desired) == recorded_hash(current)
        && deployment_current(current)
}

/// For each desired ordinal, whether it may be applied now: ordinal `i` may when every
/// ordinal below it is [`updated`]. Applying an ordinal that already is desired is a
/// no-op (and undoes hand edits).
pub fn allowed(desired: &[Deployment], current: &[Option<Deployment>]) -> Vec<bool> {
    let mut open = true;
    desired
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let may = open;
            let done = current
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|c| updated(d, c));
            open = open && done;
            may
        })
        .collect()
}

/// How far the rollout is: pods that exist, and ordinals that are [`updated`].
pub fn observe(desired: &[Deployment], current: &[Option<Deployment>]) -> Observed {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Observed {
        desired: count(desired.len()),
        replicas: current
            .iter()
            .flatten()
            .map(|d| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum(),
        ready: count(
            desired
                .iter()
                .zip(current)
                .filter(|(d, c)| c.as_ref().is_some_and(|c| updated(d, c)))
                .count(),
        ),
    }
}

/// A Deployment that gave up: `Progressing=False` (e.g. `ProgressDeadlineExceeded`),
/// as `(reason, message)`.
pub fn stuck(d: &Deployment) -> Option<(String, String)> {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.as_ref()?;
    if status.observed_generation.unwrap_or(0) < generation {
        return None;
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.status == "False")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| "NotProgressing".into()),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Container states that do not heal by waiting: a crash loop, an image that cannot be
/// pulled, a container that cannot be created.
pub const FAILING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A pod whose container is failing, as `(reason, message)`.
pub fn failing(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            FAILING_REASONS.contains(&reason).then(|| {
                let last = c
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| {
                        format!(
                            "; last exit code {}{}",
                            t.exit_code,
                            t.reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                (
                    reason.to_string(),
                    format!(
                        "pod {name} container {}: {reason}{}; {} restarts{last}",
                        c.name,
                        waiting
                            .message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default(),
                        c.restart_count
                    ),
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::{
            apps::v1::{DeploymentCondition, DeploymentStatus},
            core::v1::{
                ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
                PodStatus,
            },
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;
    use crate::build::SPEC_HASH_ANNOTATION;

    fn deployment(hash: &str, ready: bool) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                annotations: Some(BTreeMap::from([(SPEC_HASH_ANNOTATION.into(), hash.into())])),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(1),
                updated_replicas: Some(1),
                ready_replicas: Some(i32::from(ready)),
                ..DeploymentStatus::default()
            }),
        }
    }

    #[test]
    fn one_ordinal_at_a_time_in_order() {
        let desired = vec![deployment("new", false); 3];
        // Nothing updated yet: only ordinal 0 may change.
        let current = vec![Some(deployment("old", true)); 3];
        assert_eq!(allowed(&desired, &current), [true, false, false]);
        // 0 updated but not yet ready: still only 0.
        let current = vec![
            Some(deployment("new", false)),
            Some(deployment("old", true)),
            Some(deployment("old", true)),
        ];
        assert_eq!(allowed(&desired, &current), [true, false, false]);
        assert_eq!(observe(&desired, &current).ready, 0);
        // 0 updated and ready: 1 may go.
        let current = vec![
            Some(deployment("new", true)),
            Some(deployment("old", true)),
            Some(deployment("old", true)),
        ];
        assert_eq!(allowed(&desired, &current), [true, true, false]);
        assert_eq!(observe(&desired, &current).ready, 1);
        // Scale-up: a missing ordinal waits for the ones before it too.
        let current = vec![Some(deployment("new", true)), None, None];
        assert_eq!(allowed(&desired, &current), [true, true, false]);
        let all = vec![Some(deployment("new", true)); 3];
        assert_eq!(allowed(&desired, &all), [true, true, true]);
        assert!(observe(&desired, &all).complete());
    }

    #[test]
    fn a_progress_deadline_is_reported_with_the_deployments_reason() {
        let mut d = deployment("h", false);
        assert_eq!(stuck(&d), None);
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"mx-1-abc\" has timed out progressing.".into()),
            ..DeploymentCondition::default()
        }]);
        let (reason, message) = stuck(&d).unwrap();
        assert_eq!(reason, "ProgressDeadlineExceeded");
        assert!(message.contains("timed out"));
    }

    #[test]
    fn a_crash_loop_names_the_pod_and_the_exit() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("mx-0-abc".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "listener".into(),
                    restart_count: 4,
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off 40s".into()),
                        }),
                        ..ContainerState::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 78,
                            reason: Some("Error".into()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        };
        let (reason, message) = failing(&pod).unwrap();
        assert_eq!(reason, "CrashLoopBackOff");
        assert_eq!(
            message,
            "pod mx-0-abc container listener: CrashLoopBackOff: back-off 40s; 4 restarts; last exit code 78 (Error)"
        );
    }
}

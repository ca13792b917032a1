//! `status` from what reconcile saw: replica counts and the `Ready`, `Reconciling` and
//! `Stalled` conditions, with `lastTransitionTime` moving only on a real change.

use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::{crd::EsmtpListenerStatus, validate::Stall};

/// All replicas serve the current generation.
pub const READY: &str = "Ready";
/// A rollout is under way.
pub const RECONCILING: &str = "Reconciling";
/// The spec cannot be realised until it changes.
pub const STALLED: &str = "Stalled";

/// What the replica Deployments say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Desired replicas.
    pub desired: i32,
    /// Pods that exist, old or new.
    pub replicas: i32,
    /// Replicas that are ready and run the current pod template.
    pub ready: i32,
}

impl Observed {
    /// Whether every desired replica is current and ready, and nothing else runs.
    pub const fn complete(&self) -> bool {
        self.ready == self.desired && self.replicas == self.desired
    }
}

/// `ready/desired` for the `Ready` printer column.
pub fn ready_text(observed: Observed) -> String {
    format!("{}/{}", observed.ready, observed.desired)
}

/// Whether a replica's Deployment has rolled out its current template and is ready.
pub fn deployment_current(d: &Deployment) -> bool {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(s) = &d.status else { return false };
    s.observed_generation.unwrap_or(0) >= generation
        && s.updated_replicas.unwrap_or(0) == 1
        && s.ready_replicas.unwrap_or(0) == 1
        && s.replicas.unwrap_or(0) == 1
}

/// Sums up the replica Deployments (as returned by the apply).
pub fn observe(desired: i32, deployments: &[Deployment]) -> Observed {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Observed {
        desired,
        replicas: deployments
            .iter()
            .map(|d| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum(),
        ready: count(deployments.iter().filter(|d| deployment_current(d)).count()),
    }
}

/// One condition to set; see [`set_conditions`].
struct Want<'a> {
    type_: &'static str,
    status: bool,
    reason: &'a str,
    message: String,
}

/// The conditions after applying `wants` to `old`: a condition's `lastTransitionTime`
/// is kept unless its status flips.
fn set_conditions(
    old: &[Condition],
    wants: Vec<Want<'_>>,
    generation: i64,
    now: &Time,
) -> Vec<Condition> {
    wants
        .into_iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let since = old
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.into(),
                status: status.into(),
                reason: w.reason.into(),
                message: w.message,
                observed_generation: Some(generation),
                last_transition_time: since,
            }
        })
        .collect()
}

/// The current time as a Kubernetes timestamp.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Status after a successful apply.
pub fn progressing(
    old: Option<&EsmtpListenerStatus>,
    generation: i64,
    observed: Observed,
    listen: String,
    config_hash: String,
    now: &Time,
) -> EsmtpListenerStatus {
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let done = observed.complete();
    let summary = format!(
        "{}/{} replicas ready with generation {generation}",
        observed.ready, observed.desired
    );
    let (ready_reason, reconciling_reason) = if done {
        ("Available", "Reconciled")
    } else {
        ("RollingOut", "RollingOut")
    };
    EsmtpListenerStatus {
        observed_generation: Some(generation),
        replicas: observed.replicas,
        ready_replicas: observed.ready,
        listen: Some(listen),
        config_hash: Some(config_hash),
        ready: Some(ready_text(observed)),
        selector: old.and_then(|s| s.selector.clone()),
        image: old.and_then(|s| s.image.clone()),
        retained_claims: old.map(|s| s.retained_claims.clone()).unwrap_or_default(),
        conditions: set_conditions(
            old_conditions,
            vec![
                Want {
                    type_: READY,
                    status: done,
                    reason: ready_reason,
                    message: summary.clone(),
                },
                Want {
                    type_: RECONCILING,
                    status: !done,
                    reason: reconciling_reason,
                    message: if done {
                        "nothing to roll out".into()
                    } else {
                        format!("rolling out: {summary}")
                    },
                },
                Want {
                    type_: STALLED,
                    status: false,
                    reason: "Reconciled",
                    message: "the spec is realisable".into(),
                },
            ],
            generation,
            now,
        ),
    }
}

/// `status` while replicas past `spec.replicas` drain before they go: `Reconciling=True`
/// with reason `Draining` and `message` (which ordinals wait, and for what).
pub fn draining(
    status: &mut EsmtpListenerStatus,
    old: Option<&EsmtpListenerStatus>,
    message: String,
    now: &Time,
) {
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = status.observed_generation.unwrap_or_default();
    let updated = set_conditions(
        old_conditions,
        vec![Want {
            type_: RECONCILING,
            status: true,
            reason: "Draining",
            message,
        }],
        generation,
        now,
    );
    status.conditions.retain(|c| c.type_ != RECONCILING);
    status.conditions.extend(updated);
    status.conditions.sort_by_key(|c| match c.type_.as_str() {
        READY => 0,
        RECONCILING => 1,
        _ => 2,
    });
}

/// Status when the spec cannot be realised; running pods (if any) keep their old config.
pub fn stalled(
    old: Option<&EsmtpListenerStatus>,
    generation: i64,
    stall: &Stall,
    now: &Time,
) -> EsmtpListenerStatus {
    let base = old.cloned().unwrap_or_default();
    EsmtpListenerStatus {
        observed_generation: Some(generation),
        conditions: set_conditions(
            &base.conditions,
            vec![
                Want {
                    type_: READY,
                    status: false,
                    reason: stall.reason,
                    message: stall.message.clone(),
                },
                Want {
                    type_: RECONCILING,
                    status: false,
                    reason: "Stalled",
                    message: "waiting for the spec (or what it names) to change".into(),
                },
                Want {
                    type_: STALLED,
                    status: true,
                    reason: stall.reason,
                    message: stall.message.clone(),
                },
            ],
            generation,
            now,
        ),
        ..base
    }
}

/// Status after a failure worth retrying: `Reconciling=True` says what failed and that
/// it is retried; `Ready` and `Stalled` stay as they were.
pub fn retrying(
    old: Option<&EsmtpListenerStatus>,
    generation: i64,
    message: String,
    now: &Time,
) -> EsmtpListenerStatus {
    let mut base = old.cloned().unwrap_or_default();
    let updated = set_conditions(
        &base.conditions,
        vec![Want {
            type_: RECONCILING,
            status: true,
            reason: "RetryingAfterError",
            message,
        }],
        generation,
        now,
    );
    base.conditions.retain(|c| c.type_ != RECONCILING);
    base.conditions.extend(updated);
    base
}

/// The condition of `type_` in `status`, if any.
pub fn condition<'a>(
    status: Option<&'a EsmtpListenerStatus>,
    type_: &str,
) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::apps::v1::DeploymentStatus, apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn deployment(
        generation: i64,
        observed: i64,
        updated: i32,
        ready: i32,
        replicas: i32,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                replicas: Some(replicas),
                ..DeploymentStatus::default()
            }),
        }
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn get<'a>(s: &'a EsmtpListenerStatus, t: &str) -> &'a Condition {
        condition(Some(s), t).unwrap()
    }

    #[test]
    fn a_replica_is_current_only_when_its_new_pod_alone_is_ready() {
        assert!(deployment_current(&deployment(2, 2, 1, 1, 1)));
        assert!(
            !deployment_current(&deployment(2, 1, 1, 1, 1)),
            "old generation"
        );
        assert!(
            !deployment_current(&deployment(2, 2, 0, 1, 1)),
            "old pod ready"
        );
        assert!(
            !deployment_current(&deployment(2, 2, 1, 1, 2)),
            "old pod still there"
        );
        let o = observe(2, &[deployment(1, 1, 1, 1, 1), deployment(1, 1, 1, 0, 1)]);
        assert_eq!(
            o,
            Observed {
                desired: 2,
                replicas: 2,
                ready: 1
            }
        );
        assert!(!o.complete());
    }

    #[test]
    fn ready_when_complete_and_reconciling_while_rolling() {
        let rolling = Observed {
            desired: 2,
            replicas: 2,
            ready: 1,
        };
        let s = progressing(None, 4, rolling, "25".into(), "h".into(), &at(100));
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, RECONCILING).status, "True");
        assert_eq!(get(&s, STALLED).status, "False");
        assert_eq!(get(&s, READY).observed_generation, Some(4));
        assert_eq!(
            get(&s, READY).message,
            "1/2 replicas ready with generation 4"
        );
        let done = Observed {
            desired: 2,
            replicas: 2,
            ready: 2,
        };
        let s2 = progressing(Some(&s), 4, done, "25".into(), "h".into(), &at(200));
        assert_eq!(
            (
                get(&s2, READY).status.as_str(),
                get(&s2, READY).reason.as_str()
            ),
            ("True", "Available")
        );
        assert_eq!(get(&s2, RECONCILING).status, "False");
        assert_eq!(s2.ready_replicas, 2);
        assert_eq!(s2.observed_generation, Some(4));
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let done = Observed {
            desired: 1,
            replicas: 1,
            ready: 1,
        };
        let s1 = progressing(None, 1, done, "25".into(), "h".into(), &at(100));
        let s2 = progressing(Some(&s1), 2, done, "25".into(), "h2".into(), &at(200));
        assert_eq!(get(&s2, READY).last_transition_time, at(100));
        assert_eq!(get(&s2, READY).observed_generation, Some(2));
        let stall = Stall {
            reason: "SecretNotFound",
            message: "Secret 'x' not found".into(),
        };
        let s3 = stalled(Some(&s2), 3, &stall, &at(300));
        assert_eq!(get(&s3, READY).last_transition_time, at(300));
        assert_eq!(get(&s3, STALLED).last_transition_time, at(300));
        assert_eq!(
            get(&s3, RECONCILING).last_transition_time,
            at(100),
            "stayed False"
        );
        let s4 = stalled(Some(&s3), 3, &stall, &at(400));
        assert_eq!(
            s4, s3,
            "a repeated stall changes nothing, so nothing is written"
        );
    }

    #[test]
    fn a_retry_says_why_and_keeps_ready() {
        let done = Observed {
            desired: 1,
            replicas: 1,
            ready: 1,
        };
        let s1 = progressing(None, 1, done, "25".into(), "h".into(), &at(100));
        let s2 = retrying(
            Some(&s1),
            1,
            "Service 'mx': connection refused; retrying in 2s".into(),
            &at(200),
        );
        assert_eq!(get(&s2, READY).status, "True");
        let r = get(&s2, RECONCILING);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "RetryingAfterError")
        );
        assert!(r.message.contains("connection refused"));
        assert_eq!(s2.conditions.len(), 3);
        assert_eq!(ready_text(done), "1/1");
    }

    #[test]
    fn a_stall_says_what_to_fix_and_keeps_the_counts() {
        let done = Observed {
            desired: 1,
            replicas: 1,
            ready: 1,
        };
        let s1 = progressing(None, 1, done, "25".into(), "h".into(), &at(100));
        let stall = Stall {
            reason: "SecretNotFound",
            message: "spec.listeners[0].tlsCertificate: Secret 'mx-tls' not found".into(),
        };
        let s = stalled(Some(&s1), 2, &stall, &at(200));
        assert_eq!(get(&s, STALLED).status, "True");
        assert_eq!(get(&s, STALLED).reason, "SecretNotFound");
        assert!(get(&s, READY).message.contains("mx-tls"));
        assert_eq!(
            (s.replicas, s.ready_replicas, s.observed_generation),
            (1, 1, Some(2))
        );
    }
}

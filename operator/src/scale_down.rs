//! Scale-down, purely: what to do with the replicas past `spec.replicas` so that no
//! queued message is lost.
//!
//! A surplus ordinal goes through three steps, each decided from what the operator
//! observed (the pods, the claims, and what each surplus pod's admin endpoint said):
//!
//! 1. **Leave the Service**: its pods get [`SERVING_LABEL`]`=false` (the Service selects
//!    `true`) and the time in [`DRAIN_STARTED_ANNOTATION`].
//! 2. **Drain**: each pod out of the Service is asked to drain (`POST /drain`: new
//!    connections get 421, delivery goes on) and its queue read (`GET /queue`) until
//!    it is draining with depth 0. Past `scaleDown.drainTimeoutSeconds` the listener is
//!    `Stalled` ([`DRAIN_TIMEOUT`]), naming the ordinal and its depth, and keeps waiting.
//! 3. **Remove** its Deployment, and its claim when `storage.whenScaled` is `Delete`.
//!
//! [`FORCE_ANNOTATION`] on the `EsmtpListener` skips steps 1 and 2. An ordinal whose
//! claim was never bound cannot hold mail and is removed at once. A pod of a desired
//! ordinal that was taken out (the ordinal came back before it was gone) is restarted,
//! since a drained listener accepts no more mail; a pod from before the label existed
//! is labelled into the Service.
//!
//! The driver ([`crate::drain`]) gathers the observations, asks [`to_probe`] which pods
//! to ask, calls [`decide`] and carries out its [`Step`]s.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::ClaimPolicy;

/// Pod label the Service selects on: `"true"` from the pod template, `"false"` once the
/// operator has taken a surplus pod out of the Service.
pub const SERVING_LABEL: &str = "postern.io/serving";
/// Pod annotation with the time (RFC 3339) a surplus pod left the Service: the drain
/// deadline counts from it.
pub const DRAIN_STARTED_ANNOTATION: &str = "postern.io/drain-started";
/// `EsmtpListener` annotation that, when `"true"`, removes surplus ordinals without
/// waiting for their queues to empty.
pub const FORCE_ANNOTATION: &str = "postern.io/force-scale-down";
/// The `Stalled` reason when a surplus ordinal did not drain in time.
pub const DRAIN_TIMEOUT: &str = "DrainTimeout";

/// One listener pod, as far as scale-down cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Its name.
    pub name: String,
    /// Its replica ordinal.
    pub ordinal: u32,
    /// Its [`SERVING_LABEL`]: `None` when it has none (a pod from before the label).
    pub serving: Option<bool>,
    /// Its [`DRAIN_STARTED_ANNOTATION`], when present and readable.
    pub drain_started: Option<Timestamp>,
    /// Whether it runs and has an address its admin endpoint can be reached on.
    pub reachable: bool,
    /// Whether it is being deleted.
    pub deleting: bool,
}

/// A replica past `spec.replicas` that still has a Deployment or a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Surplus {
    /// Its ordinal.
    pub ordinal: u32,
    /// Its Deployment's name, while it exists.
    pub deployment: Option<String>,
    /// Its spool claim, while it exists.
    pub claim: Option<ClaimView>,
}

/// A spool claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimView {
    /// Its name.
    pub name: String,
    /// Whether it was ever bound to a volume (only then can it hold mail).
    pub bound: bool,
}

/// What a surplus pod's admin endpoint said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The queue: whether the listener is draining, and how many messages wait.
    Queue {
        /// New connections get 421.
        draining: bool,
        /// Messages with undelivered recipients.
        depth: u64,
    },
    /// It could not be asked (the error).
    Unreachable(String),
}

/// The settings scale-down follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `spec.replicas`.
    pub replicas: u32,
    /// `storage.whenScaled`.
    pub when_scaled: ClaimPolicy,
    /// How long a surplus ordinal may take to drain before the listener is `Stalled`.
    pub drain_timeout: Duration,
    /// [`FORCE_ANNOTATION`] is set.
    pub force: bool,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Label the pod out of the Service and record when (`now`).
    LeaveService {
        /// The pod.
        pod: String,
    },
    /// Label the pod into the Service (it predates [`SERVING_LABEL`]).
    JoinService {
        /// The pod.
        pod: String,
    },
    /// Delete the pod so its Deployment starts a fresh one: it was drained, and its
    /// ordinal is wanted again.
    Restart {
        /// The pod.
        pod: String,
    },
    /// Delete the Deployment of a drained (or forced, or never bound) ordinal.
    RemoveDeployment {
        /// The Deployment.
        name: String,
    },
    /// Delete the spool claim of a removed ordinal (`whenScaled: Delete`).
    RemoveClaim {
        /// The claim.
        name: String,
    },
}

/// Why a surplus ordinal is not removed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Its pods are being taken out of the Service.
    LeavingService,
    /// It has no pod that runs and can be asked (none yet, or one terminating).
    NoPod,
    /// Its admin endpoint could not be asked.
    Unreachable(String),
    /// It has this many queued messages (or has not yet confirmed it drains).
    Queued(u64),
}

/// A surplus ordinal still waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The ordinal.
    pub ordinal: u32,
    /// Why.
    pub wait: Wait,
    /// How long it has been draining, when known (left out of messages, which would
    /// otherwise change at every look).
    pub for_: Option<Duration>,
}

/// What [`decide`] says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// What to do now.
    pub steps: Vec<Step>,
    /// Surplus ordinals still within their drain deadline.
    pub waiting: Vec<Waiting>,
    /// Surplus ordinals past their drain deadline.
    pub overdue: Vec<Waiting>,
}

impl Decision {
    /// Whether a surplus ordinal still waits (so the listener is looked at again soon).
    pub fn draining(&self) -> bool {
        !self.waiting.is_empty() || !self.overdue.is_empty()
    }

    /// The `Reconciling` message while ordinals drain.
    pub fn progress_message(&self) -> String {
        let mut text = String::from("draining before scale-down: ");
        describe(&mut text, self.waiting.iter().chain(&self.overdue));
        text
    }

    /// The `Stalled` message when an ordinal is past its deadline.
    pub fn overdue_message(&self, policy: &Policy) -> Option<String> {
        if self.overdue.is_empty() {
            return None;
        }
        let mut text = String::new();
        describe(&mut text, self.overdue.iter());
        let _ = write!(
            text,
            "; not drained within the {}s drain timeout (scaleDown.drainTimeoutSeconds); the operator keeps waiting; annotate the EsmtpListener {FORCE_ANNOTATION}=\"true\" to remove {} anyway ({})",
            policy.drain_timeout.as_secs(),
            if self.overdue.len() == 1 {
                "it"
            } else {
                "them"
            },
            match policy.when_scaled {
                ClaimPolicy::Delete => "its queued messages are then deleted with the claim",
                ClaimPolicy::Retain => "its queued messages then stay in the retained claim",
            }
        );
        Some(text)
    }
}

fn describe<'a>(text: &mut String, waiting: impl Iterator<Item = &'a Waiting>) {
    for (i, w) in waiting.enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "ordinal {}: ", w.ordinal);
        let _ = match &w.wait {
            Wait::LeavingService => write!(text, "leaving the Service"),
            Wait::NoPod => write!(text, "no running pod to drain"),
            Wait::Unreachable(e) => write!(text, "admin endpoint unreachable ({e})"),
            Wait::Queued(depth) => write!(text, "{depth} queued message(s)"),
        };
    }
}

/// The pods whose admin endpoint the driver should ask before [`decide`]: those of
/// surplus ordinals that have left the Service, run, and are not being deleted.
pub fn to_probe<'a>(policy: &Policy, pods: &'a [PodView]) -> Vec<&'a PodView> {
    if policy.force {
        return Vec::new();
    }
    pods.iter()
        .filter(|p| {
            p.ordinal >= policy.replicas
                && p.serving == Some(false)
                && p.drain_started.is_some()
                && p.reachable
                && !p.deleting
        })
        .collect()
}

/// What to do now, from the pods and surplus ordinals observed and what the probed pods
/// said (`probes`, by pod name), at `now`.
pub fn decide(
    policy: &Policy,
    pods: &[PodView],
    surplus: &[Surplus],
    probes: &BTreeMap<String, Probe>,
    now: Timestamp,
) -> Decision {
    let mut decision = Decision::default();
    for pod in pods
        .iter()
        .filter(|p| p.ordinal < policy.replicas && !p.deleting)
    {
        match pod.serving {
            None => decision.steps.push(Step::JoinService {
                pod: pod.name.clone(),
            }),
            Some(false) => decision.steps.push(Step::Restart {
                pod: pod.name.clone(),
            }),
            Some(true) => {}
        }
    }
    for s in surplus.iter().filter(|s| s.ordinal >= policy.replicas) {
        let mine: Vec<&PodView> = pods.iter().filter(|p| p.ordinal == s.ordinal).collect();
        let may_hold_mail = s.claim.as_ref().is_some_and(|c| c.bound);
        let wait = if policy.force || !may_hold_mail || s.deployment.is_none() {
            None
        } else {
            drain_wait(&mine, probes, &mut decision.steps)
        };
        match wait {
            None => remove(policy, s, &mut decision.steps),
            Some(wait) => {
                let for_ = mine
                    .iter()
                    .filter_map(|p| p.drain_started)
                    .min()
                    .map(|since| elapsed(since, now));
                let waiting = Waiting {
                    ordinal: s.ordinal,
                    wait,
                    for_,
                };
                if for_.is_some_and(|d| d >= policy.drain_timeout) {
                    decision.overdue.push(waiting);
                } else {
                    decision.waiting.push(waiting);
                }
            }
        }
    }
    decision
}

/// Why a surplus ordinal with `pods` is not drained yet (`None`: it is), adding the
/// steps that move it on.
fn drain_wait(
    pods: &[&PodView],
    probes: &BTreeMap<String, Probe>,
    steps: &mut Vec<Step>,
) -> Option<Wait> {
    let in_service: Vec<&&PodView> = pods
        .iter()
        .filter(|p| !p.deleting && (p.serving != Some(false) || p.drain_started.is_none()))
        .collect();
    if !in_service.is_empty() {
        steps.extend(in_service.iter().map(|p| Step::LeaveService {
            pod: p.name.clone(),
        }));
        return Some(Wait::LeavingService);
    }
    if pods.is_empty() || pods.iter().any(|p| p.deleting || !p.reachable) {
        return Some(Wait::NoPod);
    }
    let mut depth = 0;
    for pod in pods {
        match probes.get(&pod.name) {
            None => return Some(Wait::NoPod),
            Some(Probe::Unreachable(e)) => return Some(Wait::Unreachable(e.clone())),
            // Until the listener confirms it drains, mail may still arrive.
            Some(Probe::Queue { draining, depth: d }) => {
                depth += if *draining { *d } else { (*d).max(1) };
            }
        }
    }
    (depth > 0).then_some(Wait::Queued(depth))
}

fn remove(policy: &Policy, s: &Surplus, steps: &mut Vec<Step>) {
    if let Some(name) = &s.deployment {
        steps.push(Step::RemoveDeployment { name: name.clone() });
    }
    if policy.when_scaled == ClaimPolicy::Delete
        && let Some(claim) = &s.claim
    {
        steps.push(Step::RemoveClaim {
            name: claim.name.clone(),
        });
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let d: SignedDuration = now.duration_since(since);
    Duration::try_from(d).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(T0 + secs).unwrap()
    }

    fn policy(replicas: u32) -> Policy {
        Policy {
            replicas,
            when_scaled: ClaimPolicy::Delete,
            drain_timeout: Duration::from_secs(600),
            force: false,
        }
    }

    fn pod(ordinal: u32, serving: Option<bool>, started: Option<i64>) -> PodView {
        PodView {
            name: format!("mx-{ordinal}-abc"),
            ordinal,
            serving,
            drain_started: started.map(at),
            reachable: true,
            deleting: false,
        }
    }

    fn surplus(ordinal: u32) -> Surplus {
        Surplus {
            ordinal,
            deployment: Some(format!("mx-{ordinal}")),
            claim: Some(ClaimView {
                name: format!("mx-spool-{ordinal}"),
                bound: true,
            }),
        }
    }

    fn queue(depth: u64) -> Probe {
        Probe::Queue {
            draining: true,
            depth,
        }
    }

    fn probes(entries: &[(&str, Probe)]) -> BTreeMap<String, Probe> {
        entries
            .iter()
            .map(|(n, p)| ((*n).to_string(), p.clone()))
            .collect()
    }

    #[test]
    fn surplus_pods_leave_the_service_before_anything_else() {
        let pods = [
            pod(0, Some(true), None),
            pod(1, Some(true), None),
            pod(2, Some(true), None),
        ];
        let p = policy(1);
        assert!(
            to_probe(&p, &pods).is_empty(),
            "no pod is drained in service"
        );
        let d = decide(
            &p,
            &pods,
            &[surplus(1), surplus(2)],
            &BTreeMap::new(),
            at(0),
        );
        assert_eq!(
            d.steps,
            [
                Step::LeaveService {
                    pod: "mx-1-abc".into()
                },
                Step::LeaveService {
                    pod: "mx-2-abc".into()
                },
            ]
        );
        assert_eq!(d.waiting.len(), 2);
        assert!(d.overdue.is_empty());
        assert_eq!(
            d.progress_message(),
            "draining before scale-down: ordinal 1: leaving the Service; ordinal 2: leaving the Service"
        );
    }

    #[test]
    fn out_of_service_pods_are_probed_and_removed_only_when_empty() {
        let pods = [
            pod(0, Some(true), None),
            pod(1, Some(false), Some(0)),
            pod(2, Some(false), Some(0)),
        ];
        let p = policy(1);
        let asked: Vec<_> = to_probe(&p, &pods).iter().map(|p| p.name.clone()).collect();
        assert_eq!(asked, ["mx-1-abc", "mx-2-abc"]);
        let said = probes(&[("mx-1-abc", queue(0)), ("mx-2-abc", queue(3))]);
        let d = decide(&p, &pods, &[surplus(1), surplus(2)], &said, at(30));
        assert_eq!(
            d.steps,
            [
                Step::RemoveDeployment {
                    name: "mx-1".into()
                },
                Step::RemoveClaim {
                    name: "mx-spool-1".into()
                },
            ]
        );
        assert_eq!(
            d.waiting,
            [Waiting {
                ordinal: 2,
                wait: Wait::Queued(3),
                for_: Some(Duration::from_secs(30)),
            }]
        );
        assert_eq!(
            d.progress_message(),
            "draining before scale-down: ordinal 2: 3 queued message(s)"
        );
    }

    #[test]
    fn retain_keeps_the_claim_of_a_drained_ordinal() {
        let pods = [pod(1, Some(false), Some(0))];
        let p = Policy {
            when_scaled: ClaimPolicy::Retain,
            ..policy(1)
        };
        let d = decide(
            &p,
            &pods,
            &[surplus(1)],
            &probes(&[("mx-1-abc", queue(0))]),
            at(5),
        );
        assert_eq!(
            d.steps,
            [Step::RemoveDeployment {
                name: "mx-1".into()
            }]
        );
        assert!(!d.draining());
    }

    #[test]
    fn an_empty_queue_counts_only_once_the_listener_drains() {
        let pods = [pod(1, Some(false), Some(0))];
        let said = probes(&[(
            "mx-1-abc",
            Probe::Queue {
                draining: false,
                depth: 0,
            },
        )]);
        let d = decide(&policy(1), &pods, &[surplus(1)], &said, at(1));
        assert!(d.steps.is_empty());
        assert_eq!(d.waiting[0].wait, Wait::Queued(1));
    }

    #[test]
    fn past_the_deadline_the_ordinal_is_overdue_and_still_kept() {
        let pods = [pod(2, Some(false), Some(0))];
        let p = policy(1);
        let said = probes(&[("mx-2-abc", queue(4))]);
        let d = decide(&p, &pods, &[surplus(2)], &said, at(600));
        assert!(d.steps.is_empty(), "nothing is removed: {:?}", d.steps);
        assert!(d.waiting.is_empty());
        assert_eq!(d.overdue[0].wait, Wait::Queued(4));
        let message = d.overdue_message(&p).unwrap();
        assert!(
            message.starts_with(
                "ordinal 2: 4 queued message(s); not drained within the 600s drain timeout"
            ),
            "{message}"
        );
        assert!(
            message.contains("postern.io/force-scale-down=\"true\""),
            "{message}"
        );
        assert_eq!(
            decide(&p, &pods, &[surplus(2)], &said, at(599))
                .overdue
                .len(),
            0
        );
    }

    #[test]
    fn force_removes_at_once_without_asking() {
        let pods = [pod(1, Some(true), None), pod(2, Some(false), Some(0))];
        let p = Policy {
            force: true,
            ..policy(1)
        };
        assert!(to_probe(&p, &pods).is_empty());
        let d = decide(
            &p,
            &pods,
            &[surplus(1), surplus(2)],
            &BTreeMap::new(),
            at(1),
        );
        assert_eq!(d.steps.len(), 4, "{:?}", d.steps);
        assert!(!d.draining());
    }

    #[test]
    fn unreachable_missing_and_terminating_pods_wait() {
        let p = policy(1);
        let unreachable = probes(&[("mx-1-abc", Probe::Unreachable("refused".into()))]);
        let pods = [pod(1, Some(false), Some(0))];
        let d = decide(&p, &pods, &[surplus(1)], &unreachable, at(1));
        assert_eq!(d.waiting[0].wait, Wait::Unreachable("refused".into()));
        let d = decide(&p, &[], &[surplus(1)], &BTreeMap::new(), at(1));
        assert_eq!(d.waiting[0].wait, Wait::NoPod);
        assert_eq!(d.waiting[0].for_, None);
        let mut terminating = pod(1, Some(false), Some(0));
        terminating.deleting = true;
        let d = decide(&p, &[terminating], &[surplus(1)], &BTreeMap::new(), at(1));
        assert_eq!(d.waiting[0].wait, Wait::NoPod);
        let mut pending = pod(1, Some(false), Some(0));
        pending.reachable = false;
        assert!(to_probe(&p, std::slice::from_ref(&pending)).is_empty());
        let d = decide(&p, &[pending], &[surplus(1)], &BTreeMap::new(), at(1));
        assert_eq!(d.waiting[0].wait, Wait::NoPod);
    }

    #[test]
    fn a_claim_never_bound_holds_no_mail() {
        let mut s = surplus(1);
        s.claim.as_mut().unwrap().bound = false;
        let d = decide(
            &policy(1),
            &[pod(1, Some(true), None)],
            &[s],
            &BTreeMap::new(),
            at(0),
        );
        assert_eq!(d.steps.len(), 2, "{:?}", d.steps);
        assert!(!d.draining());
    }

    #[test]
    fn a_claim_left_after_its_deployment_went_follows_the_policy() {
        let s = Surplus {
            deployment: None,
            ..surplus(1)
        };
        let d = decide(
            &policy(1),
            &[],
            std::slice::from_ref(&s),
            &BTreeMap::new(),
            at(0),
        );
        assert_eq!(
            d.steps,
            [Step::RemoveClaim {
                name: "mx-spool-1".into()
            }]
        );
        let retain = Policy {
            when_scaled: ClaimPolicy::Retain,
            ..policy(1)
        };
        assert!(
            decide(&retain, &[], &[s], &BTreeMap::new(), at(0))
                .steps
                .is_empty()
        );
    }

    #[test]
    fn desired_pods_join_the_service_or_restart_when_drained() {
        let pods = [
            pod(0, None, None),
            pod(1, Some(false), Some(0)),
            pod(2, Some(true), None),
        ];
        let d = decide(&policy(3), &pods, &[], &BTreeMap::new(), at(0));
        assert_eq!(
            d.steps,
            [
                Step::JoinService {
                    pod: "mx-0-abc".into()
                },
                Step::Restart {
                    pod: "mx-1-abc".into()
                },
            ]
        );
    }
}

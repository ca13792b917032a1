//! The permissions the operator uses, exactly: the e2e tests run it with nothing more,
//! and `postern-operator rbac` prints them as a ClusterRole for the chart.

use k8s_openapi::{
    api::rbac::v1::{ClusterRole, PolicyRule},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| (*r).into()).collect()),
        verbs: verbs.iter().map(|v| (*v).into()).collect(),
        ..PolicyRule::default()
    }
}

/// The rules for reconciling: watched kinds, the kinds it makes (`get` to check who
/// owns an object of the same name before the first apply), Secrets read-only (as
/// metadata), pods labelled and restarted on scale-down, Events.
pub fn controller_rules() -> Vec<PolicyRule> {
    let own = ["get", "list", "watch", "create", "patch"];
    let own_and_delete = ["get", "list", "watch", "create", "patch", "delete"];
    vec![
        rule("postern.io", &["esmtplisteners"], &["list", "watch"]),
        rule("postern.io", &["esmtplisteners/status"], &["patch"]),
        rule("", &["services"], &own),
        rule(
            "",
            &["configmaps", "persistentvolumeclaims"],
            &own_and_delete,
        ),
        rule("", &["secrets"], &["list", "watch"]),
        // Pods: watched for crash loops; on scale-down a surplus pod is labelled out of
        // the Service (patch), and a drained pod whose ordinal is wanted again restarted.
        rule("", &["pods"], &["list", "watch", "patch", "delete"]),
        rule("apps", &["deployments"], &own_and_delete),
        rule("policy", &["poddisruptionbudgets"], &own_and_delete),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

/// The rule for leader election, needed in the Lease's namespace only.
pub fn lease_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "patch"],
    )]
}

/// A ClusterRole named `name` with every rule.
pub fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        rules: Some(
            controller_rules()
                .into_iter()
                .chain(lease_rules())
                .collect(),
        ),
        aggregation_rule: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_only_and_nothing_is_a_wildcard() {
        let role = cluster_role("postern-operator");
        for r in role.rules.unwrap() {
            assert!(!r.verbs.iter().any(|v| v == "*"), "{r:?}");
            assert!(
                !r.resources.as_ref().unwrap().iter().any(|v| v == "*"),
                "{r:?}"
            );
            if r.resources
                .as_ref()
                .unwrap()
                .contains(&"secrets".to_string())
            {
                assert_eq!(r.verbs, ["list", "watch"]);
            }
        }
    }
}

//! A PodDisruptionBudget once there is more than one replica: voluntary evictions
//! (drains, upgrades) take one listener pod at a time.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use crate::{
    build::{LISTENER_LABEL, child_meta, labels},
    crd::EsmtpListener,
};

/// The budget, or `None` for fewer than two replicas.
pub fn build(listener: &EsmtpListener) -> Option<PodDisruptionBudget> {
    if listener.spec.replicas < 2 {
        return None;
    }
    let name = listener.metadata.name.as_deref().unwrap_or_default();
    Some(PodDisruptionBudget {
        metadata: child_meta(listener, name.into(), labels(name), true),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(LISTENER_LABEL.into(), name.into())])),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::listener;

    #[test]
    fn only_for_more_than_one_replica() {
        assert!(build(&listener("listeners: [{listen: '0:25'}]")).is_none());
        let pdb = build(&listener("listeners: [{listen: '0:25'}]\nreplicas: 3")).unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()[LISTENER_LABEL],
            "mx"
        );
    }
}

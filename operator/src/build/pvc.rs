//! Each replica's spool claim. It is owned by the `EsmtpListener` only when
//! `storage.whenDeleted` is `Delete`, so a retained spool outlives its listener.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};

use crate::{
    build::{child_meta, claim_name, replica_labels},
    crd::{ClaimPolicy, EsmtpListener},
};

/// Replica `ordinal`'s spool claim.
pub fn build(listener: &EsmtpListener, ordinal: u32) -> PersistentVolumeClaim {
    let name = listener.metadata.name.as_deref().unwrap_or_default();
    let storage = &listener.spec.storage;
    PersistentVolumeClaim {
        metadata: child_meta(
            listener,
            claim_name(name, ordinal),
            replica_labels(name, ordinal),
            storage.when_deleted == ClaimPolicy::Delete,
        ),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), storage.size.clone())])),
                limits: None,
            }),
            storage_class_name: storage.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::listener;

    #[test]
    fn a_read_write_once_claim_of_the_declared_size() {
        let l =
            listener("listeners: [{listen: '0:25'}]\nstorage: {size: 5Gi, storageClassName: fast}");
        let c = build(&l, 2);
        assert_eq!(c.metadata.name.as_deref(), Some("mx-spool-2"));
        let spec = c.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    }

    #[test]
    fn retained_claims_have_no_owner_and_deleted_ones_do() {
        let retained = build(&listener("listeners: [{listen: '0:25'}]"), 0);
        assert_eq!(retained.metadata.owner_references, None);
        assert_eq!(
            retained.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
        let deleted = build(
            &listener("listeners: [{listen: '0:25'}]\nstorage: {whenDeleted: Delete}"),
            0,
        );
        assert_eq!(deleted.metadata.owner_references.unwrap().len(), 1);
    }
}

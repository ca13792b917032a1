//! Dereference: which of the Secrets named by a spec exist, read from the operator's
//! cache of Secret **metadata** (watched metadata-only: no Secret value is ever in the
//! operator's memory), so this step costs no API request.

use k8s_openapi::api::core::v1::Secret;
use kube::{
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    crd::EsmtpListenerSpec,
    validate::{SecretLookup, secret_refs},
};

/// The Secrets `spec` names in `namespace` that exist.
pub fn lookup(
    secrets: &Store<PartialObjectMeta<Secret>>,
    namespace: &str,
    spec: &EsmtpListenerSpec,
) -> SecretLookup {
    let mut found = SecretLookup::default();
    for r in secret_refs(spec) {
        if secrets
            .get(&ObjectRef::new(&r.name).within(namespace))
            .is_some()
        {
            found.0.insert(r.name);
        }
    }
    found
}

/// Whether `spec` names the Secret called `name` (the Secret watch's mapper uses this).
pub fn references(spec: &EsmtpListenerSpec, name: &str) -> bool {
    secret_refs(spec).iter().any(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::{reflector::store, watcher};

    use super::*;
    use crate::build::tests::{MX, listener};

    #[test]
    fn finds_present_secrets_by_their_metadata() {
        let (reader, mut writer) = store::<PartialObjectMeta<Secret>>();
        writer.apply_watcher_event(&watcher::Event::Apply(PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some("mx-tls".into()),
                namespace: Some("mail".into()),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        }));
        let l = listener(MX);
        assert!(lookup(&reader, "mail", &l.spec).0.contains("mx-tls"));
        assert!(lookup(&reader, "other", &l.spec).0.is_empty());
        assert!(references(&l.spec, "mx-tls"));
        assert!(!references(&l.spec, "other"));
    }
}

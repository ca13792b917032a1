//! Dereference: what the Secrets named by a spec hold (their keys, never their values),
//! read from the operator's cache of Secrets, so this step costs no API request.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::{
    crd::EsmtpListenerSpec,
    validate::{SecretLookup, secret_refs},
};

/// The keys of one Secret (`data` and `stringData`).
pub fn secret_keys(secret: &Secret) -> BTreeSet<String> {
    let data = secret.data.iter().flat_map(|d| d.keys());
    let string_data = secret.string_data.iter().flat_map(|d| d.keys());
    data.chain(string_data).cloned().collect()
}

/// For each Secret `spec` names in `namespace`: its keys, or `None` when it is missing.
pub fn lookup(secrets: &Store<Secret>, namespace: &str, spec: &EsmtpListenerSpec) -> SecretLookup {
    let mut found = SecretLookup::default();
    for r in secret_refs(spec) {
        found.0.entry(r.name.clone()).or_insert_with(|| {
            secrets
                .get(&ObjectRef::new(&r.name).within(namespace))
                .map(|s| secret_keys(&s))
        });
    }
    found
}

/// Whether `spec` names the Secret called `name` (the Secret watch's mapper uses this).
pub fn references(spec: &EsmtpListenerSpec, name: &str) -> bool {
    secret_refs(spec).iter().any(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::ObjectMeta};
    use kube::runtime::{reflector::store, watcher};

    use super::*;
    use crate::build::tests::{MX, listener};

    #[test]
    fn finds_keys_of_present_secrets_and_marks_missing_ones() {
        let (reader, mut writer) = store::<Secret>();
        writer.apply_watcher_event(&watcher::Event::Apply(Secret {
            metadata: ObjectMeta {
                name: Some("mx-tls".into()),
                namespace: Some("mail".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                ("tls.crt".into(), ByteString(b"c".to_vec())),
                ("tls.key".into(), ByteString(b"k".to_vec())),
            ])),
            ..Secret::default()
        }));
        let l = listener(MX);
        let found = lookup(&reader, "mail", &l.spec);
        assert_eq!(
            found.0["mx-tls"],
            Some(BTreeSet::from(["tls.crt".into(), "tls.key".into()]))
        );
        assert_eq!(lookup(&reader, "other", &l.spec).0["mx-tls"], None);
        assert!(references(&l.spec, "mx-tls"));
        assert!(!references(&l.spec, "other"));
    }
}

//! Tolerant reading of `EsmtpListener`s: an object the operator cannot parse (one the
//! API server admitted under an older CRD, or that a newer operator wrote) becomes a
//! [`Unreadable`] that names the field, instead of failing the whole list and watch.
//!
//! This is kube's `DeserializeGuard` with one addition: the field path of the error
//! (through `serde_path_to_error`), so the `Stalled` message says what to fix.

use std::borrow::Cow;

use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::Resource;
use serde::{Deserialize, Deserializer};

use crate::crd::{EsmtpListener, EsmtpListenerStatus};

/// An `EsmtpListener` as read from the API server: parsed, or why not.
#[derive(Clone, Debug)]
pub struct Guarded(pub Result<EsmtpListener, Unreadable>);

/// An `EsmtpListener` the operator cannot parse.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    /// The object's metadata (always readable: the API server wrote it).
    pub metadata: ObjectMeta,
    /// Its status, when that part is readable (to keep the conditions' history).
    pub status: Option<EsmtpListenerStatus>,
    /// The path of the field that failed, e.g. `spec.listeners[0].relayHosts[0]`.
    pub field: String,
    /// The parser's message for that field.
    pub error: String,
}

impl Unreadable {
    /// The `Stalled` message: the field, what is wrong with it, what to do.
    pub fn message(&self) -> String {
        format!(
            "{}: {}; the operator cannot read this object, fix the field",
            self.field, self.error
        )
    }
}

/// Parses one object from its JSON form.
pub fn parse(value: serde_json::Value) -> Result<Guarded, String> {
    match serde_path_to_error::deserialize::<_, EsmtpListener>(&value) {
        Ok(listener) => Ok(Guarded(Ok(listener))),
        Err(e) => {
            let field = e.path().to_string();
            let error = e.into_inner().to_string();
            let metadata = value
                .get("metadata")
                .cloned()
                .map(serde_json::from_value::<ObjectMeta>)
                .transpose()
                .map_err(|m| format!("unreadable metadata: {m}"))?
                .unwrap_or_default();
            let status = value
                .get("status")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok());
            Ok(Guarded(Err(Unreadable {
                metadata,
                status,
                field,
                error,
            })))
        }
    }
}

impl<'de> Deserialize<'de> for Guarded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        parse(value).map_err(serde::de::Error::custom)
    }
}

impl Guarded {
    /// The parsed listener, if it parsed.
    pub fn listener(&self) -> Option<&EsmtpListener> {
        self.0.as_ref().ok()
    }

    /// The object's status as far as it is readable.
    pub fn status(&self) -> Option<&EsmtpListenerStatus> {
        match &self.0 {
            Ok(l) => l.status.as_ref(),
            Err(u) => u.status.as_ref(),
        }
    }
}

impl Resource for Guarded {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        EsmtpListener::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        EsmtpListener::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        EsmtpListener::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        EsmtpListener::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(l) => &l.metadata,
            Err(u) => &u.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(l) => &mut l.metadata,
            Err(u) => &mut u.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(spec: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "postern.io/v1alpha1",
            "kind": "EsmtpListener",
            "metadata": {"name": "mx", "namespace": "mail", "uid": "u1", "generation": 2},
            "spec": spec,
            "status": {"replicas": 1, "readyReplicas": 1, "conditions": []},
        })
    }

    fn unreadable(spec: serde_json::Value) -> Unreadable {
        let g: Guarded = serde_json::from_value(object(spec)).unwrap();
        g.0.unwrap_err()
    }

    #[test]
    fn a_good_object_parses() {
        let g: Guarded =
            serde_json::from_value(object(json!({"listeners": [{"listen": "0.0.0.0:25"}]})))
                .unwrap();
        assert_eq!(g.listener().unwrap().spec.listeners.len(), 1);
        assert_eq!(g.meta().name.as_deref(), Some("mx"));
    }

    #[test]
    fn the_skews_the_api_server_once_admitted_name_their_field() {
        let u =
            unreadable(json!({"listeners": [{"listen": "0:25", "relayHosts": ["10.0.0.1/24"]}]}));
        assert_eq!(u.field, "spec.listeners[0].relayHosts[0]");
        assert!(u.error.contains("host bits"), "{}", u.error);
        assert_eq!(u.metadata.name.as_deref(), Some("mx"));
        assert_eq!(u.status.unwrap().ready_replicas, 1);

        let u = unreadable(json!({"listeners": [{"listen": "0:25", "clientTimeout": "60"}]}));
        assert_eq!(u.field, "spec.listeners[0].clientTimeout");

        let u = unreadable(json!({"listeners": [{"listen": "300.1.1.1:25"}]}));
        assert_eq!(u.field, "spec.listeners[0].listen");
        assert!(u.message().starts_with("spec.listeners[0].listen: "));

        let u = unreadable(
            json!({"listeners": [{"listen": "0:25", "maxRecipientsPerMessage": 5_000_000_000_u64}]}),
        );
        assert_eq!(u.field, "spec.listeners[0].maxRecipientsPerMessage");
    }

    #[test]
    fn a_list_with_one_bad_item_still_reads() {
        let list: Vec<Guarded> = serde_json::from_value(json!([
            object(json!({"listeners": [{"listen": "0:25"}]})),
            object(json!({"listeners": [{"listen": "0:25", "relayHosts": ["10.0.0.1/24"]}]})),
        ]))
        .unwrap();
        assert!(list[0].listener().is_some() && list[1].listener().is_none());
    }
}

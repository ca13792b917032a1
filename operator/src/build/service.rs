//! The Service over every replica that serves: one port per listener, mapping the
//! declared port to the unprivileged port the pod binds; it selects pods labelled
//! [`SERVING_LABEL`]`=true`, so a replica being scaled down leaves it by a label.

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use std::collections::BTreeMap;

use crate::{
    build::{LISTENER_LABEL, child_meta, labels},
    crd::{EsmtpListener, ServiceType, TrafficPolicy},
    scale_down::SERVING_LABEL,
    validate::Plan,
};

/// The Service named after the listener.
pub fn build(listener: &EsmtpListener, plan: &Plan) -> Service {
    let name = listener.metadata.name.as_deref().unwrap_or_default();
    let svc = &listener.spec.service;
    let mut metadata = child_meta(listener, name.into(), labels(name), true);
    if !svc.annotations.is_empty() {
        metadata.annotations = Some(svc.annotations.clone());
    }
    let ports = plan
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(format!("smtp-{}", p.service_port)),
            port: i32::from(p.service_port),
            target_port: Some(IntOrString::Int(i32::from(p.pod_port))),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        })
        .collect();
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(
                match svc.type_ {
                    ServiceType::ClusterIP => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                }
                .into(),
            ),
            // Pods of a replica being scaled down are labelled out before they drain.
            selector: Some(BTreeMap::from([
                (LISTENER_LABEL.into(), name.into()),
                (SERVING_LABEL.into(), "true".into()),
            ])),
            ports: Some(ports),
            external_traffic_policy: svc.external_traffic_policy.map(|p| {
                match p {
                    TrafficPolicy::Cluster => "Cluster",
                    TrafficPolicy::Local => "Local",
                }
                .into()
            }),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{MX, listener, plan};

    #[test]
    fn one_port_per_listener_mapped_to_the_pod_port() {
        let l = listener(MX);
        let s = build(&l, &plan(&l));
        assert_eq!(s.metadata.name.as_deref(), Some("mx"));
        let spec = s.spec.unwrap();
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.target_port.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("smtp-25".to_string(), 25, IntOrString::Int(10025)),
                ("smtp-2026".to_string(), 2026, IntOrString::Int(2026)),
            ]
        );
        let selector = spec.selector.unwrap();
        assert_eq!(selector[LISTENER_LABEL], "mx");
        assert_eq!(selector[SERVING_LABEL], "true");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.external_traffic_policy, None);
    }

    #[test]
    fn type_annotations_and_traffic_policy_are_passed_through() {
        let l = listener(
            "listeners: [{listen: '0:25'}]
service: {type: LoadBalancer, externalTrafficPolicy: Local, annotations: {lb.example/internal: 'true'}}",
        );
        let s = build(&l, &plan(&l));
        assert_eq!(
            s.metadata.annotations.unwrap()["lb.example/internal"],
            "true"
        );
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    }
}

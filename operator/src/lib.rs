//! `postern-operator`: reconciles `EsmtpListener` resources into running Postern
//! listeners.
//!
//! Reconcile is a pipeline of small steps, each in its own module:
//! dereference (the keys of the Secrets the spec names, [`dereference`]) → validate
//! ([`validate`]) → build the desired objects, purely ([`build`]) → server-side apply
//! them ([`apply`]) → write `status` ([`status`]).
//! [`tolerant`] reads `EsmtpListener`s so one that cannot be parsed stalls alone;
//! [`rollout`] decides, purely, which replica may change next; [`scale_down`] decides,
//! purely, how replicas past `spec.replicas` leave the Service, drain and go, and
//! [`drain`] carries that out against the pods' admin endpoints.
//! [`controller`] wires the steps to kube's `Controller`, [`leader`] elects one active
//! instance, [`server`] serves `/metrics`, `/livez` and `/readyz` ([`metrics`]), and
//! [`rbac`] lists the permissions all of this needs.

pub mod apply;
pub mod build;
pub mod controller;
pub mod crd;
pub mod dereference;
pub mod drain;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod rollout;
pub mod scale_down;
pub mod server;
pub mod status;
pub mod tolerant;
pub mod validate;

//! The operator works with exactly the permissions `postern_operator::rbac` lists (and
//! `docs/operator.md` documents): it runs impersonating a service account bound to a
//! Role with those rules and nothing else.

mod support;

use anyhow::{Result, ensure};
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Event, Secret, ServiceAccount},
        rbac::v1::{Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::api::{ListParams, PostParams};
use postern_e2e::{poll, require_cluster};
use postern_operator::{
    crd::EsmtpListener,
    leader::{LeaseOptions, acquire},
    rbac,
};
use support::{Operator, TIMEOUT, apply_listener, install_crd, wait_condition, wait_ready};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_the_documented_rbac_is_enough() -> Result<()> {
    let cluster = require_cluster!("e2e_the_documented_rbac_is_enough", Ok(()));
    install_crd(&cluster.client()).await?;
    cluster.recycle_volumes().await?;
    let ns = cluster.namespace("op-rbac").await?;
    let pp = PostParams::default();
    ns.api::<ServiceAccount>()
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta("postern-operator"),
                ..ServiceAccount::default()
            },
        )
        .await?;
    let rules = rbac::controller_rules()
        .into_iter()
        .chain(rbac::lease_rules())
        .collect();
    ns.api::<Role>()
        .create(
            &pp,
            &Role {
                metadata: meta("postern-operator"),
                rules: Some(rules),
            },
        )
        .await?;
    ns.api::<RoleBinding>()
        .create(
            &pp,
            &RoleBinding {
                metadata: meta("postern-operator"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "postern-operator".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "postern-operator".into(),
                    namespace: Some(ns.name().into()),
                    api_group: None,
                }]),
            },
        )
        .await?;
    ns.api::<Secret>()
        .create(
            &pp,
            &Secret {
                metadata: meta("mx-tls"),
                type_: Some("kubernetes.io/tls".into()),
                data: Some(
                    [
                        ("tls.crt".to_string(), ByteString(b"c".to_vec())),
                        ("tls.key".to_string(), ByteString(b"k".to_vec())),
                    ]
                    .into(),
                ),
                ..Secret::default()
            },
        )
        .await?;

    let mut config = cluster.config().clone();
    config.auth_info.impersonate = Some(format!(
        "system:serviceaccount:{}:postern-operator",
        ns.name()
    ));
    let leadership = acquire(
        kube::Client::try_from(config.clone())?,
        &LeaseOptions {
            name: "postern-operator".into(),
            namespace: ns.name().into(),
            identity: "rbac-test".into(),
        },
    )
    .await?;
    let operator = Operator::start_with(config, ns.name()).await?;

    let api = ns.api::<EsmtpListener>();
    let spec = |replicas: u32| {
        format!(
            "listeners: [{{listen: '0:25', tlsCertificate: {{secretName: mx-tls}}, tlsPrivateKey: {{secretName: mx-tls}}}}]
replicas: {replicas}
storage: {{whenScaled: Delete}}
"
        )
    };
    // Create everything, including a PDB, then delete a replica, its claim and the PDB.
    apply_listener(&api, "mx", &spec(2)).await?;
    wait_ready(&api, "mx").await?;
    apply_listener(&api, "mx", &spec(1)).await?;
    wait_condition(&api, "mx", "Ready", "True", 2).await?;
    poll("Events published by the operator", TIMEOUT, || async {
        let events = ns.api::<Event>().list(&ListParams::default()).await?.items;
        Ok(events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Deleted"))
            .then_some(()))
    })
    .await?;
    ensure!(
        operator.metrics.errors.get() == 0,
        "reconciles failed under the documented RBAC"
    );

    operator.stop().await;
    leadership.release().await;
    ns.cleanup().await
}

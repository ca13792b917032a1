//! Leader election through a `coordination.k8s.io/v1` Lease, so that only one of the
//! operator's replicas reconciles at a time.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};

/// Seconds a leader's lock lasts without renewal.
pub const LEASE_DURATION_SECS: u64 = 15;
/// Seconds before expiry at which the leader renews.
pub const LEASE_GRACE_SECS: u64 = 5;

/// Which Lease to contend for, and as whom.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This instance's identity (e.g. its pod name).
    pub identity: String,
}

/// A held leadership; dropping it releases the Lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

/// Waits until this instance holds the Lease.
pub async fn acquire(
    client: Client,
    options: &LeaseOptions,
) -> Result<Leadership, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &options.name)
        .with_namespace(&options.namespace)
        .with_identity(&options.identity)
        .with_field_manager(format!("postern-operator-lease-{}", options.identity))
        .with_duration(LEASE_DURATION_SECS)
        .with_grace(LEASE_GRACE_SECS)
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            break;
        }
    }
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Resolves when the Lease is lost (another instance took it, or renewals failed).
    pub async fn lost(&mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up at once, so a standby instance takes over without waiting for expiry.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the leader lease"),
            Err(e) => tracing::warn!(error = %e, "the lease task failed"),
        }
    }
}

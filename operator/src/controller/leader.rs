//! Leader election on a coordination.k8s.io Lease, so two operator replicas can run and
//! only one reconciles. Losing the lease ends the process: a restarted replica starts
//! clean as a standby, which is simpler and safer than stopping controllers in place.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

pub struct LeaderOptions {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub duration_seconds: u64,
    pub grace_seconds: u64,
}

/// Starts competing for the lease. The receiver turns true while this replica leads.
pub async fn elect(client: Client, opts: LeaderOptions) -> anyhow::Result<watch::Receiver<bool>> {
    let manager = LeaseManagerBuilder::new(client, opts.lease_name)
        .with_namespace(opts.namespace)
        .with_parameters(
            LeaseParams::new(opts.identity, opts.duration_seconds, opts.grace_seconds)
                .with_field_manager(crate::api::FIELD_MANAGER.to_string() + "-lease"),
        )
        .build()
        .await?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}

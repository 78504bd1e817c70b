//! The Karpenter NodePool watch: in a cluster whose node autoscaler is Karpenter, the pools
//! that can scale from zero are its NodePools, kept current here and read by the node
//! watch (controller/cache/nodes.rs) next to the pools declared in the configuration.
//!
//! Karpenter is optional: until its NodePool CRD is served (checked again every
//! `RECHECK`), after it is removed, and when the operator may not list NodePools, this
//! yields no pools and the operator behaves as it does without Karpenter.

use std::sync::Arc;
use std::time::Duration;

use deepseek_planner::Catalog;
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::config::DeclaredPool;
use crate::inventory::karpenter::{pools_from_objects, Skipped};

/// How often to look again for the NodePool CRD when it is not there.
const RECHECK: Duration = Duration::from_secs(30);

/// Pools read from NodePools; empty without Karpenter.
pub type NodePoolPools = watch::Receiver<Arc<Vec<DeclaredPool>>>;

/// Starts the watch (a background task that ends when every receiver is gone).
pub fn watch_nodepools(client: Client, catalog: Arc<Catalog>) -> NodePoolPools {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(async move {
        // Each round: wait for the CRD, then watch until the CRD goes away again.
        while let Some(resource) = find_crd(&client, &tx).await {
            tracing::info!("Karpenter NodePools found: reading them as pools that scale from zero");
            if !watch_until_gone(&client, &resource, &catalog, &tx).await {
                return;
            }
            tracing::info!("Karpenter's NodePool API is gone: no NodePool pools");
            publish(&tx, Vec::new());
        }
    });
    rx
}

fn gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool")
}

/// The NodePool API once it is served; `None` once nobody reads the pools any more.
async fn find_crd(
    client: &Client,
    tx: &watch::Sender<Arc<Vec<DeclaredPool>>>,
) -> Option<ApiResource> {
    loop {
        match kube::discovery::pinned_kind(client, &gvk()).await {
            Ok((ar, _)) => return Some(ar),
            Err(e) => tracing::debug!(error = %e, "no Karpenter NodePool API (yet)"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = tx.closed() => return None,
        }
    }
}

/// Sends the pools when they changed (NodePool status changes all the time; pools rarely).
fn publish(tx: &watch::Sender<Arc<Vec<DeclaredPool>>>, pools: Vec<DeclaredPool>) {
    tx.send_if_modified(|p| {
        if **p == pools {
            return false;
        }
        *p = Arc::new(pools);
        true
    });
}

/// Watches NodePools into pools. Returns `true` when the API went away (look for it
/// again), `false` when nobody reads the pools any more.
async fn watch_until_gone(
    client: &Client,
    resource: &ApiResource,
    catalog: &Catalog,
    tx: &watch::Sender<Arc<Vec<DeclaredPool>>>,
) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    // A reflector store: it swaps in a relist only once the list is whole.
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(super::watch::backoff());
    let mut stream = std::pin::pin!(stream);
    let mut last_skipped: Vec<Skipped> = Vec::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = tx.closed() => return false,
        };
        match event {
            // Mid-list: the store still shows the previous list.
            Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                // The CRD removed (Karpenter uninstalled): its NodePools are no pools.
                if kube::discovery::pinned_kind(client, &gvk()).await.is_err() {
                    return true;
                }
                tracing::warn!(error = %e, "NodePool watch error (RBAC: nodepools list/watch?)");
                continue;
            }
            None => return false,
        }
        // By name, so the same NodePools always make the same pools in the same order.
        let mut current = store.state();
        current.sort_by_key(|o| o.name_any());
        let (pools, skipped) = pools_from_objects(current.iter().map(|o| o.as_ref()), catalog);
        if skipped != last_skipped {
            for s in &skipped {
                tracing::info!(nodepool = %s.nodepool, reason = %s.reason, "NodePool is not a pool for models");
            }
            last_skipped = skipped;
        }
        publish(tx, pools);
    }
}

//! The Karpenter NodePool watch: in a cluster whose node autoscaler is Karpenter, the pools
//! that can scale from zero are its NodePools, kept current here and read by the node
//! watch (controller/nodes.rs) next to the pools declared in the configuration.
//!
//! Karpenter is optional: until its NodePool CRD is served (checked again every
//! `RECHECK`), and when the operator may not list NodePools, this yields no pools and the
//! operator behaves as it does without Karpenter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deepseek_planner::Catalog;
use futures::StreamExt;
use kube::api::{DynamicObject, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
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
        let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
        let resource = loop {
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok((ar, _)) => break ar,
                Err(e) => tracing::debug!(error = %e, "no Karpenter NodePool API (yet)"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RECHECK) => {}
                _ = tx.closed() => return,
            }
        };
        tracing::info!("Karpenter NodePools found: reading them as pools that scale from zero");
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut current: BTreeMap<String, DynamicObject> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, DynamicObject>> = None;
        let mut last_skipped: Vec<Skipped> = Vec::new();
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = tx.closed() => return,
            };
            match event {
                Some(Ok(watcher::Event::Init)) => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Some(Ok(watcher::Event::InitApply(o))) => {
                    listing.get_or_insert_default().insert(o.name_any(), o);
                    continue;
                }
                Some(Ok(watcher::Event::InitDone)) => current = listing.take().unwrap_or_default(),
                Some(Ok(watcher::Event::Apply(o))) => {
                    current.insert(o.name_any(), o);
                }
                Some(Ok(watcher::Event::Delete(o))) => {
                    current.remove(&o.name_any());
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "NodePool watch error (RBAC: nodepools get/list/watch?)");
                    continue;
                }
                None => return,
            }
            let (pools, skipped) = pools_from_objects(current.values(), &catalog);
            if skipped != last_skipped {
                for s in &skipped {
                    tracing::info!(nodepool = %s.nodepool, reason = %s.reason, "NodePool is not a pool for models");
                }
                last_skipped = skipped;
            }
            // NodePool status changes all the time; pools rarely do.
            tx.send_if_modified(|p| {
                if **p == pools {
                    return false;
                }
                *p = Arc::new(pools);
                true
            });
        }
    });
    rx
}

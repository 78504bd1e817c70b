//! The Node watch: keeps the Node cache, and from it the current pools, which reconcile and
//! the autoscaler read instead of regrouping every Node themselves.
//!
//! Nodes change all the time (heartbeats, conditions, images); pools rarely do. So each
//! event is reduced to a digest of what planning reads, pools are regrouped at most every
//! `DEBOUNCE` and only when some digest changed, and every model is re-planned only when the
//! pools' fingerprint changed.
//!
//! Nodes are cached as `NodeFacts` (inventory/node_facts.rs): at thousands of nodes the
//! whole Node, even stripped, was the operator's largest item.
//!
//! The declared pools are the configuration's plus, when Karpenter runs, one per NodePool
//! (controller/cache/nodepools.rs); a NodePool change regroups like a node change.
//!
//! A node that is lost (NotReady or unreachable) or comes back, or is deleted, is also
//! reported by name: group judgement counts a lost node's bound from its transition, and a
//! model whose pods were already NotReady gets no pod event for it, so without this it
//! would notice only at its next requeue (up to 30 s for an unconverged model).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use deepseek_planner::Catalog;
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::config::OperatorConfig;
use crate::inventory::{fingerprint, pools_from_facts, NodeFacts, Pool};

const DEBOUNCE: Duration = Duration::from_millis(250);

/// Latest pools; empty until the first full list of Nodes has been grouped.
pub type Pools = watch::Receiver<Arc<Vec<Pool>>>;

/// What about a node planning reads: labels, taints, allocatable, schedulability, Ready.
/// In-process only, so the std hasher's lack of cross-version stability does not matter.
pub fn relevance_digest(node: &NodeFacts) -> u64 {
    let mut h = DefaultHasher::new();
    node.labels().hash(&mut h);
    node.unschedulable().hash(&mut h);
    for t in node.taints() {
        (&t.key, &t.value, &t.effect).hash(&mut h);
    }
    for a in node.allocatable_all() {
        a.hash(&mut h);
    }
    node.ready().is_some_and(|r| r.is_true).hash(&mut h);
    h.finish()
}

/// Per node seen, the digest of what planning reads and whether it is lost: one map, as
/// node names at 5,000 nodes are not free.
#[derive(Default)]
pub struct SeenNodes(HashMap<String, (u64, bool)>);

/// What changed about a node just seen.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// What planning reads of it (`relevance_digest`), or it is new.
    pub relevant: bool,
    /// It turned lost or came back (never for a node seen for the first time: its models
    /// are reconciled when they start anyway).
    pub lost: bool,
}

impl SeenNodes {
    /// Records a node as seen.
    pub fn observe(&mut self, node: &NodeFacts) -> Change {
        let now = (
            relevance_digest(node),
            crate::decide::groups::node_lost_since(node).is_some(),
        );
        let was = self.0.insert(node.name().to_string(), now);
        Change {
            relevant: was.is_none_or(|(d, _)| d != now.0),
            lost: was.is_some_and(|(_, l)| l != now.1),
        }
    }

    /// Forgets a deleted node; true when it was known.
    pub fn forget(&mut self, name: &str) -> bool {
        self.0.remove(name).is_some()
    }
}

/// Starts the watch. Returns the Node cache and the pools; `trigger` fires when the
/// pools' fingerprint changes, `lost` gets the name of every node that turned lost, came
/// back or was deleted.
pub fn watch_nodes(
    client: Client,
    catalog: Arc<Catalog>,
    config: Arc<OperatorConfig>,
    trigger: mpsc::Sender<()>,
    lost: mpsc::Sender<String>,
) -> (Store<NodeFacts>, Pools) {
    let (reader, writer) = reflector::store::<NodeFacts>();
    let (pools_tx, pools_rx) = watch::channel(Arc::new(Vec::new()));
    let store = reader.clone();
    let mut nodepools =
        crate::controller::cache::nodepools::watch_nodepools(client.clone(), catalog.clone());
    let mut nodepools_open = true;
    let stream = reflector::reflector(
        writer,
        // NodeFacts keeps only what planning reads (inventory/node_facts.rs); the
        // resourceVersion the watcher needed is dropped once it has read it.
        watcher(
            Api::<NodeFacts>::all(client),
            crate::controller::cache::watch::config(),
        )
        .modify(|n| n.meta_mut().resource_version = None),
    )
    .backoff(crate::controller::cache::watch::backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut seen = SeenNodes::default();
        let mut listing = true;
        let mut dirty = false;
        let mut last_fingerprint: Option<String> = None;
        let mut tick = tokio::time::interval(DEBOUNCE);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n))) => {
                        let change = seen.observe(&n);
                        dirty |= change.relevant;
                        if change.lost {
                            // Full only if thousands of nodes flap at once; the pools'
                            // trigger then re-plans every model anyway.
                            let _ = lost.try_send(n.name_any());
                        }
                    }
                    Some(Ok(watcher::Event::Delete(n))) => {
                        dirty = true;
                        if seen.forget(&n.name_any()) {
                            let _ = lost.try_send(n.name_any());
                        }
                    }
                    Some(Ok(watcher::Event::Init)) => listing = true,
                    Some(Ok(watcher::Event::InitDone)) => {
                        listing = false;
                        dirty = true;
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "node watch error"),
                    None => break,
                },
                changed = nodepools.changed(), if nodepools_open => match changed {
                    Ok(()) => dirty = true,
                    Err(_) => nodepools_open = false,
                },
                _ = tick.tick() => {
                    if !dirty || listing {
                        continue;
                    }
                    dirty = false;
                    let nodes = reader.state();
                    let refs: Vec<&NodeFacts> = nodes.iter().map(|n| n.as_ref()).collect();
                    let declared: Vec<_> = config
                        .declared_pools
                        .iter()
                        .chain(nodepools.borrow_and_update().iter())
                        .cloned()
                        .collect();
                    let pools = pools_from_facts(&refs, &catalog, &declared);
                    let fp = fingerprint(&pools);
                    let _ = pools_tx.send(Arc::new(pools));
                    if last_fingerprint.as_ref() != Some(&fp) {
                        if last_fingerprint.is_some() {
                            let _ = trigger.try_send(());
                        }
                        last_fingerprint = Some(fp);
                    }
                }
            }
        }
    });
    (store, pools_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(yaml: &str) -> NodeFacts {
        serde_yaml::from_str(yaml).expect("node")
    }

    #[test]
    fn a_node_turning_lost_coming_back_or_going_is_reported_once() {
        let ready = node("metadata: {name: n}\nstatus: {conditions: [{type: Ready, status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z'}]}\n");
        let unknown = node("metadata: {name: n}\nstatus: {conditions: [{type: Ready, status: Unknown, lastTransitionTime: '2026-01-01T00:01:00Z'}]}\n");
        let tainted = node("metadata: {name: n}\nspec: {taints: [{key: node.kubernetes.io/unreachable, effect: NoExecute, timeAdded: '2026-01-01T00:01:00Z'}]}\nstatus: {conditions: [{type: Ready, status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z'}]}\n");
        let mut l = SeenNodes::default();
        let lost = |c: Change| c.lost;
        assert!(!lost(l.observe(&unknown)), "first sight reports nothing");
        assert!(!lost(l.observe(&unknown)), "no change");
        assert!(lost(l.observe(&ready)), "came back");
        assert!(!lost(l.observe(&ready)), "a heartbeat is no change");
        assert!(lost(l.observe(&tainted)), "an unreachable taint is lost");
        let relevant = |c: Change| c.relevant;
        assert!(
            relevant(l.observe(&ready)),
            "the taint went: planning reads taints"
        );
        assert!(!relevant(l.observe(&ready)), "seen as it was");
        let mut fresh = SeenNodes::default();
        assert!(relevant(fresh.observe(&ready)), "a new node is relevant");
        assert!(l.forget("n"), "deleted");
        assert!(!l.forget("n"), "already forgotten");
    }

    #[test]
    fn heartbeats_do_not_change_the_digest_but_capacity_does() {
        let base = "metadata: {name: n, labels: {a: b}}\nstatus:\n  allocatable: {nvidia.com/gpu: '8'}\n  conditions: [{type: Ready, status: 'True', lastHeartbeatTime: '2026-01-01T00:00:00Z'}]\n";
        let beat = base.replace("00:00:00Z", "00:00:40Z");
        assert_eq!(
            relevance_digest(&node(base)),
            relevance_digest(&node(&beat))
        );
        let smaller = base.replace("'8'", "'4'");
        assert_ne!(
            relevance_digest(&node(base)),
            relevance_digest(&node(&smaller))
        );
        let not_ready = base.replace("status: 'True'", "status: 'False'");
        assert_ne!(
            relevance_digest(&node(base)),
            relevance_digest(&node(&not_ready))
        );
        let relabelled = base.replace("{a: b}", "{a: c}");
        assert_ne!(
            relevance_digest(&node(base)),
            relevance_digest(&node(&relabelled))
        );
    }
}

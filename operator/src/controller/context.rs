//! State shared by every reconcile: client, catalog, configuration, the Node, pod and
//! child caches, metrics, the event recorder and what is remembered per model.

use std::sync::Arc;

use deepseek_planner::Catalog;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;

use super::metrics::Metrics;
use crate::api::DeepSeekModel;
use crate::config::OperatorConfig;
use crate::inventory::NodeFacts;

pub struct Context {
    pub client: Client,
    pub catalog: Arc<Catalog>,
    pub config: Arc<OperatorConfig>,
    /// Nodes, kept current by a watch; planning reads it without API calls.
    pub nodes: Store<NodeFacts>,
    /// Pods, kept current by a watch and indexed by model and node (pod_cache.rs).
    pub pods: super::pod_cache::PodCache,
    /// Pools grouped from `nodes` (and the declared pools), kept current by the node watch.
    pub pools: super::nodes::Pools,
    pub metrics: Arc<Metrics>,
    /// Events about models (events.rs).
    pub events: super::events::EventWriter,
    /// The namespaces whose models, pods and services the operator lists and watches.
    pub scope: super::scope::Scope,
    /// Models to reconcile that no watch of theirs wakes: disaggregated models whose role
    /// models' status changed (controller/disaggregated.rs), models with pods on a node
    /// that was just lost or came back (nodes.rs). Every controller listens, each finds
    /// its own.
    pub wake: tokio::sync::broadcast::Sender<ObjectRef<DeepSeekModel>>,
    /// The model's Services, NetworkPolicy and ScaledObject as last seen (child_cache.rs).
    pub children: super::child_cache::ChildCache,
    /// What the controller remembers of each model between passes (memory.rs).
    pub memory: super::memory::Memory,
}

//! State shared by every reconcile: client, catalog, configuration, the Node, pod and
//! child caches, metrics, the event recorder and what is remembered per model.

use std::sync::Arc;

use deepseek_planner::Catalog;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;

use crate::api::DeepSeekModel;
use crate::config::OperatorConfig;
use crate::controller::metrics::Metrics;
use crate::inventory::NodeFacts;

pub struct Context {
    pub client: Client,
    pub catalog: Arc<Catalog>,
    pub config: Arc<OperatorConfig>,
    /// Nodes, kept current by a watch; planning reads it without API calls.
    pub nodes: Store<NodeFacts>,
    /// Pods, kept current by a watch and indexed by model and node (cache/pods.rs).
    pub pods: crate::controller::cache::pods::PodCache,
    /// Pools grouped from `nodes` (and the declared pools), kept current by the node watch.
    pub pools: crate::controller::cache::nodes::Pools,
    pub metrics: Arc<Metrics>,
    /// Events about models (events.rs).
    pub events: crate::controller::events::EventWriter,
    /// The namespaces whose models, pods and services the operator lists and watches.
    pub scope: crate::controller::scope::Scope,
    /// Models to reconcile that no watch of theirs wakes: disaggregated models whose role
    /// models' status changed (controller/reconcile_roles.rs), models with pods on a node
    /// that was just lost or came back (cache/nodes.rs). Every controller listens, each finds
    /// its own.
    pub wake: tokio::sync::broadcast::Sender<ObjectRef<DeepSeekModel>>,
    /// The model's Services, NetworkPolicy and ScaledObject as last seen (cache/children.rs).
    pub children: crate::controller::cache::children::ChildCache,
    /// What the controller remembers of each model between passes (memory.rs).
    pub memory: crate::controller::memory::Memory,
}

//! State shared by every reconcile: client, catalog, configuration, the Node and pod
//! caches, metrics and the event recorder.

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
    /// Pods created that the pod cache has not shown yet.
    pub expected: super::expect::Expectations,
    /// Pools grouped from `nodes` (and the declared pools), kept current by the node watch.
    pub pools: super::nodes::Pools,
    pub metrics: Arc<Metrics>,
    /// Events about models (events.rs).
    pub events: super::events::EventWriter,
    /// The namespaces whose models, pods and services the operator lists and watches.
    pub scope: super::scope::Scope,
    /// Models whose pod creation the API server refused, and when to try again.
    pub creation: super::backoff::CreationBackoff,
    /// Models whose partly placed group was removed, and when to create it again.
    pub capacity: super::capacity::CapacityRetry,
    /// Models' recent recreations of crashed groups (crash_backoff.rs).
    pub crashes: super::crash_backoff::CrashMemory,
    /// Models to reconcile that no watch of theirs wakes: disaggregated models whose role
    /// models' status changed (controller/disaggregated.rs), models with pods on a node
    /// that was just lost or came back (nodes.rs). Every controller listens, each finds
    /// its own.
    pub wake: tokio::sync::broadcast::Sender<ObjectRef<DeepSeekModel>>,
    /// The model's Services, NetworkPolicy and ScaledObject as last seen (child_cache.rs).
    pub children: super::child_cache::ChildCache,
    /// Per unconverged model, how long its next requeue waits (busy_requeue.rs).
    pub busy: super::busy_requeue::BusyRequeue,
    /// Statuses written that the model cache may not show yet (status_memo.rs).
    pub written: super::status_memo::StatusMemo,
}

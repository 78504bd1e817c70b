//! Grouping Nodes into pools.
//!
//! A pool is a set of schedulable, Ready nodes with the same accelerator product, the same
//! number of allocatable accelerators and the same taints. Pods select a pool by its
//! identifying labels only (device plugin, feature discovery and cloud labels), never by
//! hostname, so a pool that grows or shrinks keeps the same selector and no pod is
//! restarted because a node came or went.

use std::collections::BTreeMap;
use std::sync::Arc;

use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Taint};
use sha2::{Digest, Sha256};

use super::karpenter::NODEPOOL_LABEL;
use super::node_facts::{LabelSet, NodeFacts};
use crate::api::Vendor;
use crate::config::DeclaredPool;

/// Label keys that identify an accelerator product. A pool's selector is the subset of
/// these that all its nodes share.
pub const IDENTIFYING_LABELS: &[&str] = &[
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "amd.com/gpu.product-name",
    "beta.amd.com/gpu.product-name",
    "accelerator",
    "accelerator-type",
    "node.kubernetes.io/npu.chip.name",
    "karpenter.k8s.aws/instance-gpu-name",
    "kubernetes.azure.com/accelerator",
    "node.kubernetes.io/instance-type",
];

/// Labels whose presence marks an accelerator node; CPU pods require their absence so
/// they never take a GPU node's CPU and memory.
pub const CPU_EXCLUDED_LABELS: &[&str] = &[
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "amd.com/gpu.product-name",
    "accelerator",
];

/// A group of interchangeable nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Stable name: `<accelerator>-x<per node>` (plus a taint suffix when needed).
    pub name: String,
    pub accelerator: String,
    pub vendor: Vendor,
    /// Extended resource requested per pod; empty for CPU.
    pub resource_name: String,
    pub per_node: u32,
    /// Ready, schedulable nodes now in the pool (empty for a declared pool at zero).
    /// Shared: placement copies the pools for every model it places (`narrowed`), and
    /// at thousands of nodes copying the names and labels was most of its work (issue 12).
    pub nodes: Arc<[String]>,
    /// Most nodes one replica may span: the live count, or a declared pool's maximum.
    pub max_nodes: u32,
    /// Labels pods select on.
    pub selector: BTreeMap<String, String>,
    /// Labels every node of the pool carries (for matching a manifest's nodeSelector).
    pub common_labels: BTreeMap<String, String>,
    /// Per node of `nodes` (same order), its labels that are not common: a manifest's
    /// nodeSelector may pick some nodes of a pool (`narrowed`). Their strings are the Node
    /// cache's: at 5,000 nodes owned maps of them were 3.5 MB.
    pub member_labels: Arc<[LabelSet]>,
    pub taints: Vec<Taint>,
    /// From the operator config rather than live nodes.
    pub declared: bool,
    /// Smallest allocatable memory of the pool's nodes, GiB (sizes CPU serving).
    pub node_memory_gib: Option<f64>,
    /// The Karpenter NodePool that provides the nodes, for a pool read from one.
    pub nodepool: Option<String>,
    /// Namespaces whose models may use the pool (a declared pool's `namespaces`); empty:
    /// every namespace.
    pub namespaces: Vec<String>,
}

impl Pool {
    /// The part of the pool a manifest's nodeSelector picks: the whole pool when every node
    /// carries the labels, the matching nodes when only some do (two node groups of one
    /// product, told apart by a label), `None` when none does. A declared pool has no
    /// live nodes to pick from: it matches only on its own labels.
    pub fn narrowed(&self, selector: &BTreeMap<String, String>) -> Option<Pool> {
        let everywhere = |(k, v): (&String, &String)| self.common_labels.get(k) == Some(v);
        if selector.iter().all(everywhere) {
            return Some(self.clone());
        }
        if self.declared {
            return None;
        }
        let picked: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                selector.iter().all(|(k, v)| {
                    self.common_labels.get(k) == Some(v)
                        || self.member_labels.get(i).and_then(|m| m.get(k)) == Some(v.as_str())
                })
            })
            .collect();
        let first = *picked.first()?;
        let mut shared: BTreeMap<String, String> = self
            .member_labels
            .get(first)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        for &i in &picked[1..] {
            shared.retain(|k, v| {
                self.member_labels.get(i).and_then(|m| m.get(k)) == Some(v.as_str())
            });
        }
        let mut pool = self.clone();
        pool.nodes = picked.iter().map(|&i| self.nodes[i].clone()).collect();
        pool.member_labels = picked
            .iter()
            .map(|&i| {
                self.member_labels
                    .get(i)
                    .map(|m| m.filtered(|k| !shared.contains_key(k)))
                    .unwrap_or_default()
            })
            .collect();
        pool.max_nodes = picked.len() as u32;
        pool.common_labels.extend(shared);
        Some(pool)
    }

    /// Whether models of `namespace` may use the pool.
    pub fn open_to(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// Human description, e.g. "2 nodes of 8 x NVIDIA H100 SXM".
    pub fn describe(&self, catalog: &Catalog) -> String {
        let product = catalog
            .accelerator(&self.accelerator)
            .map(|a| a.display_name.clone())
            .unwrap_or_else(|| self.accelerator.clone());
        let n = if self.declared {
            self.max_nodes
        } else {
            self.nodes.len() as u32
        };
        let noun = if n == 1 { "node" } else { "nodes" };
        let declared = match (&self.nodepool, self.declared) {
            (Some(np), _) => format!(" (Karpenter NodePool {np}, scales from zero)"),
            (None, true) => " (declared, scales from zero)".to_string(),
            (None, false) => String::new(),
        };
        format!("{n} {noun} of {} x {product}{declared}", self.per_node)
    }
}

/// A node as grouping needs it: borrowed, so grouping thousands of nodes copies little.
struct NodeView<'a> {
    node: &'a NodeFacts,
    taints: Vec<&'a Taint>,
}

fn view(node: &NodeFacts) -> NodeView<'_> {
    let mut taints: Vec<&Taint> = node.taints().iter().collect();
    // Taints the node lifecycle adds transiently say nothing about the pool.
    taints.retain(|t| !t.key.starts_with("node.kubernetes.io/"));
    taints.sort_by(|a, b| (&a.key, &a.effect).cmp(&(&b.key, &b.effect)));
    NodeView { node, taints }
}

/// The taints as one comparable string, the grouping key's taint part.
fn taint_signature(taints: &[&Taint]) -> String {
    taints
        .iter()
        .map(|t| {
            format!(
                "{}={}:{};",
                t.key,
                t.value.as_deref().unwrap_or(""),
                t.effect
            )
        })
        .collect()
}

/// Parses a memory quantity ("512Gi", "1024Mi", "549755813888", "64G") into GiB.
pub fn memory_gib(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    Some(n * factor / 1024.0_f64.powi(3))
}

/// A short, stable suffix that tells apart pools differing only in taints.
fn taint_suffix(signature: &str) -> String {
    if signature.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(signature.as_bytes());
    format!("-t{:02x}{:02x}", digest[0], digest[1])
}

/// The NodePool a node was created for, when a declared pool reads that NodePool.
fn nodepool_of<'a>(node: &'a NodeFacts, declared: &[DeclaredPool]) -> Option<&'a str> {
    let np = node.label(NODEPOOL_LABEL)?;
    declared
        .iter()
        .any(|d| d.nodepool.as_deref() == Some(np))
        .then_some(np)
}

/// Groups live nodes into pools and appends the declared pools. Nodes a Karpenter NodePool
/// created belong to that NodePool's pool rather than to a live pool of their own, so a
/// model keeps its pool while its nodes come and go. Nodes whose accelerator the catalog
/// cannot identify are left out.
pub fn pools_from_nodes(
    nodes: &[&Node],
    catalog: &Catalog,
    declared: &[DeclaredPool],
) -> Vec<Pool> {
    let facts: Vec<NodeFacts> = nodes.iter().map(|n| NodeFacts::from(*n)).collect();
    let refs: Vec<&NodeFacts> = facts.iter().collect();
    pools_from_facts(&refs, catalog, declared)
}

/// `pools_from_nodes` over the operator's cached form of Nodes.
pub fn pools_from_facts(
    nodes: &[&NodeFacts],
    catalog: &Catalog,
    declared: &[DeclaredPool],
) -> Vec<Pool> {
    let mut groups: BTreeMap<(&str, u32, String), Vec<NodeView<'_>>> = BTreeMap::new();
    let mut by_nodepool: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // Control-plane nodes never serve models, whatever their labels and taints say.
    for node in nodes
        .iter()
        .copied()
        .filter(|n| n.usable() && !super::taints::is_control_plane(n) && !n.name().is_empty())
    {
        if let Some(np) = nodepool_of(node, declared) {
            by_nodepool
                .entry(np)
                .or_default()
                .push(node.name().to_string());
            continue;
        }
        let v = view(node);
        let (accel, per_node) = match catalog.identify_by(&|k| node.label(k)) {
            Some(a) if a.resource.is_some() => {
                let resource = a.resource.as_deref().unwrap_or_default();
                match node.devices(resource) {
                    Some(n) if n > 0 => (a.id.as_str(), n),
                    _ => continue,
                }
            }
            // Nodes with no accelerator labels serve as CPU nodes.
            None if !CPU_EXCLUDED_LABELS.iter().any(|k| node.label(k).is_some()) => ("cpu", 1),
            _ => continue,
        };
        let signature = taint_signature(&v.taints);
        groups
            .entry((accel, per_node, signature))
            .or_default()
            .push(v);
    }

    let mut pools = Vec::new();
    for ((accel, per_node, signature), members) in groups {
        let suffix = taint_suffix(&signature);
        let Some(a) = catalog.accelerator(accel) else {
            continue;
        };
        let mut common: BTreeMap<String, String> = members[0]
            .node
            .labels()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for m in &members[1..] {
            common.retain(|k, v| m.node.label(k) == Some(v.as_str()));
        }
        let selector: BTreeMap<String, String> = common
            .iter()
            .filter(|(k, _)| IDENTIFYING_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let node_memory_gib = members
            .iter()
            .filter_map(|m| m.node.allocatable("memory").and_then(memory_gib))
            .reduce(f64::min);
        let member_labels = members
            .iter()
            .map(|m| m.node.labels().filtered(|k| !common.contains_key(k)))
            .collect();
        pools.push(Pool {
            name: format!("{accel}-x{per_node}{suffix}"),
            accelerator: accel.to_string(),
            vendor: a.vendor,
            resource_name: a.resource.clone().unwrap_or_default(),
            per_node,
            max_nodes: members.len() as u32,
            nodes: members.iter().map(|m| m.node.name().to_string()).collect(),
            selector,
            common_labels: common,
            member_labels,
            taints: members[0].taints.iter().map(|t| (*t).clone()).collect(),
            declared: false,
            node_memory_gib,
            nodepool: None,
            namespaces: Vec::new(),
        });
    }

    for d in declared {
        let Some(a) = catalog.accelerator(&d.product) else {
            continue;
        };
        let taints: Vec<Taint> = d
            .taints
            .iter()
            .map(|t| Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                time_added: None,
            })
            .collect();
        pools.push(Pool {
            name: d.name.clone(),
            accelerator: a.id.clone(),
            vendor: a.vendor,
            resource_name: a.resource.clone().unwrap_or_default(),
            per_node: d.accelerators_per_node,
            nodes: d
                .nodepool
                .as_deref()
                .and_then(|np| by_nodepool.get(np).cloned())
                .unwrap_or_default()
                .into(),
            max_nodes: d.max_nodes,
            selector: d.node_selector.clone(),
            common_labels: d.node_selector.clone(),
            member_labels: Arc::new([]),
            taints,
            declared: true,
            node_memory_gib: None,
            nodepool: d.nodepool.clone(),
            namespaces: d.namespaces.clone(),
        });
    }
    pools
}

/// A digest of what planning depends on, so the controller re-plans every model only when
/// pools change, not on every node heartbeat.
pub fn fingerprint(pools: &[Pool]) -> String {
    let mut h = Sha256::new();
    for p in pools {
        // Member labels too: a node labelled into a node group a nodeSelector names
        // makes room for a model that could not be placed.
        h.update(format!(
            "{}|{}|{}|{:?}|{:?};",
            p.name, p.per_node, p.max_nodes, p.selector, p.member_labels
        ));
        // Who may use a pool decides where models go too.
        if !p.namespaces.is_empty() {
            h.update(format!("ns{:?};", p.namespaces));
        }
    }
    format!("{:x}", h.finalize())
}

//! Where a group's pods may run: pinned to the planned accelerator product by the
//! catalog's own label values (never by what a pool's current nodes happen to share,
//! which is empty for a pool mixing H100 SXM and PCIe nodes), one node per rank, and one
//! zone per group where nodes say which zone they are in.

use std::collections::{BTreeMap, BTreeSet};

use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, PreferredSchedulingTerm, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::labels;
use super::Workload;
use crate::inventory::taints::CONTROL_PLANE_KEYS;
use crate::inventory::{Pool, CPU_EXCLUDED_LABELS};

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// GPU feature discovery's label for a node's NVLink domain (cluster UUID + clique id)
/// on rack-scale NVLink systems such as GB200 NVL72.
pub const NVLINK_CLIQUE_LABEL: &str = "nvidia.com/gpu.clique";

/// One node-affinity term of the product pin: every `is` label has one of its values and
/// no `is_not` label has any of its values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProductTerm {
    pub is: BTreeMap<String, Vec<String>>,
    pub is_not: BTreeMap<String, Vec<String>>,
}

impl ProductTerm {
    /// Whether a node with these labels satisfies the term.
    pub fn admits(&self, label: &dyn Fn(&str) -> Option<String>) -> bool {
        self.is
            .iter()
            .all(|(k, vs)| label(k).is_some_and(|v| vs.contains(&v)))
            && self
                .is_not
                .iter()
                .all(|(k, vs)| label(k).is_none_or(|v| !vs.contains(&v)))
    }
}

/// Node-affinity terms (ORed) that only nodes carrying `product` satisfy: one per catalog
/// label matcher with exact values. A prefix matcher (`p5.` instance types, Ascend chip
/// names such as `910B3`) cannot be written as a node selector, so it contributes the
/// values the pool's own nodes carry that match it (a pool mixing 910B3 and 910B4 nodes
/// pins to exactly those two). A value an earlier catalog entry claims when the node also
/// carries its `requires` labels (an H20 reporting 141 GB is `h20-141gb`, not `h20`)
/// excludes those labels' values; a value an earlier entry claims outright is dropped.
/// A declared pool adds its declared selector. Empty for CPU pools, which exclude
/// accelerator nodes instead, and for a pool whose product nothing identifies: placement
/// refuses such a pool ([`pins_product`]), so no accelerator pod is ever created without
/// a product pin.
pub fn product_terms(catalog: &Catalog, pool: &Pool, product: &str) -> Vec<ProductTerm> {
    if pool.resource_name.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let position = catalog.accelerators().iter().position(|a| a.id == product);
    if let (Some(a), Some(position)) = (catalog.accelerator(product), position) {
        // Identification takes the first entry that matches: entries before this one win.
        let earlier = &catalog.accelerators()[..position];
        for m in &a.node_labels {
            let mut values: BTreeSet<String> = m.values.iter().cloned().collect();
            if !m.prefixes.is_empty() {
                let by_prefix = |v: &&str| m.prefixes.iter().any(|p| v.starts_with(p.as_str()));
                let common = pool.common_labels.get(&m.key).map(String::as_str);
                let members = pool.member_labels.iter().filter_map(|l| l.get(&m.key));
                values.extend(
                    common
                        .into_iter()
                        .chain(members)
                        .filter(by_prefix)
                        .map(str::to_string),
                );
            }
            let mut is_not: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for q in earlier
                .iter()
                .flat_map(|e| &e.node_labels)
                .filter(|q| q.key == m.key)
            {
                let claims = |v: &String| {
                    q.values.contains(v) || q.prefixes.iter().any(|p| v.starts_with(p.as_str()))
                };
                if !values.iter().any(claims) {
                    continue;
                }
                if q.requires.is_empty() {
                    values.retain(|v| !claims(v));
                } else {
                    for (k, v) in &q.requires {
                        is_not.entry(k.clone()).or_default().push(v.clone());
                    }
                }
            }
            if values.is_empty() {
                continue;
            }
            let mut is = BTreeMap::from([(m.key.clone(), values.into_iter().collect())]);
            for (k, v) in &m.requires {
                is.insert(k.clone(), vec![v.clone()]);
            }
            terms.push(ProductTerm { is, is_not });
        }
    }
    if pool.declared && !pool.selector.is_empty() {
        terms.push(ProductTerm {
            is: pool
                .selector
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
            is_not: BTreeMap::new(),
        });
    }
    terms
}

/// Whether pods planned on `pool` can be pinned to its product: always for CPU pools,
/// otherwise when [`product_terms`] gives at least one term. `Err` says why not.
pub fn pins_product(catalog: &Catalog, pool: &Pool) -> Result<(), String> {
    if pool.resource_name.is_empty() || !product_terms(catalog, pool, &pool.accelerator).is_empty()
    {
        return Ok(());
    }
    Err(format!(
        "pool {} of {}: no node label identifies {} (the catalog has no label value for it{}), so its pods could land on any {} node; declare the pool in the operator configuration with a nodeSelector that only its nodes carry",
        pool.name,
        pool.accelerator,
        pool.accelerator,
        if pool.declared { " and the declared pool has no nodeSelector" } else { "" },
        pool.resource_name,
    ))
}

/// Where a model's small helpers (its front, router and KV store: CPU only) should run:
/// preferably on a node with no accelerator, so they neither sit on an accelerator node's
/// CPU and memory nor keep a node autoscaler from removing an empty GPU node (Karpenter's
/// `WhenEmpty` counts any pod but a DaemonSet's). Preferred, not required: a cluster of
/// accelerator nodes only still runs them.
pub fn general_nodes() -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 100,
                    preference: NodeSelectorTerm {
                        match_expressions: Some(CPU_EXCLUDED_LABELS.iter().map(absent).collect()),
                        match_fields: None,
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    }
}

/// Control-plane nodes never run a model's pods: the pool inventory leaves them out, and
/// every pod's node affinity says so too, so a manifest that tolerates every taint
/// still cannot reach them. Not on a Karpenter NodePool's pool: its nodes are never the
/// control plane, and Karpenter refuses to provision for a pod that names a label of the
/// restricted `kubernetes.io` domain ("label is restricted"), so the group would never
/// get its nodes.
fn not_control_plane(w: &Workload) -> impl Iterator<Item = NodeSelectorRequirement> {
    let keys = if w.pool.nodepool.is_some() {
        &[][..]
    } else {
        CONTROL_PLANE_KEYS
    };
    keys.iter().map(absent)
}

/// The node has no label `key`.
fn absent(key: &&str) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: (*key).into(),
        operator: "DoesNotExist".into(),
        values: None,
    }
}

fn node_affinity(w: &Workload) -> Option<NodeAffinity> {
    let terms: Vec<NodeSelectorTerm> = if w.pool.resource_name.is_empty() {
        // CPU serving never takes an accelerator node's CPU and memory.
        vec![NodeSelectorTerm {
            match_expressions: Some(
                CPU_EXCLUDED_LABELS
                    .iter()
                    .map(absent)
                    .chain(not_control_plane(w))
                    .collect(),
            ),
            match_fields: None,
        }]
    } else {
        w.product_terms
            .iter()
            .map(|term| NodeSelectorTerm {
                match_expressions: Some(
                    term.is
                        .iter()
                        .map(|(k, vs)| (k, "In", vs))
                        .chain(term.is_not.iter().map(|(k, vs)| (k, "NotIn", vs)))
                        .map(|(k, op, vs)| NodeSelectorRequirement {
                            key: k.clone(),
                            operator: op.into(),
                            values: Some(vs.clone()),
                        })
                        .chain(not_control_plane(w))
                        .collect(),
                ),
                match_fields: None,
            })
            .collect()
    };
    (!terms.is_empty()).then(|| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: terms,
        }),
        ..Default::default()
    })
}

/// The whole affinity of a pod of group `gid`.
pub fn affinity(w: &Workload, gid: &str) -> Affinity {
    let same_group = |topology_key: &str| PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                labels::GROUP_ID.to_string(),
                gid.to_string(),
            )])),
            match_expressions: None,
        }),
        topology_key: topology_key.into(),
        ..Default::default()
    };
    // The ranks of a group each need a whole node.
    let anti = PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(vec![same_group(HOSTNAME_LABEL)]),
        ..Default::default()
    };
    // Ranks talk over the network every step: keep a multi-node group in one zone where
    // nodes say which zone they are in (preferred, so unlabelled nodes still qualify).
    // Tensor parallelism across nodes is only fast inside one NVLink domain: there the
    // ranks must share it (required; the scheduler lets a group's first pod through).
    let together = (w.nodes_per_group > 1).then(|| PodAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: same_group(ZONE_LABEL),
        }]),
        required_during_scheduling_ignored_during_execution: w
            .same_nvlink_domain
            .then(|| vec![same_group(NVLINK_CLIQUE_LABEL)]),
    });
    Affinity {
        node_affinity: node_affinity(w),
        pod_anti_affinity: Some(anti),
        pod_affinity: together,
    }
}

#[cfg(test)]
#[path = "affinity_tests.rs"]
mod tests;

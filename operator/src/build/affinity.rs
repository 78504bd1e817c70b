//! Where a group's pods may run: pinned to the planned accelerator product by the
//! catalog's own label values (never by what a pool's current nodes happen to share,
//! which is empty for a pool mixing H100 SXM and PCIe nodes), one node per rank, and one
//! zone per group where nodes say which zone they are in.

use std::collections::BTreeMap;

use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::labels;
use super::Workload;
use crate::inventory::{Pool, CPU_EXCLUDED_LABELS};

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// GPU feature discovery's label for a node's NVLink domain (cluster UUID + clique id)
/// on rack-scale NVLink systems such as GB200 NVL72.
pub const NVLINK_CLIQUE_LABEL: &str = "nvidia.com/gpu.clique";

/// Node-affinity terms (ORed) that only nodes carrying `product` satisfy: one per catalog
/// label matcher with exact values. A prefix matcher (`p5.` instance types) contributes
/// the pool's own value when the pool's nodes share one. A declared pool adds its
/// declared selector. Empty for CPU pools, which exclude accelerator nodes instead.
pub fn product_terms(
    catalog: &Catalog,
    pool: &Pool,
    product: &str,
) -> Vec<BTreeMap<String, Vec<String>>> {
    if pool.resource_name.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    if let Some(a) = catalog.accelerator(product) {
        for m in &a.node_labels {
            let mut values = m.values.clone();
            if let Some(v) = pool.common_labels.get(&m.key) {
                if m.prefixes.iter().any(|p| v.starts_with(p.as_str())) && !values.contains(v) {
                    values.push(v.clone());
                }
            }
            if values.is_empty() {
                continue;
            }
            let mut term = BTreeMap::from([(m.key.clone(), values)]);
            for (k, v) in &m.requires {
                term.insert(k.clone(), vec![v.clone()]);
            }
            terms.push(term);
        }
    }
    if pool.declared && !pool.selector.is_empty() {
        terms.push(
            pool.selector
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
        );
    }
    terms
}

fn node_affinity(w: &Workload) -> Option<NodeAffinity> {
    let terms: Vec<NodeSelectorTerm> = if w.pool.resource_name.is_empty() {
        // CPU serving never takes an accelerator node's CPU and memory.
        vec![NodeSelectorTerm {
            match_expressions: Some(
                CPU_EXCLUDED_LABELS
                    .iter()
                    .map(|k| NodeSelectorRequirement {
                        key: (*k).into(),
                        operator: "DoesNotExist".into(),
                        values: None,
                    })
                    .collect(),
            ),
            match_fields: None,
        }]
    } else {
        w.product_terms
            .iter()
            .map(|term| NodeSelectorTerm {
                match_expressions: Some(
                    term.iter()
                        .map(|(k, vs)| NodeSelectorRequirement {
                            key: k.clone(),
                            operator: "In".into(),
                            values: Some(vs.clone()),
                        })
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

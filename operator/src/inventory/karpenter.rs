//! Karpenter NodePools as pools that scale from zero.
//!
//! In a cluster run by Karpenter, accelerator nodes exist only while pods need them; what
//! the cluster can offer is written in its NodePools, not in its Nodes. This module turns
//! a NodePool object into the same [`DeclaredPool`] an administrator would otherwise write
//! by hand: the product from the template labels and requirements, the accelerators per
//! node from the instance types the NodePool allows, the ceiling from `spec.limits`. Pure:
//! the controller's NodePool watch feeds it objects and reads pools back.
//!
//! Nodes Karpenter created carry `karpenter.sh/nodepool=<name>`; inventory grouping folds
//! them into their NodePool's pool, so a model placed there before its nodes existed stays
//! on the same pool (and the same pod template) once they do.

use std::collections::BTreeMap;

use deepseek_planner::Catalog;
use kube::api::DynamicObject;
use serde::Deserialize;

use crate::config::{DeclaredPool, DeclaredTaint};

/// The label Karpenter puts on every node it creates, naming its NodePool.
pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
/// Accelerators per node for instance types this module does not know.
pub const PER_NODE_ANNOTATION: &str = "inference.deepseek-operator.dev/accelerators-per-node";
/// NodePool annotation naming the namespaces (comma-separated) whose models may use it,
/// as a declared pool's `namespaces`; absent: every namespace.
pub const NAMESPACES_ANNOTATION: &str = "inference.deepseek-operator.dev/namespaces";
/// Nodes assumed when a NodePool sets no limit on its accelerators (Karpenter would add
/// nodes without bound; the planner needs some ceiling for one replica's span).
pub const UNLIMITED_NODES: u32 = 64;
/// Karpenter's pod annotation that keeps a node from voluntary disruption while the pod
/// runs; set on every pod placed on a NodePool's pool.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// Prefix of the pool names made from NodePools (the pool name is a pod label value).
pub const POOL_PREFIX: &str = "karpenter-";

const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";

/// Labels that state accelerators per node directly (GPU feature discovery, and the
/// well-known labels of the AWS, Azure and GKE Karpenter providers).
const COUNT_LABELS: &[&str] = &[
    "nvidia.com/gpu.count",
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.azure.com/sku-gpu-count",
    "cloud.google.com/gke-accelerator-count",
];

/// Accelerators per node of the accelerator instance types clouds sell, for NodePools that
/// allow instance types by name and carry no count label.
const INSTANCE_TYPES: &[(&str, u32)] = &[
    ("p5.48xlarge", 8),
    ("p5e.48xlarge", 8),
    ("p5en.48xlarge", 8),
    ("p4d.24xlarge", 8),
    ("p4de.24xlarge", 8),
    ("g6.xlarge", 1),
    ("g6.2xlarge", 1),
    ("g6.4xlarge", 1),
    ("g6.8xlarge", 1),
    ("g6.16xlarge", 1),
    ("g6.12xlarge", 4),
    ("g6.24xlarge", 4),
    ("g6.48xlarge", 8),
    ("g6e.xlarge", 1),
    ("g6e.12xlarge", 4),
    ("g6e.48xlarge", 8),
    ("Standard_ND96isr_H100_v5", 8),
    ("Standard_ND96isr_MI300X_v5", 8),
    ("Standard_ND96asr_v4", 8),
    ("Standard_ND96amsr_A100_v4", 8),
    ("a3-highgpu-8g", 8),
    ("a3-megagpu-8g", 8),
    ("a3-ultragpu-8g", 8),
    ("a2-highgpu-8g", 8),
    ("g2-standard-4", 1),
    ("g2-standard-48", 4),
];

/// The part of a NodePool's spec pools are made from.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    #[serde(default)]
    pub template: Template,
    #[serde(default)]
    pub limits: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default, Debug)]
pub struct Template {
    #[serde(default)]
    pub metadata: TemplateMetadata,
    #[serde(default)]
    pub spec: TemplateSpec,
}

#[derive(Deserialize, Default, Debug)]
pub struct TemplateMetadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Debug)]
pub struct TemplateSpec {
    #[serde(default)]
    pub requirements: Vec<Requirement>,
    #[serde(default)]
    pub taints: Vec<DeclaredTaint>,
}

#[derive(Deserialize, Debug)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// Why a NodePool is not a pool for models (logged by the watch, never an error: CPU
/// NodePools and NodePools for other workloads are normal).
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub nodepool: String,
    pub reason: String,
}

/// The pool a NodePool provides, or why it provides none.
pub fn pool_from_object(obj: &DynamicObject, catalog: &Catalog) -> Result<DeclaredPool, Skipped> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let skip = |reason: String| Skipped {
        nodepool: name.clone(),
        reason,
    };
    let spec: NodePoolSpec = match obj.data.get("spec") {
        Some(s) => serde_json::from_value(s.clone())
            .map_err(|e| skip(format!("spec does not parse: {e}")))?,
        None => return Err(skip("no spec".into())),
    };
    let annotations = obj.metadata.annotations.clone().unwrap_or_default();
    pool_from_nodepool(&name, &annotations, &spec, catalog).map_err(skip)
}

/// Every NodePool that provides a pool, in name order, plus the ones skipped.
pub fn pools_from_objects<'a>(
    objs: impl IntoIterator<Item = &'a DynamicObject>,
    catalog: &Catalog,
) -> (Vec<DeclaredPool>, Vec<Skipped>) {
    let mut pools = Vec::new();
    let mut skipped = Vec::new();
    for o in objs {
        match pool_from_object(o, catalog) {
            Ok(p) => pools.push(p),
            Err(s) => skipped.push(s),
        }
    }
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    (pools, skipped)
}

/// The conversion itself; `Err` says why the NodePool offers no accelerator pool.
pub fn pool_from_nodepool(
    name: &str,
    annotations: &BTreeMap<String, String>,
    spec: &NodePoolSpec,
    catalog: &Catalog,
) -> Result<DeclaredPool, String> {
    // Labels every node of the NodePool will carry: the template's, each requirement
    // that pins one value, and the NodePool's own label.
    let mut labels = spec.template.metadata.labels.clone();
    for r in &spec.template.spec.requirements {
        if r.operator == "In" && r.values.len() == 1 {
            labels.insert(r.key.clone(), r.values[0].clone());
        }
    }
    labels.insert(NODEPOOL_LABEL.into(), name.into());

    let accel = product(&labels, spec, catalog)?;
    let resource = accel
        .resource
        .clone()
        .ok_or_else(|| format!("{} is not an accelerator", accel.id))?;
    let per_node = per_node(annotations, &labels, spec)?;
    let max_nodes = ceiling(&spec.limits, &resource, per_node)?;
    Ok(DeclaredPool {
        name: pool_name(name),
        product: accel.id.clone(),
        accelerators_per_node: per_node,
        max_nodes,
        node_selector: labels,
        taints: spec.template.spec.taints.clone(),
        namespaces: annotations
            .get(NAMESPACES_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        nodepool: Some(name.to_string()),
    })
}

/// `karpenter-<nodepool>`, cut to a label value's 63 characters.
pub fn pool_name(nodepool: &str) -> String {
    let mut n = format!("{POOL_PREFIX}{nodepool}");
    n.truncate(63);
    n.trim_end_matches(['-', '.', '_']).to_string()
}

/// The one accelerator product the NodePool's nodes will have: from the labels, or else
/// from every value a multi-valued requirement allows (which must agree).
fn product<'c>(
    labels: &BTreeMap<String, String>,
    spec: &NodePoolSpec,
    catalog: &'c Catalog,
) -> Result<&'c deepseek_planner::Accelerator, String> {
    if let Some(a) = catalog.identify(labels) {
        return Ok(a);
    }
    let mut found: Vec<&deepseek_planner::Accelerator> = Vec::new();
    for r in &spec.template.spec.requirements {
        if r.operator != "In" || r.values.len() < 2 {
            continue;
        }
        for v in &r.values {
            let mut l = labels.clone();
            l.insert(r.key.clone(), v.clone());
            match catalog.identify(&l) {
                Some(a) if !found.iter().any(|f| f.id == a.id) => found.push(a),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "{}={v} is not an accelerator the catalog knows",
                        r.key
                    ))
                }
            }
        }
    }
    match found.as_slice() {
        [a] => Ok(a),
        [] => Err("no label or requirement names an accelerator".into()),
        many => Err(format!(
            "allows several accelerator products ({}); use one NodePool per product",
            many.iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Accelerators per node: the annotation, a count label, or the largest known instance
/// type allowed (Karpenter picks an instance type the pod's request fits).
fn per_node(
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    spec: &NodePoolSpec,
) -> Result<u32, String> {
    let positive = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n > 0);
    if let Some(v) = annotations.get(PER_NODE_ANNOTATION) {
        return positive(v).ok_or_else(|| format!("{PER_NODE_ANNOTATION}={v} is not a count"));
    }
    if let Some(n) = COUNT_LABELS
        .iter()
        .find_map(|k| labels.get(*k).and_then(|v| positive(v)))
    {
        return Ok(n);
    }
    let allowed: Vec<&str> = spec
        .template
        .spec
        .requirements
        .iter()
        .filter(|r| r.key == INSTANCE_TYPE_LABEL && r.operator == "In")
        .flat_map(|r| r.values.iter().map(String::as_str))
        .collect();
    allowed
        .iter()
        .filter_map(|t| INSTANCE_TYPES.iter().find(|(n, _)| n == t).map(|(_, c)| *c))
        .max()
        .ok_or_else(|| {
            format!(
                "cannot tell accelerators per node (instance types {allowed:?}); set the {PER_NODE_ANNOTATION} annotation"
            )
        })
}

/// Most nodes: the accelerator limit over accelerators per node, and the `nodes` limit.
fn ceiling(
    limits: &BTreeMap<String, serde_json::Value>,
    resource: &str,
    per_node: u32,
) -> Result<u32, String> {
    let count = |k: &str| -> Result<Option<u32>, String> {
        match limits.get(k) {
            None => Ok(None),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .map(|n| Some(n.min(u32::MAX as u64) as u32))
                .ok_or_else(|| format!("limit {k}={n} is not a count")),
            Some(serde_json::Value::String(s)) => s
                .trim()
                .parse::<u32>()
                .map(Some)
                .map_err(|_| format!("limit {k}={s} is not a count")),
            Some(v) => Err(format!("limit {k}={v} is not a count")),
        }
    };
    let by_accel = count(resource)?.map(|n| n / per_node);
    let by_nodes = count("nodes")?;
    let max = match (by_accel, by_nodes) {
        (Some(a), Some(n)) => a.min(n),
        (Some(a), None) => a,
        (None, Some(n)) => n,
        (None, None) => UNLIMITED_NODES,
    };
    if max == 0 {
        return Err(format!(
            "limits allow no whole node of {per_node} x {resource}"
        ));
    }
    Ok(max)
}

#[cfg(test)]
#[path = "karpenter_tests.rs"]
mod tests;

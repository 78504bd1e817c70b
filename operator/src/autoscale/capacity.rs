//! How many more groups of a model the nodes can hold now: the model is placed as the
//! reconcile places it (validate, inventory, placement over the Node cache), and every
//! non-terminated pod bound to the pool's nodes, whichever model or tenant it belongs to,
//! counts against their allocatable accelerators.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::ResourceExt;

use crate::api::DeepSeekModel;
use crate::build::labels;
use crate::controller::context::Context;
use crate::placement::place;
use crate::validate::validate;

/// Most groups of `pods_per_group` pods, each pod needing one slot on a distinct node,
/// that fit nodes with `slots[i]` free pod slots: the largest `k` with
/// `sum(min(slots[i], k)) >= pods_per_group * k`.
pub fn free_groups(slots: &[u32], pods_per_group: u32) -> u32 {
    let n = pods_per_group.max(1);
    let total: u64 = slots.iter().map(|&s| u64::from(s)).sum();
    let mut best = 0;
    let mut k: u32 = 1;
    while u64::from(k) * u64::from(n) <= total {
        let fit: u64 = slots.iter().map(|&s| u64::from(s.min(k))).sum();
        if fit >= u64::from(k) * u64::from(n) {
            best = k;
        }
        k += 1;
    }
    best
}

/// Quantity of an extended resource (integers only: accelerators are whole devices).
fn count(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> u32 {
    q.and_then(|q| q.0.trim().parse::<u32>().ok()).unwrap_or(0)
}

/// Accelerators of `resource` requested by a pod (requests, else limits, of its containers).
pub fn pod_request(pod: &Pod, resource: &str) -> u32 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    spec.containers
        .iter()
        .map(|c| {
            let r = c.resources.as_ref();
            let req = r
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get(resource));
            let lim = r
                .and_then(|r| r.limits.as_ref())
                .and_then(|m| m.get(resource));
            count(req.or(lim))
        })
        .sum()
}

/// Free accelerators per node: allocatable minus what bound, non-terminated pods request.
pub fn free_per_node(nodes: &[&Node], pods: &[Pod], resource: &str) -> BTreeMap<String, u32> {
    let mut used: BTreeMap<String, u32> = BTreeMap::new();
    for p in pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *used.entry(node).or_default() += pod_request(p, resource);
        }
    }
    nodes
        .iter()
        .map(|n| {
            let alloc = count(
                n.status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref())
                    .and_then(|a| a.get(resource)),
            );
            let name = n.name_any();
            let free = alloc.saturating_sub(used.get(&name).copied().unwrap_or(0));
            (name, free)
        })
        .collect()
}

/// Groups of this model that exist with every pod bound to a node.
fn bound_groups(own: &[Pod]) -> u32 {
    let mut groups: BTreeMap<String, bool> = BTreeMap::new();
    for p in own
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let Some(gid) = p.labels().get(labels::GROUP_ID).cloned() else {
            continue;
        };
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let e = groups.entry(gid).or_insert(true);
        *e = *e && bound;
    }
    groups.values().filter(|b| **b).count() as u32
}

/// More groups the pool can take beyond `current` (groups wanted but not yet bound are
/// already spoken for). `None`: unknown (invalid or unplaceable spec, a declared pool a
/// cluster autoscaler grows, or CPU serving).
pub async fn room(ctx: &Context, model: &DeepSeekModel, own: &[Pod], current: u32) -> Option<u32> {
    let validated = validate(&model.spec, &ctx.catalog, &ctx.config).ok()?;
    let nodes = ctx.nodes.state();
    let refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let pools = ctx.pools.borrow().clone();
    let placement = place(&validated, &pools, &ctx.catalog).ok()?;
    let pool = &placement.pool;
    if pool.declared || pool.resource_name.is_empty() {
        return None;
    }
    let pool_nodes: Vec<&Node> = refs
        .iter()
        .copied()
        .filter(|n| pool.nodes.contains(&n.name_any()))
        .collect();
    // In namespaced mode only the watched namespaces' pods are visible: pods of other
    // namespaces on the pool's nodes are not counted, so the room is an upper bound and
    // the scheduler has the last word (groups that do not fit stay Pending).
    let mut all_pods = Vec::new();
    for api in ctx.scope.apis::<Pod>(&ctx.client) {
        let listed = api
            .list(&ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed"))
            .await
            .map_err(|e| tracing::warn!(error = %e, "listing pods for the capacity check"))
            .ok()?;
        all_pods.extend(listed.items);
    }
    let free = free_per_node(&pool_nodes, &all_pods, &pool.resource_name);
    let per_pod = placement.plan.gpus_per_node.max(1);
    let slots: Vec<u32> = free.values().map(|f| f / per_pod).collect();
    let groups = free_groups(&slots, placement.plan.nodes_per_replica);
    let unbound = current.saturating_sub(bound_groups(own));
    Some(groups.saturating_sub(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_need_distinct_nodes() {
        // 4 nodes with one pod slot each: two 2-node groups.
        assert_eq!(free_groups(&[1, 1, 1, 1], 2), 2);
        // One node with 4 slots cannot hold a 2-node group.
        assert_eq!(free_groups(&[4], 2), 0);
        assert_eq!(free_groups(&[4, 1], 2), 1);
        assert_eq!(free_groups(&[2, 2, 2], 3), 2);
        // Single-pod groups pack.
        assert_eq!(free_groups(&[4, 3], 1), 7);
        assert_eq!(free_groups(&[], 2), 0);
    }

    #[test]
    fn free_accelerators_count_every_tenant() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"allocatable": {"huawei.com/Ascend910": "8"}}
        }))
        .unwrap_or_default();
        let pod = |n: &str, node: &str, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": n},
                "spec": {"nodeName": node, "containers": [{"name": "c",
                    "resources": {"limits": {"huawei.com/Ascend910": "4"}}}]},
                "status": {"phase": phase}
            }))
            .unwrap_or_default()
        };
        let pods = vec![
            pod("x", "a", "Running"),
            pod("y", "a", "Succeeded"),
            pod("z", "b", "Running"),
        ];
        let free = free_per_node(&[&node], &pods, "huawei.com/Ascend910");
        assert_eq!(free.get("a"), Some(&4));
    }
}

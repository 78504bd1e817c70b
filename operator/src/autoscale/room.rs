//! How many more groups of a model the nodes can hold now: the model is placed as the
//! reconcile places it (validate, inventory, placement over the Node cache), and every
//! non-terminated pod bound to the pool's nodes, whichever model or tenant it belongs to,
//! counts against their allocatable accelerators.
//!
//! Nothing here scans the cluster: the pool lists its nodes, the Node cache finds each by
//! name, and the pod cache keeps what pods request per node (controller/cache/pods.rs). So
//! a check costs O(pool nodes), and [`free_groups`] O(pool nodes x log(groups)).

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use std::sync::Arc;

use crate::api::DeepSeekModel;
use crate::controller::context::Context;
use crate::desired::labels;
use crate::inventory::NodeFacts;
use crate::placement::place;
use crate::validate::validate;

/// Most groups of `pods_per_group` pods, each pod needing one slot on a distinct node,
/// that fit nodes with `slots[i]` free pod slots: the largest `k` with
/// `sum(min(slots[i], k)) >= pods_per_group * k`.
///
/// `g(k) = sum(min(slots[i], k)) - pods_per_group * k` is concave (a sum of concave
/// functions minus a linear one) and `g(0) = 0`, so the `k` with `g(k) >= 0` are exactly
/// `0..=k*`: a binary search over `0..=total / pods_per_group` finds `k*`.
pub fn free_groups(slots: &[u32], pods_per_group: u32) -> u32 {
    let n = u64::from(pods_per_group.max(1));
    let total: u64 = slots.iter().map(|&s| u64::from(s)).sum();
    let fits = |k: u64| slots.iter().map(|&s| u64::from(s).min(k)).sum::<u64>() >= n * k;
    let (mut lo, mut hi) = (0u64, total / n);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    u32::try_from(lo).unwrap_or(u32::MAX)
}

/// Groups of this model that exist with every pod bound to a node.
fn bound_groups(own: &[Arc<Pod>]) -> u32 {
    let mut groups: std::collections::BTreeMap<&str, bool> = Default::default();
    for p in own
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let Some(gid) = p.labels().get(labels::GROUP_ID) else {
            continue;
        };
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let e = groups.entry(gid.as_str()).or_insert(true);
        *e = *e && bound;
    }
    groups.values().filter(|b| **b).count() as u32
}

/// Free pod slots per node of `nodes`: (allocatable - used) / per pod. `used` gives what
/// bound, non-terminated pods request on a node.
pub fn slots<'a>(
    nodes: impl IntoIterator<Item = (&'a str, u32)>,
    used: impl Fn(&str) -> u32,
    per_pod: u32,
) -> Vec<u32> {
    let per_pod = per_pod.max(1);
    nodes
        .into_iter()
        .map(|(name, alloc)| alloc.saturating_sub(used(name)) / per_pod)
        .collect()
}

/// More groups the pool can take beyond `current` (groups wanted but not yet bound are
/// already spoken for). `None`: unknown (invalid or unplaceable spec, a declared pool a
/// cluster autoscaler grows, or CPU serving).
pub async fn room(
    ctx: &Context,
    model: &DeepSeekModel,
    own: &[Arc<Pod>],
    current: u32,
) -> Option<u32> {
    let validated = validate(&model.spec, &ctx.catalog, &ctx.config).ok()?;
    let pools = ctx.pools.borrow().clone();
    let placement = place(&validated, &model.namespace()?, &pools, &ctx.catalog).ok()?;
    let pool = &placement.pool;
    if pool.declared || pool.resource_name.is_empty() {
        return None;
    }
    // In namespaced mode only the watched namespaces' pods are in the cache: pods of other
    // namespaces on the pool's nodes are not counted, so the room is an upper bound and
    // the scheduler has the last word (groups that do not fit stay Pending).
    let nodes: Vec<(&str, u32)> = pool
        .nodes
        .iter()
        .filter_map(|n| {
            let node = ctx.nodes.get(&ObjectRef::<NodeFacts>::new(n))?;
            Some((n.as_str(), node.devices(&pool.resource_name).unwrap_or(0)))
        })
        .collect();
    let free = slots(
        nodes,
        |n| ctx.pods.used_on(n, &pool.resource_name),
        placement.plan.gpus_per_node,
    );
    let groups = free_groups(&free, placement.plan.nodes_per_replica);
    let unbound = current.saturating_sub(bound_groups(own));
    Some(groups.saturating_sub(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::cache::pods::PodCache;

    /// The definition, searched exhaustively: what the binary search must agree with.
    fn by_definition(slots: &[u32], n: u32) -> u32 {
        let n = n.max(1);
        let total: u32 = slots.iter().sum();
        (0..=total)
            .filter(|&k| slots.iter().map(|&s| s.min(k)).sum::<u32>() >= n * k)
            .max()
            .unwrap_or(0)
    }

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
        assert_eq!(free_groups(&[0, 0], 0), 0);
    }

    #[test]
    fn the_search_agrees_with_the_definition() {
        // Every slot vector of up to 5 nodes with 0..=4 slots, groups of 1..=6 pods.
        let mut v = [0u32; 5];
        for code in 0..5u32.pow(5) {
            let mut c = code;
            for s in v.iter_mut() {
                *s = c % 5;
                c /= 5;
            }
            for len in 0..=5 {
                for n in 1..=6 {
                    let s = &v[..len];
                    assert_eq!(free_groups(s, n), by_definition(s, n), "{s:?} n={n}");
                }
            }
        }
    }

    #[test]
    fn free_accelerators_count_every_tenant_from_the_pod_index() {
        let pod = |n: &str, node: &str, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": n, "namespace": "t"},
                "spec": {"nodeName": node, "containers": [{"name": "c",
                    "resources": {"limits": {"huawei.com/Ascend910": "4"}}}]},
                "status": {"phase": phase}
            }))
            .unwrap_or_default()
        };
        let cache = PodCache::from_pods(vec![
            pod("x", "a", "Running"),
            pod("y", "a", "Succeeded"),
            pod("z", "b", "Running"),
        ]);
        let free = slots(
            [("a", 8), ("c", 8)],
            |n| cache.used_on(n, "huawei.com/Ascend910"),
            2,
        );
        assert_eq!(free, vec![2, 4]);
    }
}

//! Choosing a pool and a layout: the planner run against every pool that matches the
//! manifest, keeping the plan with the fewest accelerators, then the fewest nodes, and
//! preferring nodes that exist over declared pools that would have to scale up.

use deepseek_planner::{plan, Catalog, Plan, PlanError, PlanRequest};

use crate::api::{MemoryStatus, PlanStatus};
use crate::inventory::taints::untolerated;
use crate::inventory::Pool;
use crate::validate::{root_host_path_message, ValidatedModel, ROOT_HOST_PATH_REASON};

/// A pool and the plan for it.
#[derive(Clone, Debug)]
pub struct Placement {
    pub pool: Pool,
    pub plan: Plan,
}

/// Why nothing could be placed; `reason` becomes the Planned condition's reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Unplaceable {
    pub reason: &'static str,
    pub message: String,
}

fn matches(v: &ValidatedModel, pool: &Pool) -> bool {
    // A pool tainted for someone else (not an accelerator taint, not a declared pool's) is
    // only for models whose manifest tolerates the taint.
    let allowed = pool.declared || untolerated(&pool.taints, &v.tolerations).is_empty();
    allowed
        && v.vendor.is_none_or(|vendor| vendor == pool.vendor)
        && v.product.as_deref().is_none_or(|p| p == pool.accelerator)
        && v.node_selector.iter().all(|(k, val)| pool.common_labels.get(k) == Some(val))
        // Without an explicit wish, CPU serving is a fallback only for GGUF.
        && (pool.vendor != crate::api::Vendor::Cpu || v.vendor.is_some() || v.quantization.is_gguf())
}

impl Placement {
    /// Whether the pool can hold one more group than `replicas` (ignoring other tenants),
    /// so a rollout can surge instead of taking a group down.
    pub fn surge_room(&self, replicas: u32) -> bool {
        let p = self;
        if p.pool.declared || p.pool.resource_name.is_empty() {
            return true;
        }
        let per_node_groups = p.pool.per_node / p.plan.gpus_per_node.max(1);
        let capacity = if p.plan.nodes_per_replica > 1 {
            p.pool.max_nodes / p.plan.nodes_per_replica
        } else {
            p.pool.max_nodes * per_node_groups
        };
        capacity > replicas
    }

    /// The plan as shown in `status.plan`.
    pub fn status(&self) -> PlanStatus {
        let p = self;
        let plan = &p.plan;
        let gib = |x: f64| format!("{x:.1}");
        PlanStatus {
            vendor: plan.vendor.as_str().to_string(),
            product: plan.accelerator.clone(),
            quantization: plan.quantization.as_str().to_string(),
            resource_name: p.pool.resource_name.clone(),
            engine: plan.engine.as_str().to_string(),
            gpus_per_replica: plan.gpus_per_replica,
            nodes_per_replica: plan.nodes_per_replica,
            gpus_per_node: plan.gpus_per_node,
            tensor_parallel: plan.tensor_parallel,
            pipeline_parallel: plan.pipeline_parallel,
            // `TPxPP` as before for TP x PP; the planner's own name (`DP16xEP16`) otherwise.
            layout: if plan.expert_parallel > 1 {
                plan.layout.clone()
            } else {
                format!("{}x{}", plan.tensor_parallel, plan.pipeline_parallel)
            },
            data_parallel: (plan.expert_parallel > 1).then_some(plan.data_parallel),
            expert_parallel: (plan.expert_parallel > 1).then_some(plan.expert_parallel),
            layout_reason: (plan.objective != deepseek_planner::LayoutObjective::Cheapest
                || plan.expert_parallel > 1)
                .then(|| plan.layout_reason.clone()),
            max_model_len: plan.max_model_len,
            max_concurrency: plan.max_concurrency,
            pool: Some(p.pool.name.clone()),
            memory: MemoryStatus {
                weights_gib: gib(plan.memory.weights_gib),
                kv_cache_gib: gib(plan.memory.kv_cache_gib),
                overhead_gib: gib(plan.memory.overhead_gib),
                per_gpu_gib: gib(plan.memory.per_gpu_gib),
                usable_per_gpu_gib: gib(plan.memory.usable_per_gpu_gib),
            },
        }
    }
}

/// Plans `v` against one pool.
pub fn plan_on(v: &ValidatedModel, pool: &Pool, catalog: &Catalog) -> Result<Plan, PlanError> {
    let accel =
        catalog
            .accelerator(&pool.accelerator)
            .ok_or_else(|| PlanError::UnknownAccelerator {
                id: pool.accelerator.clone(),
            })?;
    plan(&PlanRequest {
        model: &v.arch,
        quantization: v.quantization,
        accelerator: accel,
        gpus_per_node: pool.per_node,
        max_nodes: Some(pool.max_nodes),
        engine: v.engine,
        tensor_parallel: v.tensor_parallel,
        pipeline_parallel: v.pipeline_parallel,
        max_model_len: v.max_model_len,
        concurrency: v.concurrency,
        gpu_memory_utilization: v.gpu_memory_utilization,
        memory_override_gib: if pool.resource_name.is_empty() {
            pool.node_memory_gib
        } else {
            None
        },
        parallel: v.parallel_options,
    })
}

/// Chooses the pool and plan for a model of `namespace`.
pub fn place(
    v: &ValidatedModel,
    namespace: &str,
    pools: &[Pool],
    catalog: &Catalog,
) -> Result<Placement, Unplaceable> {
    let narrowed: Vec<Pool> = pools
        .iter()
        .filter_map(|p| p.narrowed(&v.node_selector))
        .collect();
    let matching: Vec<&Pool> = narrowed.iter().filter(|p| matches(v, p)).collect();
    // Pools that match but may not take the model, each with the reason.
    let mut refused: Vec<(&'static str, String)> = Vec::new();
    let candidates: Vec<&Pool> = matching
        .iter()
        .copied()
        .filter(|p| {
            if !p.open_to(namespace) {
                refused.push((
                    "PoolNotOpenToNamespace",
                    format!(
                        "pool {} is declared for namespaces {} only",
                        p.name,
                        p.namespaces.join(", ")
                    ),
                ));
                return false;
            }
            if v.refuse_root_pods && p.vendor == crate::api::Vendor::Amd {
                refused.push((
                    ROOT_HOST_PATH_REASON,
                    format!("pool {}: {}", p.name, root_host_path_message()),
                ));
                return false;
            }
            if let Err(why) = crate::desired::affinity::pins_product(catalog, p) {
                refused.push(("ProductNotPinned", why));
                return false;
            }
            true
        })
        .collect();
    if let (true, Some((reason, _))) = (candidates.is_empty(), refused.first()) {
        return Err(Unplaceable {
            reason,
            message: refused
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    if candidates.is_empty() {
        let wanted = match (&v.product, v.vendor) {
            (Some(p), _) => format!("accelerator {p}"),
            (None, Some(vendor)) => format!("{vendor} accelerators"),
            (None, None) => "any accelerator".into(),
        };
        let selector = if v.node_selector.is_empty() {
            String::new()
        } else {
            format!(" with labels {:?}", v.node_selector)
        };
        return Err(Unplaceable {
            reason: "InsufficientAccelerators",
            message: format!(
                "no node pool offers {wanted}{selector}; add nodes or declare a pool in the operator configuration"
            ),
        });
    }

    let mut best: Option<Placement> = None;
    let mut errors: Vec<(&Pool, PlanError)> = Vec::new();
    for pool in candidates {
        match plan_on(v, pool, catalog) {
            Ok(plan) => {
                let key = |p: &Placement| {
                    (
                        p.plan.gpus_per_replica,
                        p.plan.nodes_per_replica,
                        p.pool.declared,
                    )
                };
                let cand = Placement {
                    pool: pool.clone(),
                    plan,
                };
                if best.as_ref().is_none_or(|b| key(&cand) < key(b)) {
                    best = Some(cand);
                }
            }
            Err(e) => errors.push((pool, e)),
        }
    }
    if let Some(b) = best {
        return Ok(b);
    }

    // Unsupported combinations say what to change; otherwise report the shortfall
    // against the largest matching pool.
    if let Some((_, e)) = errors
        .iter()
        .find(|(_, e)| matches!(e, PlanError::Unsupported { .. }))
    {
        return Err(Unplaceable {
            reason: "UnsupportedCombination",
            message: e.to_string(),
        });
    }
    let largest_pool = errors
        .iter()
        .map(|(p, _)| *p)
        .max_by_key(|p| (p.per_node * p.max_nodes, p.per_node));
    let largest = largest_pool
        .map(|p| p.describe(catalog))
        .unwrap_or_default();
    // Refused here only because not even one group fits the NodePool's limits; a group
    // that fits but finds the limits used up is placed and may wait as CapacityPending.
    let never = largest_pool
        .and_then(|p| Some((p.nodepool.as_ref()?, p.max_nodes)))
        .map(|(np, n)| {
            format!(
                "; the limits of Karpenter NodePool {np} allow at most {n} node(s) of {} x {}, so no group can ever fit (raise its limits)",
                largest_pool.map_or(0, |p| p.per_node),
                largest_pool.map_or("", |p| p.resource_name.as_str())
            )
        })
        .unwrap_or_default();
    let needed = errors
        .iter()
        .find_map(|(_, e)| match e {
            PlanError::DoesNotFit { message, .. } => Some(message.clone()),
            _ => None,
        })
        .or_else(|| errors.first().map(|(_, e)| e.to_string()))
        .unwrap_or_default();
    Err(Unplaceable {
        reason: "InsufficientAccelerators",
        message: format!("{needed}; largest matching pool: {largest}{never}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use crate::inventory::pools_from_nodes;
    use crate::validate::validate;
    use k8s_openapi::api::core::v1::Node;

    fn pools(cfg: &OperatorConfig) -> Vec<Pool> {
        let nodes: Vec<Node> =
            serde_yaml::from_str(include_str!("../tests/fixtures/nodes-mixed.yaml"))
                .expect("fixture");
        let refs: Vec<&Node> = nodes.iter().collect();
        pools_from_nodes(&refs, Catalog::builtin(), &cfg.declared_pools)
    }

    fn place_yaml(yaml: &str, cfg: &OperatorConfig) -> Result<Placement, Unplaceable> {
        let spec = serde_yaml::from_str(yaml).expect("spec");
        let v = validate(&spec, Catalog::builtin(), &Default::default()).expect("valid");
        place(&v, "ai", &pools(cfg), Catalog::builtin())
    }

    #[test]
    fn live_nodes_win_over_an_equal_declared_pool() {
        let cfg = OperatorConfig::from_yaml(
            "declaredPools: [{name: spare-h200, product: h200, acceleratorsPerNode: 8, maxNodes: 4, nodeSelector: {pool: spare}}]",
        )
        .expect("config");
        let p = place_yaml(
            "model: deepseek-r1\nquantization: fp8\naccelerator: {product: h200}",
            &cfg,
        )
        .expect("fits");
        assert!(!p.pool.declared, "chose {}", p.pool.name);
        assert_eq!(p.plan.gpus_per_replica, 8);
    }

    #[test]
    fn cpu_is_a_fallback_only_when_asked_or_for_gguf() {
        // Unconstrained BF16: a GPU pool, never the CPU nodes.
        let p = place_yaml(
            "model: deepseek-r1-distill-qwen-1.5b",
            &OperatorConfig::default(),
        )
        .expect("fits");
        assert_ne!(p.pool.accelerator, "cpu");
        let p = place_yaml(
            "model: deepseek-r1-distill-qwen-1.5b\nquantization: gguf-q8_0",
            &OperatorConfig::default(),
        )
        .expect("fits");
        assert_eq!(p.pool.accelerator, "cpu");
    }

    #[test]
    fn node_selector_narrows_the_pools() {
        let e = place_yaml(
            "model: deepseek-r1-distill-qwen-1.5b\naccelerator: {nodeSelector: {team: nobody}}",
            &OperatorConfig::default(),
        )
        .expect_err("no pool has that label");
        assert_eq!(e.reason, "InsufficientAccelerators");
        assert!(e.message.contains("team"), "{}", e.message);
    }

    #[test]
    fn unsupported_combinations_say_what_to_change() {
        let e = place_yaml(
            "model: deepseek-r1\nquantization: fp8\naccelerator: {vendor: ascend}",
            &OperatorConfig::default(),
        )
        .expect_err("no fp8 on ascend");
        assert_eq!(e.reason, "UnsupportedCombination");
        assert!(e.message.contains("int8"), "{}", e.message);
    }

    #[test]
    fn a_nodepool_whose_limits_hold_no_whole_group_is_refused_saying_so() {
        let cfg = OperatorConfig::from_yaml(
            "declaredPools: [{name: karpenter-h100-one, product: h100-80gb, acceleratorsPerNode: 8, maxNodes: 1, nodeSelector: {karpenter.sh/nodepool: h100-one}}]",
        )
        .expect("config");
        let mut pools = pools(&cfg);
        for p in pools.iter_mut().filter(|p| p.declared) {
            p.nodepool = Some("h100-one".into());
        }
        let spec = serde_yaml::from_str(
            "model: deepseek-r1\nquantization: fp8\naccelerator: {product: h100-80gb, nodeSelector: {karpenter.sh/nodepool: h100-one}}",
        )
        .expect("spec");
        let v = validate(&spec, Catalog::builtin(), &Default::default()).expect("valid");
        let e = place(&v, "ai", &pools, Catalog::builtin()).expect_err("2 nodes needed, 1 allowed");
        assert_eq!(e.reason, "InsufficientAccelerators");
        assert!(
            e.message.contains(
                "the limits of Karpenter NodePool h100-one allow at most 1 node(s) of 8 x nvidia.com/gpu, so no group can ever fit"
            ),
            "{}",
            e.message
        );
    }

    /// Issue 26: a declared pool named the namespaces that may use it, and others were
    /// still planned on it and tolerated its taint.
    #[test]
    fn a_declared_pool_serves_only_its_namespaces() {
        let cfg = OperatorConfig::from_yaml(
            "declaredPools: [{name: team-a-b200, product: b200, acceleratorsPerNode: 8, maxNodes: 2, nodeSelector: {dedicated: team-a}, taints: [{key: dedicated, value: team-a, effect: NoSchedule}], namespaces: [team-a]}]",
        )
        .expect("config");
        let spec = serde_yaml::from_str(
            "model: deepseek-r1\nquantization: fp8\naccelerator: {product: b200}",
        )
        .expect("spec");
        let v = validate(&spec, Catalog::builtin(), &cfg).expect("valid");
        let ours = place(&v, "team-a", &pools(&cfg), Catalog::builtin()).expect("team-a's pool");
        assert_eq!(ours.pool.name, "team-a-b200");
        let e = place(&v, "team-b", &pools(&cfg), Catalog::builtin()).expect_err("not team-b's");
        assert_eq!(e.reason, "PoolNotOpenToNamespace");
        assert!(e.message.contains("team-a-b200"), "{}", e.message);
        // Open to all by default, as before.
        let open = OperatorConfig::from_yaml(
            "declaredPools: [{name: any-b200, product: b200, acceleratorsPerNode: 8, maxNodes: 2}]",
        )
        .expect("config");
        assert!(place(&v, "team-b", &pools(&open), Catalog::builtin()).is_ok());
    }

    /// A tenant whose model could go to the live pools or to another team's declared pool
    /// never gets the declared pool's taint tolerated.
    #[test]
    fn other_tenants_never_tolerate_a_declared_pools_taints() {
        use crate::desired::preview::desired;
        let cfg = OperatorConfig::from_yaml(
            "declaredPools: [{name: team-a-h100, product: h100-80gb, acceleratorsPerNode: 8, maxNodes: 4, nodeSelector: {dedicated: team-a}, taints: [{key: dedicated, value: team-a, effect: NoSchedule}], namespaces: [team-a]}]",
        )
        .expect("config");
        let nodes: Vec<k8s_openapi::api::core::v1::Node> =
            serde_yaml::from_str(include_str!("../tests/fixtures/nodes-mixed.yaml"))
                .expect("fixture");
        let refs: Vec<&k8s_openapi::api::core::v1::Node> = nodes.iter().collect();
        let model = |ns: &str, selector: serde_json::Value| -> crate::api::DeepSeekModel {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
                "kind": "DeepSeekModel",
                "metadata": {"name": "r1", "namespace": ns, "uid": "u"},
                "spec": {"model": "deepseek-r1", "quantization": "fp8", "accelerator": {"product": "h100-80gb", "nodeSelector": selector}},
            }))
            .expect("model")
        };
        let tolerates_team = |ns: &str, selector: serde_json::Value| {
            desired(&model(ns, selector), &refs, &cfg, Catalog::builtin()).map(|d| {
                d.workload
                    .tolerations
                    .iter()
                    .any(|t| t.key.as_deref() == Some("dedicated"))
            })
        };
        let team_pool = serde_json::json!({"dedicated": "team-a"});
        assert_eq!(
            tolerates_team("team-a", team_pool.clone()),
            Ok(true),
            "the pool's own namespace"
        );
        let refused = tolerates_team("team-b", team_pool).expect_err("another namespace");
        assert_eq!(refused.0, "PoolNotOpenToNamespace");
        // Placed on the live pool instead, without the declared pool's toleration.
        assert_eq!(tolerates_team("team-b", serde_json::json!({})), Ok(false));
    }

    /// Issue 26: a declared pool of a product no node label identifies gave pods no node
    /// affinity; the model is now refused, saying why.
    #[test]
    fn a_pool_that_cannot_be_pinned_is_refused() {
        let cfg = OperatorConfig::from_yaml(
            "declaredPools: [{name: orin, product: jetson-orin, acceleratorsPerNode: 1, maxNodes: 4}]",
        )
        .expect("config");
        let e = place_yaml(
            "model: deepseek-r1-distill-qwen-1.5b\naccelerator: {product: jetson-orin}",
            &cfg,
        )
        .expect_err("no pin");
        assert_eq!(e.reason, "ProductNotPinned");
        assert!(e.message.contains("nodeSelector"), "{}", e.message);
        let cfg = OperatorConfig::from_yaml(
            "declaredPools: [{name: orin, product: jetson-orin, acceleratorsPerNode: 1, maxNodes: 4, nodeSelector: {board: agx-orin}}]",
        )
        .expect("config");
        assert!(place_yaml(
            "model: deepseek-r1-distill-qwen-1.5b\naccelerator: {product: jetson-orin}",
            &cfg,
        )
        .is_ok());
    }

    /// Issue 26: AMD pods run as root unless the render groups are configured, and got a
    /// writable node cache. Such a model is refused unless the administrator opts in.
    #[test]
    fn root_pods_get_no_host_path_cache_unless_the_administrator_allows_it() {
        let amd_by_label =
            "model: deepseek-r1-distill-qwen-7b\naccelerator: {nodeSelector: {amd.com/gpu.product-name: AMD_Instinct_MI300X_OAM}}";
        let place_with = |yaml: &str, cfg: &OperatorConfig| {
            let spec = serde_yaml::from_str(yaml).expect("spec");
            validate(&spec, Catalog::builtin(), cfg)
                .map_err(|i| i.reason)
                .and_then(|v| {
                    place(&v, "ai", &pools(cfg), Catalog::builtin()).map_err(|u| u.reason)
                })
        };
        let closed = OperatorConfig::default();
        assert_eq!(
            place_with(amd_by_label, &closed).err(),
            Some(ROOT_HOST_PATH_REASON)
        );
        // An explicit AMD choice is refused at validation, with the same reason.
        assert_eq!(
            place_with(
                "model: deepseek-r1-distill-qwen-7b\naccelerator: {vendor: amd}",
                &closed
            )
            .err(),
            Some(ROOT_HOST_PATH_REASON)
        );
        // A claim instead of the node cache, non-root pods, or the administrator's opt-in.
        let claim = format!("{amd_by_label}\ncache: {{claimName: weights}}");
        assert!(place_with(&claim, &closed).is_ok());
        let groups = OperatorConfig {
            amd_render_groups: vec![44, 110],
            ..Default::default()
        };
        assert!(place_with(amd_by_label, &groups).is_ok());
        let opted_in = OperatorConfig {
            allow_root_host_path_cache: true,
            ..Default::default()
        };
        assert!(place_with(amd_by_label, &opted_in).is_ok());
        // Other vendors run as non-root: their node cache is unaffected.
        assert!(place_with(
            "model: deepseek-r1-distill-qwen-7b\naccelerator: {product: h100-80gb}",
            &closed
        )
        .is_ok());
    }
}

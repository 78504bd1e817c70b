//! Property tests for expert parallelism and DP attention: whatever the knobs, a
//! plan never exceeds its memory budget, never places fewer expert slots than the
//! model has routed experts, its GPU count is TP x PP x DP, and its EP size is one the
//! engine loads (docs/parallelism.md, "EP sizes the engines accept").

use deepseek_planner::{
    plan, Accelerator, Catalog, Engine, KvCacheDtype, LayoutObjective, ModelArch, ParallelOptions,
    PlanRequest,
};
use proptest::prelude::*;

fn moe_model() -> impl Strategy<Value = ModelArch> {
    let moe: Vec<ModelArch> = Catalog::builtin()
        .models()
        .iter()
        .filter(|m| m.moe.is_some())
        .cloned()
        .collect();
    prop::sample::select(moe)
}

fn gpu() -> impl Strategy<Value = Accelerator> {
    let gpus: Vec<Accelerator> = Catalog::builtin()
        .accelerators()
        .iter()
        .filter(|a| a.memory_mib > 0)
        .cloned()
        .collect();
    prop::sample::select(gpus)
}

/// The engines' EP rule, restated from their pinned sources (not the planner's code):
/// SGLang and vllm-ascend need EP to divide routed + redundant experts always, vLLM only
/// with redundant experts (its load balancer); the sim loads no experts.
fn engine_loads(engine: Engine, routed: u32, redundant: u32, ep: u32) -> bool {
    let even = (u64::from(routed) + u64::from(redundant)) % u64::from(ep.max(1)) == 0;
    match engine {
        Engine::Sglang | Engine::VllmAscend => even,
        Engine::Vllm => redundant == 0 || even,
        Engine::Sim => true,
        Engine::Llamacpp => ep <= 1,
    }
}

fn engine() -> impl Strategy<Value = Option<Engine>> {
    prop::option::of(prop::sample::select(vec![
        Engine::Vllm,
        Engine::Sglang,
        Engine::VllmAscend,
        Engine::Sim,
    ]))
}

#[derive(Debug, Clone)]
struct Knobs {
    engine: Option<Engine>,
    dp: Option<u32>,
    tp: Option<u32>,
    redundant: u32,
    mtp: bool,
    fp8_kv: bool,
    throughput: bool,
    gpus_per_node: u32,
    max_nodes: Option<u32>,
    len: u32,
    conc: u32,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        engine(),
        prop::option::of(prop_oneof![Just(0u32), 1u32..=160, Just(u32::MAX)]),
        prop::option::of(prop::sample::select(vec![1u32, 2, 3, 4, 8, 16])),
        prop_oneof![Just(0u32), 1u32..=64],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![1u32, 2, 4, 8, 16]),
        prop::option::of(1u32..=20),
        prop_oneof![Just(1u32), 1u32..=32768],
        prop_oneof![Just(1u32), 1u32..=8192],
    )
        .prop_map(
            |(
                engine,
                dp,
                tp,
                redundant,
                mtp,
                fp8_kv,
                throughput,
                gpus_per_node,
                max_nodes,
                len,
                conc,
            )| {
                Knobs {
                    engine,
                    dp,
                    tp,
                    redundant,
                    mtp,
                    fp8_kv,
                    throughput,
                    gpus_per_node,
                    max_nodes,
                    len,
                    conc,
                }
            },
        )
}

fn check(model: &ModelArch, acc: &Accelerator, k: &Knobs) -> Result<(), TestCaseError> {
    let mut req = PlanRequest::new(model, model.native_dtype, acc);
    req.gpus_per_node = k.gpus_per_node;
    req.max_nodes = k.max_nodes;
    req.tensor_parallel = k.tp;
    req.engine = k.engine;
    req.max_model_len = Some(k.len.min(model.max_position_embeddings));
    req.concurrency = Some(k.conc);
    req.parallel = ParallelOptions {
        objective: if k.throughput {
            LayoutObjective::Throughput
        } else {
            LayoutObjective::Cheapest
        },
        data_parallel: k.dp,
        redundant_experts: k.redundant,
        speculative_mtp: k.mtp,
        kv_cache_dtype: if k.fp8_kv {
            KvCacheDtype::Fp8
        } else {
            KvCacheDtype::Auto
        },
    };
    match plan(&req) {
        Ok(p) => {
            let m = &p.memory;
            prop_assert!(m.per_gpu_gib.is_finite());
            prop_assert!(m.per_gpu_gib <= m.usable_per_gpu_gib, "{p:?}");
            prop_assert!((m.dense_weights_gib + m.expert_weights_gib - m.weights_gib).abs() < 1e-6);
            prop_assert!(p.max_concurrency >= p.concurrency, "{p:?}");
            prop_assert_eq!(
                u64::from(p.gpus_per_replica),
                u64::from(p.tensor_parallel)
                    * u64::from(p.pipeline_parallel)
                    * u64::from(p.data_parallel)
            );
            let routed = model.moe.as_ref().map(|m| m.routed_experts).unwrap_or(0);
            let per_rank = p.experts_per_rank.unwrap_or(0);
            prop_assert!(
                u64::from(per_rank) * u64::from(p.expert_parallel) >= u64::from(routed),
                "{} per rank x EP{} < {routed}",
                per_rank,
                p.expert_parallel
            );
            prop_assert!(
                engine_loads(p.engine, routed, p.redundant_experts, p.expert_parallel),
                "{} cannot load {routed} + {} experts over EP{}: {}",
                p.engine,
                p.redundant_experts,
                p.expert_parallel,
                p.layout_reason
            );
            if p.expert_parallel > 1 {
                prop_assert_eq!(p.expert_parallel, p.data_parallel * p.tensor_parallel);
                prop_assert_eq!(p.pipeline_parallel, 1);
            }
            if let Some(dp) = k.dp.filter(|d| *d >= 2) {
                prop_assert_eq!(p.data_parallel, dp);
            }
            if let Some(n) = k.max_nodes {
                prop_assert!(p.nodes_per_replica <= n);
            }
            prop_assert!(!p.layout_reason.is_empty());
        }
        Err(e) => {
            let line = e.to_string();
            prop_assert!(!line.is_empty() && !line.contains('\n'), "{line}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn ep_plans_fit_and_place_every_expert(model in moe_model(), acc in gpu(), k in knobs()) {
        check(&model, &acc, &k)?;
    }

    /// Sized so most cases produce a plan, not a refusal: DP attention on 80+ GiB
    /// accelerators with moderate context, with redundant experts that make EP divide the
    /// expert slots (`balanced`; SGLang needs that always, vLLM only with redundant experts).
    #[test]
    fn typical_ep_requests_plan(
        model in moe_model(),
        dp in prop::sample::select(vec![16u32, 32, 64, 72]),
        balanced in any::<bool>(),
        engine in prop::sample::select(vec![Engine::Vllm, Engine::Sglang]),
        conc in 1u32..=256,
    ) {
        let c = Catalog::builtin();
        let acc = c.accelerator("h200").expect("h200 in catalog");
        let routed = model.moe.as_ref().map(|m| m.routed_experts).unwrap_or(0);
        let to_divide = (dp - routed % dp) % dp;
        let redundant = match (engine, balanced) {
            (Engine::Vllm, false) => 0,
            (_, true) if to_divide == 0 => dp,
            _ => to_divide,
        };
        let k = Knobs { engine: Some(engine), dp: Some(dp), tp: None, redundant, mtp: false, fp8_kv: false, throughput: false, gpus_per_node: 8, max_nodes: None, len: 4096, conc };
        check(&model, acc, &k)?;
        let mut req = PlanRequest::new(&model, model.native_dtype, acc);
        req.engine = Some(engine);
        req.max_model_len = Some(4096);
        req.concurrency = Some(conc);
        req.parallel.data_parallel = Some(dp);
        req.parallel.redundant_experts = redundant;
        prop_assert!(plan(&req).is_ok(), "{:?}", plan(&req));
    }

    /// A requested EP size the engine cannot load is refused with sizes it can: for
    /// SGLang, data parallel sizes whose EP divides the experts, and the redundant experts
    /// that would make the requested one divide them.
    #[test]
    fn a_size_the_engine_rejects_is_refused_with_valid_ones(
        model in moe_model(),
        // Sizes that fill part of one node of 8 or whole nodes (others are refused for that).
        dp in prop_oneof![2u32..=8, (2u32..=16).prop_map(|n| n * 8)],
        redundant in 0u32..=40,
    ) {
        let c = Catalog::builtin();
        let acc = c.accelerator("h200").expect("h200 in catalog");
        let routed = model.moe.as_ref().map(|m| m.routed_experts).unwrap_or(0);
        prop_assume!(!engine_loads(Engine::Sglang, routed, redundant, dp));
        let mut req = PlanRequest::new(&model, model.native_dtype, acc);
        req.engine = Some(Engine::Sglang);
        req.parallel.data_parallel = Some(dp);
        req.parallel.redundant_experts = redundant;
        let err = plan(&req).expect_err("SGLang cannot load this split").to_string();
        prop_assert!(err.contains("layer.py:414"), "{err}");
        // Every size it offers is one the engine loads.
        for offered in err.split("data parallel ").skip(1) {
            let n: u32 = offered
                .split(|ch: char| !ch.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .expect("a number after 'data parallel'");
            prop_assert!(engine_loads(Engine::Sglang, routed, redundant, n), "offered DP{n}: {err}");
        }
        let extra = (dp - (routed + redundant) % dp) % dp;
        if redundant + extra <= routed {
            let want = format!("or {} redundant experts", redundant + extra);
            prop_assert!(err.contains(&want), "{err}");
        }
    }
}

//! Property tests: `plan()` never panics on arbitrary input, and every plan it
//! returns fits its own memory budget with a TP that divides the heads.

use deepseek_planner::{
    plan, Accelerator, Attention, Catalog, Engine, ModelArch, PlanRequest, Quantization,
};
use proptest::prelude::*;

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        1u32..=300,
        Just(u32::MAX),
        any::<u32>()
    ]
}

fn any_opt_u32() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(any_u32())
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        0.01f64..=1.0,
        0.0f64..=4096.0,
        any::<f64>(),
    ]
}

fn any_engine() -> impl Strategy<Value = Option<Engine>> {
    prop::option::of(prop::sample::select(vec![
        Engine::Vllm,
        Engine::Sglang,
        Engine::VllmAscend,
        Engine::Llamacpp,
        Engine::Sim,
    ]))
}

fn any_quant() -> impl Strategy<Value = Quantization> {
    prop::sample::select(Quantization::ALL.to_vec())
}

fn catalog_model() -> impl Strategy<Value = ModelArch> {
    prop::sample::select(Catalog::builtin().models().to_vec())
}

fn catalog_accelerator() -> impl Strategy<Value = Accelerator> {
    prop::sample::select(Catalog::builtin().accelerators().to_vec())
}

fn custom_model() -> impl Strategy<Value = ModelArch> {
    (
        any::<bool>(),
        any_f64(),
        any_u32(),
        any_u32(),
        any_u32(),
        any_u32(),
        any_u32(),
        any_u32(),
    )
        .prop_map(|(mla, params, layers, hidden, heads, kv, rank, max_pos)| {
            let attention = if mla { Attention::Mla } else { Attention::Gqa };
            let mut m = ModelArch::custom("x/y", attention, params, layers, hidden, heads, max_pos);
            m.kv_heads = kv;
            m.kv_lora_rank = Some(rank);
            m.qk_rope_head_dim = Some(64);
            m.vocab_size = hidden;
            m
        })
}

#[derive(Debug, Clone)]
struct Knobs {
    quant: Quantization,
    gpus_per_node: u32,
    max_nodes: Option<u32>,
    engine: Option<Engine>,
    tp: Option<u32>,
    pp: Option<u32>,
    len: Option<u32>,
    conc: Option<u32>,
    util: Option<f64>,
    mem: Option<f64>,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        any_quant(),
        any_u32(),
        any_opt_u32(),
        any_engine(),
        any_opt_u32(),
        any_opt_u32(),
        any_opt_u32(),
        any_opt_u32(),
        prop::option::of(any_f64()),
        prop::option::of(any_f64()),
    )
        .prop_map(
            |(quant, gpus_per_node, max_nodes, engine, tp, pp, len, conc, util, mem)| Knobs {
                quant,
                gpus_per_node,
                max_nodes,
                engine,
                tp,
                pp,
                len,
                conc,
                util,
                mem,
            },
        )
}

fn check(model: &ModelArch, acc: &Accelerator, k: &Knobs) -> Result<(), TestCaseError> {
    let req = PlanRequest {
        model,
        quantization: k.quant,
        accelerator: acc,
        gpus_per_node: k.gpus_per_node,
        max_nodes: k.max_nodes,
        engine: k.engine,
        tensor_parallel: k.tp,
        pipeline_parallel: k.pp,
        max_model_len: k.len,
        concurrency: k.conc,
        gpu_memory_utilization: k.util,
        memory_override_gib: k.mem,
        parallel: Default::default(),
    };
    match plan(&req) {
        Ok(p) => {
            let m = &p.memory;
            prop_assert!(m.per_gpu_gib.is_finite());
            prop_assert!(m.per_gpu_gib <= m.usable_per_gpu_gib, "{p:?}");
            prop_assert!(p.tensor_parallel >= 1 && p.pipeline_parallel >= 1);
            prop_assert_eq!(model.attention_heads % p.tensor_parallel, 0);
            prop_assert!(p.max_concurrency >= p.concurrency);
            prop_assert_eq!(
                u64::from(p.gpus_per_replica),
                u64::from(p.tensor_parallel) * u64::from(p.pipeline_parallel)
            );
            if let Some(n) = k.max_nodes {
                prop_assert!(p.nodes_per_replica <= n);
            }
        }
        Err(e) => {
            let line = e.to_string();
            prop_assert!(!line.is_empty() && !line.contains('\n'), "{line}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn catalog_models_never_panic_and_fit(model in catalog_model(), acc in catalog_accelerator(), k in knobs()) {
        check(&model, &acc, &k)?;
    }

    #[test]
    fn custom_models_never_panic_and_fit(model in custom_model(), acc in catalog_accelerator(), k in knobs()) {
        check(&model, &acc, &k)?;
    }

    #[test]
    fn sane_requests_fit(model in catalog_model(), acc in catalog_accelerator(), gpn in 1u32..=16, nodes in prop::option::of(1u32..=8)) {
        let k = Knobs { quant: model.native_dtype, gpus_per_node: gpn, max_nodes: nodes, engine: None, tp: None, pp: None, len: None, conc: None, util: None, mem: Some(256.0) };
        check(&model, &acc, &k)?;
    }
}

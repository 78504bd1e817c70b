//! SGLang on Ascend NPUs in the support matrix, and the engine prefill/decode roles get.
//!
//! Sources for the expectations:
//! - SGLang serves DeepSeek-R1 W8A8 and W4A8 (ModelSlim) on Atlas 800I A3, aggregated and
//!   prefill/decode disaggregated (SGLang docs, Ascend NPUs, DeepSeek examples).
//! - SGLang's Ascend quantization page and the pinned 0.5.23 source: ModelSlim W8A8/W4A8,
//!   AWQ and GPTQ W4A16 (MoE included) on A2 and A3; no FP8 or FP4 on either.
//! - SGLang's supported Ascend hardware is Atlas A2 (910B) and A3 (910C), not the 310P.

mod common;

use common::run;
use deepseek_planner::{
    engine_runs_on, plan_disaggregated, Catalog, Engine, KvCacheDtype, Plan, PlanError,
    PlanRequest, Quantization, RoleOverrides, Vendor,
};

/// DeepSeek-R1 in `quant` on `acc`, with the engine left open (`None`) or chosen.
fn r1(
    quant: Quantization,
    acc: &str,
    engine: Option<Engine>,
    tweak: impl Fn(&mut PlanRequest),
) -> Result<Plan, PlanError> {
    run("deepseek-r1", quant, acc, |r| {
        r.engine = engine;
        tweak(r)
    })
}

#[test]
fn sglang_plans_the_formats_it_serves_on_a2_and_a3() {
    // (quantization, accelerator, at most this many NPUs)
    let table = [
        (Quantization::Int8, "ascend-910c", 16),
        (Quantization::W4a8, "ascend-910c", 16),
        (Quantization::Bf16, "ascend-910c", 32),
        (Quantization::Int4Awq, "ascend-910c", 16),
        (Quantization::Int4Gptq, "ascend-910c", 16),
        (Quantization::Int8, "ascend-910b", 16),
        (Quantization::W4a8, "ascend-910c-card", 8),
    ];
    for (quant, acc, max) in table {
        let p = r1(quant, acc, Some(Engine::Sglang), |_| {})
            .unwrap_or_else(|e| panic!("sglang {quant} on {acc}: {e}"));
        assert_eq!(p.engine, Engine::Sglang);
        assert!(
            p.gpus_per_replica <= max,
            "{quant} on {acc}: {}",
            p.gpus_per_replica
        );
        assert!(
            p.memory.per_gpu_gib <= p.memory.usable_per_gpu_gib,
            "{quant} on {acc}"
        );
    }
}

#[test]
fn vllm_ascend_stays_the_aggregated_default_except_for_awq_and_gptq() {
    // (quantization, auto engine on ascend-910c)
    let table = [
        (Quantization::Int8, Engine::VllmAscend),
        (Quantization::W4a8, Engine::VllmAscend),
        (Quantization::Bf16, Engine::VllmAscend),
        (Quantization::Int4Awq, Engine::Sglang),
        (Quantization::Int4Gptq, Engine::Sglang),
    ];
    for (quant, want) in table {
        let p = r1(quant, "ascend-910c", None, |_| {}).unwrap_or_else(|e| panic!("{quant}: {e}"));
        assert_eq!(p.engine, want, "{quant}");
    }
    let gptq = r1(Quantization::Int4Gptq, "ascend-910c", None, |_| {}).expect("gptq");
    assert!(
        gptq.notes.iter().any(|n| n.contains("desc_act")),
        "{:?}",
        gptq.notes
    );
}

#[test]
fn what_sglang_cannot_serve_on_ascend_is_refused_with_an_alternative() {
    // (quantization, accelerator, engine, words the suggestion must contain)
    let table = [
        (
            Quantization::Fp8,
            "ascend-910c",
            Some(Engine::Sglang),
            "int8",
        ),
        (
            Quantization::Nvfp4,
            "ascend-910c",
            Some(Engine::Sglang),
            "w4a8",
        ),
        (
            Quantization::Mxfp4,
            "ascend-910b",
            Some(Engine::Sglang),
            "w4a8",
        ),
        (
            Quantization::GgufQ4KM,
            "ascend-910c",
            Some(Engine::Sglang),
            "int8",
        ),
        (
            Quantization::Int8,
            "ascend-310p",
            Some(Engine::Sglang),
            "vllm-ascend",
        ),
        (
            Quantization::Int4Awq,
            "ascend-910c",
            Some(Engine::VllmAscend),
            "engine sglang",
        ),
        (
            Quantization::Int4Gptq,
            "ascend-910b",
            Some(Engine::VllmAscend),
            "engine sglang",
        ),
    ];
    for (quant, acc, engine, hint) in table {
        match r1(quant, acc, engine, |_| {}) {
            Err(PlanError::Unsupported { reason, suggestion }) => {
                assert!(!reason.is_empty());
                assert!(suggestion.contains(hint), "{quant} on {acc}: {suggestion}");
            }
            other => panic!("{quant} on {acc} with {engine:?}: {other:?}"),
        }
    }
    let fp8_kv = r1(
        Quantization::Int8,
        "ascend-910c",
        Some(Engine::Sglang),
        |r| {
            r.parallel.kv_cache_dtype = KvCacheDtype::Fp8;
        },
    );
    assert!(
        matches!(fp8_kv, Err(PlanError::Unsupported { .. })),
        "{fp8_kv:?}"
    );
}

#[test]
fn prefill_and_decode_default_to_sglang_on_a3() {
    let c = Catalog::builtin();
    let m = c.model("deepseek-r1").expect("deepseek-r1");
    let a3 = c.accelerator("ascend-910c").expect("ascend-910c");
    let mut base = PlanRequest::new(m, Quantization::Int8, a3);
    base.concurrency = Some(64);
    let both = plan_disaggregated(&base, RoleOverrides::default(), RoleOverrides::default())
        .expect("R1 W8A8 disaggregated on A3");
    for p in [&both.prefill, &both.decode] {
        assert_eq!(p.engine, Engine::Sglang);
        assert_eq!(p.gpus_per_node, 16);
        assert!(
            p.notes.iter().any(|n| n.contains("prefill/decode: sglang")),
            "{:?}",
            p.notes
        );
        assert!(p.memory.per_gpu_gib <= p.memory.usable_per_gpu_gib);
    }
    // The sim stands in for SGLang and is planned as asked.
    base.engine = Some(Engine::Sim);
    let sim =
        plan_disaggregated(&base, RoleOverrides::default(), RoleOverrides::default()).expect("sim");
    assert_eq!(sim.decode.engine, Engine::Sim);
}

#[test]
fn engines_the_router_cannot_front_are_refused_for_prefill_and_decode() {
    let c = Catalog::builtin();
    let m = c.model("deepseek-r1").expect("deepseek-r1");
    // (accelerator, quantization, engine, words the suggestion must contain)
    let table = [
        (
            "ascend-910c",
            Quantization::Int8,
            Engine::VllmAscend,
            "Ascend",
        ),
        ("h200", Quantization::Fp8, Engine::Vllm, "engine sglang"),
        (
            "cpu",
            Quantization::GgufQ4KM,
            Engine::Llamacpp,
            "aggregated",
        ),
    ];
    for (acc, quant, engine, hint) in table {
        let a = c.accelerator(acc).expect("accelerator");
        let mut base = PlanRequest::new(m, quant, a);
        base.engine = Some(engine);
        match plan_disaggregated(&base, RoleOverrides::default(), RoleOverrides::default()) {
            Err(e) => match e.error {
                PlanError::Unsupported { suggestion, .. } => {
                    assert_eq!(e.role, "prefill");
                    assert!(suggestion.contains(hint), "{engine}: {suggestion}");
                }
                other => panic!("{engine} on {acc}: {other:?}"),
            },
            Ok(_) => panic!("{engine} on {acc} must be refused"),
        }
    }
    // Left open on H200 it is SGLang too.
    let h200 = c.accelerator("h200").expect("h200");
    let base = PlanRequest::new(m, Quantization::Fp8, h200);
    let both = plan_disaggregated(&base, RoleOverrides::default(), RoleOverrides::default())
        .expect("h200");
    assert_eq!(both.prefill.engine, Engine::Sglang);
}

#[test]
fn engines_per_vendor() {
    // (engine, vendors it runs on)
    let table = [
        (Engine::Sglang, [true, true, true, false]),
        (Engine::Vllm, [true, true, false, true]),
        (Engine::VllmAscend, [false, false, true, false]),
        (Engine::Llamacpp, [false, false, false, true]),
        (Engine::Sim, [true, true, true, true]),
    ];
    let vendors = [Vendor::Nvidia, Vendor::Amd, Vendor::Ascend, Vendor::Cpu];
    for (engine, runs) in table {
        for (vendor, want) in vendors.into_iter().zip(runs) {
            assert_eq!(engine_runs_on(engine, vendor), want, "{engine} on {vendor}");
        }
    }
}

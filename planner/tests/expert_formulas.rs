//! The EP memory formulas on their own, against numbers derived by hand from
//! DeepSeek-V3's config.json (reference deepseek-models.md).

use deepseek_planner::memory::{experts_per_rank, routed_bytes, weight_bytes, GIB};
use deepseek_planner::objective::expert_hit_fraction;
use deepseek_planner::{Catalog, Quantization};

#[test]
fn v3_routed_experts_are_most_of_the_model() {
    let v3 = Catalog::builtin().model("deepseek-v3").expect("v3");
    // 58 MoE layers x 256 experts x 3 x 7168 x 2048 = 653.9B parameters.
    let routed = v3.routed_expert_params();
    assert!((routed / 1e9 - 653.9).abs() < 0.1, "{routed}");
    // FP8: the rest (attention, 3 dense layers, shared experts, bf16 embeddings)
    // is ~17 GiB, the part every DP-attention rank holds whole.
    let dense = (weight_bytes(v3, Quantization::Fp8) - routed_bytes(v3, Quantization::Fp8)) / GIB;
    assert!((16.0..19.0).contains(&dense), "{dense}");
}

#[test]
fn dense_models_have_no_routed_experts() {
    let m = Catalog::builtin()
        .model("deepseek-r1-distill-llama-70b")
        .expect("70b");
    assert_eq!(m.routed_expert_params(), 0.0);
}

#[test]
fn experts_per_rank_rounds_up() {
    // SGLang decode: 256 + 32 redundant over EP72 = 4 each.
    assert_eq!(experts_per_rank(256, 32, 72), 4);
    // No redundancy over EP72: 3.56 rounds up to 4 (some ranks hold 3).
    assert_eq!(experts_per_rank(256, 0, 72), 4);
    assert_eq!(experts_per_rank(256, 0, 16), 16);
    assert_eq!(experts_per_rank(256, 0, 0), 256);
    for ep in 1..=300 {
        assert!(experts_per_rank(256, 0, ep) * ep >= 256);
    }
}

#[test]
fn hit_fraction_grows_with_tokens() {
    // One token touches 8 of 256 experts.
    assert!((expert_hit_fraction(256, 8, 1) - 8.0 / 256.0).abs() < 1e-12);
    assert!(expert_hit_fraction(256, 8, 64) > 0.85);
    assert!(expert_hit_fraction(256, 8, 1024) > 0.999);
    assert_eq!(expert_hit_fraction(0, 8, 10), 1.0);
}

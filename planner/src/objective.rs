//! How the planner ranks feasible layouts under the `throughput` objective, and
//! the one-sentence reason a plan gives for its layout.
//!
//! Decode is memory-bandwidth bound, so the model is: every decode step the
//! busiest accelerator reads its dense weights, the share of its routed experts
//! that the step's tokens hit, and the KV cache of the sequences it attends to.
//! Step time = those bytes / memory bandwidth (x PP: stages run one after
//! another). Decode tokens/s per accelerator = concurrency / step time / GPUs.
//! Compute, communication and prefill are ignored; the figure ranks layouts on
//! one accelerator and is an estimate, not a benchmark.

use crate::layout::Layout;
use crate::memory::{self, MemoryInput};

/// Bandwidth assumed when the catalog has none (ranking on one accelerator does
/// not depend on it; the reported tokens/s is then omitted).
const FALLBACK_BANDWIDTH_TBPS: f64 = 1.0;

/// Share of experts that `tokens` tokens, each routed to `per_token` of `routed`
/// experts, touch in one step: 1 - (1 - k/E)^tokens (independent routing).
pub fn expert_hit_fraction(routed: u32, per_token: u32, tokens: u32) -> f64 {
    if routed == 0 {
        return 1.0;
    }
    let miss = 1.0 - f64::from(per_token.min(routed)) / f64::from(routed);
    1.0 - miss.powf(f64::from(tokens))
}

/// Bytes the busiest accelerator reads per decode step at full concurrency.
pub fn step_bytes(input: &MemoryInput) -> f64 {
    let (dense, experts) = memory::weight_split_per_gpu(input);
    let hit = input
        .model
        .moe
        .as_ref()
        .map(|m| expert_hit_fraction(m.routed_experts, m.experts_per_token, input.concurrency))
        .unwrap_or(1.0);
    let kv = memory::kv_bytes_per_token_on_gpu(input)
        * f64::from(input.max_model_len)
        * f64::from(input.sequences_per_group());
    dense + experts * hit + kv
}

/// Estimated decode tokens/s per accelerator for `layout` at the input's
/// concurrency, with `bandwidth_tbps` (TB/s, 1e12 bytes) or the fallback.
pub fn tokens_per_gpu_s(input: &MemoryInput, layout: &Layout, bandwidth_tbps: Option<f64>) -> f64 {
    let bw = bandwidth_tbps
        .filter(|b| b.is_finite() && *b > 0.0)
        .unwrap_or(FALLBACK_BANDWIDTH_TBPS)
        * 1e12;
    let step = step_bytes(input) * f64::from(layout.pipeline_parallel.max(1)) / bw;
    let gpus = layout.gpus().max(1) as f64;
    if step > 0.0 && step.is_finite() {
        f64::from(input.concurrency) / step / gpus
    } else {
        0.0
    }
}

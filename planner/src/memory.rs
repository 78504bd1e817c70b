//! Memory formulas: weights, KV cache and runtime overhead per accelerator.
//!
//! Kept apart from layout search so each formula can be unit-tested against the
//! reference numbers (e.g. V3's 70,272 KV bytes per token) on its own.

use deepseek_engine::Engine;
use serde::Serialize;

use crate::{Attention, ModelArch, Quantization};

/// Bytes in one GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// KV cache element size: BF16/FP16 (an FP8 KV cache would halve it).
pub const KV_BYTES_PER_ELEMENT: f64 = 2.0;

/// vLLM's default token budget per forward step with chunked prefill.
pub const MAX_BATCHED_TOKENS: u64 = 8192;

/// llama.cpp's default micro-batch.
pub const LLAMACPP_UBATCH: u64 = 512;

/// Activation bytes per batched token per hidden unit, calibrated to a vLLM log
/// (~1.3 GiB peak for an 8B model with hidden 4096 at 8192 batched tokens).
pub const ACTIVATION_BYTES_PER_TOKEN_HIDDEN: f64 = 40.0;

/// Non-torch memory (CUDA context, allocator slack) of one vLLM worker, GiB.
pub const NON_TORCH_BASE_GIB: f64 = 1.8;

/// Per-accelerator memory, all in GiB.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryBreakdown {
    /// Weights held by the busiest accelerator.
    #[serde(rename = "weightsGiB")]
    pub weights_gib: f64,
    /// KV cache for `max_model_len x concurrency` tokens on one accelerator.
    #[serde(rename = "kvCacheGiB")]
    pub kv_cache_gib: f64,
    /// Non-torch memory plus activation peak.
    #[serde(rename = "overheadGiB")]
    pub overhead_gib: f64,
    /// weights + KV cache + overhead.
    #[serde(rename = "perGpuGiB")]
    pub per_gpu_gib: f64,
    /// Device memory x gpuMemoryUtilization.
    #[serde(rename = "usablePerGpuGiB")]
    pub usable_per_gpu_gib: f64,
    /// The whole model's weights at the chosen quantization.
    #[serde(rename = "totalWeightsGiB")]
    pub total_weights_gib: f64,
    /// KV cache bytes per token for the whole model (all layers, unsplit).
    pub kv_bytes_per_token: u64,
}

/// Whole-model weight bytes at `quant`: every MoE expert resident; embeddings and
/// lm_head stay 16-bit for fp8/int8/int4 checkpoints.
pub fn weight_bytes(model: &ModelArch, quant: Quantization) -> f64 {
    let total = model.total_params_b * 1e9;
    if quant.keeps_embeddings_16bit() {
        let embed = model.embedding_params().min(total);
        (total - embed) * quant.bytes_per_param() + embed * 2.0
    } else {
        total * quant.bytes_per_param()
    }
}

/// Weight bytes on the busiest accelerator of a TP x PP layout: the stage with the
/// most layers (uneven splits round up) plus an embedding or lm_head matrix, split
/// over the TP ranks.
pub fn weight_bytes_per_gpu(model: &ModelArch, quant: Quantization, tp: u32, pp: u32) -> f64 {
    let total = weight_bytes(model, quant);
    let embed_bytes_per_param = if quant.keeps_embeddings_16bit() {
        2.0
    } else {
        quant.bytes_per_param()
    };
    let embed = (model.embedding_params() * embed_bytes_per_param).min(total);
    let body = total - embed;
    let layers = f64::from(model.layers.max(1));
    let stage_layers = f64::from(model.layers.max(1).div_ceil(pp.max(1)));
    let stage_embed = if pp <= 1 || model.tie_word_embeddings {
        embed
    } else {
        embed / 2.0
    };
    (body * stage_layers / layers + stage_embed) / f64::from(tp.max(1))
}

/// KV cache elements per token in one layer (whole model, no parallel split).
pub fn kv_elements_per_token_layer(model: &ModelArch) -> f64 {
    match model.attention {
        Attention::Mla => {
            f64::from(model.kv_lora_rank.unwrap_or(0))
                + f64::from(model.qk_rope_head_dim.unwrap_or(0))
                + f64::from(model.index_head_dim.unwrap_or(0))
        }
        Attention::Gqa => 2.0 * f64::from(model.kv_heads) * f64::from(model.head_dim),
    }
}

/// KV cache bytes per token for the whole model (all layers, 2-byte elements).
pub fn kv_bytes_per_token(model: &ModelArch) -> f64 {
    kv_elements_per_token_layer(model) * f64::from(model.layers) * KV_BYTES_PER_ELEMENT
}

/// KV cache bytes per token on one accelerator. MLA's latent is replicated on every
/// TP rank and split only by PP; GQA heads split over TP (replicated when TP exceeds
/// the KV heads) and layers over PP.
pub fn kv_bytes_per_token_per_gpu(model: &ModelArch, tp: u32, pp: u32) -> f64 {
    let stage_layers = f64::from(model.layers.max(1).div_ceil(pp.max(1)));
    let per_layer = match model.attention {
        Attention::Mla => kv_elements_per_token_layer(model),
        Attention::Gqa => {
            let heads_per_rank = model.kv_heads.max(1).div_ceil(tp.max(1));
            2.0 * f64::from(heads_per_rank) * f64::from(model.head_dim)
        }
    };
    per_layer * stage_layers * KV_BYTES_PER_ELEMENT
}

/// Non-torch memory per accelerator, GiB: 1.8 GiB for one vLLM worker, doubling at
/// TP2 (NCCL and custom all-reduce buffers, as seen in vLLM logs) and growing
/// slowly beyond; a little more for PP send/receive buffers. llama.cpp: 0.5 GiB.
pub fn non_torch_gib(engine: Engine, tp: u32, pp: u32) -> f64 {
    if engine == Engine::Llamacpp {
        return 0.5;
    }
    let mut gib = NON_TORCH_BASE_GIB;
    if tp > 1 {
        gib += NON_TORCH_BASE_GIB + 0.2 * (f64::from(tp) / 2.0).log2();
    }
    if pp > 1 {
        gib += 0.3;
    }
    gib
}

/// Activation peak, GiB: batched tokens (vLLM's 8192 budget, or fewer when the
/// context x concurrency is smaller; llama.cpp's 512 micro-batch) x hidden x 40 bytes.
pub fn activation_gib(
    model: &ModelArch,
    engine: Engine,
    max_model_len: u32,
    concurrency: u32,
) -> f64 {
    let budget = if engine == Engine::Llamacpp {
        LLAMACPP_UBATCH
    } else {
        MAX_BATCHED_TOKENS
    };
    let tokens = (u64::from(max_model_len) * u64::from(concurrency)).min(budget);
    tokens as f64 * f64::from(model.hidden_size) * ACTIVATION_BYTES_PER_TOKEN_HIDDEN / GIB
}

/// Inputs of one memory evaluation.
#[derive(Clone, Copy, Debug)]
pub struct MemoryInput<'a> {
    pub model: &'a ModelArch,
    pub quantization: Quantization,
    pub engine: Engine,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    pub max_model_len: u32,
    pub concurrency: u32,
    pub usable_per_gpu_gib: f64,
}

/// Memory on the busiest accelerator for one layout.
pub fn breakdown(input: &MemoryInput) -> MemoryBreakdown {
    let (tp, pp) = (input.tensor_parallel, input.pipeline_parallel);
    let weights_gib = weight_bytes_per_gpu(input.model, input.quantization, tp, pp) / GIB;
    let tokens = f64::from(input.max_model_len) * f64::from(input.concurrency);
    let kv_cache_gib = kv_bytes_per_token_per_gpu(input.model, tp, pp) * tokens / GIB;
    let overhead_gib = non_torch_gib(input.engine, tp, pp)
        + activation_gib(
            input.model,
            input.engine,
            input.max_model_len,
            input.concurrency,
        );
    MemoryBreakdown {
        weights_gib,
        kv_cache_gib,
        overhead_gib,
        per_gpu_gib: weights_gib + kv_cache_gib + overhead_gib,
        usable_per_gpu_gib: input.usable_per_gpu_gib,
        total_weights_gib: weight_bytes(input.model, input.quantization) / GIB,
        kv_bytes_per_token: kv_bytes_per_token(input.model) as u64,
    }
}

impl MemoryBreakdown {
    /// Fits when finite and within the usable budget.
    pub fn fits(&self) -> bool {
        self.per_gpu_gib.is_finite() && self.per_gpu_gib <= self.usable_per_gpu_gib
    }
}

/// How many sequences of `max_model_len` tokens the memory left after weights and
/// overhead holds on the busiest accelerator (saturating at `u32::MAX`).
pub fn max_concurrency(input: &MemoryInput) -> u32 {
    let (tp, pp) = (input.tensor_parallel, input.pipeline_parallel);
    let fixed = weight_bytes_per_gpu(input.model, input.quantization, tp, pp) / GIB
        + non_torch_gib(input.engine, tp, pp)
        + activation_gib(
            input.model,
            input.engine,
            input.max_model_len,
            input.concurrency,
        );
    let left = input.usable_per_gpu_gib - fixed;
    let per_seq =
        kv_bytes_per_token_per_gpu(input.model, tp, pp) * f64::from(input.max_model_len) / GIB;
    if !(left.is_finite() && left > 0.0) {
        return 0;
    }
    if per_seq <= 0.0 {
        return u32::MAX;
    }
    // `as` saturates for f64 -> u32.
    (left / per_seq).floor() as u32
}

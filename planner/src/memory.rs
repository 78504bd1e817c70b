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

/// Expert-parallel all-to-all buffers per rank (DeepEP normal + low-latency, or
/// the engine's own), GiB. An estimate: DeepEP's low-latency buffer for 128
/// dispatch tokens per rank of V3's hidden 7168 is about 1 GiB each way.
pub const EP_BUFFER_GIB: f64 = 2.0;

/// Per-accelerator memory, all in GiB.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryBreakdown {
    /// Weights held by the busiest accelerator (dense + experts).
    #[serde(rename = "weightsGiB")]
    pub weights_gib: f64,
    /// Of which attention, dense MLP, shared experts, embeddings and norms.
    #[serde(rename = "denseWeightsGiB")]
    pub dense_weights_gib: f64,
    /// Of which routed experts.
    #[serde(rename = "expertWeightsGiB")]
    pub expert_weights_gib: f64,
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
    /// Whole-model TP (TP x PP) or attention TP within a DP group (EP layouts).
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// DP-attention groups (1 = none).
    pub data_parallel: u32,
    /// Ranks the routed experts are spread over (1 = split by TP like any weight).
    pub expert_parallel: u32,
    /// Extra expert copies placed for load balancing (EPLB), beyond the routed experts.
    pub redundant_experts: u32,
    /// Whether the MTP layer is loaded for speculative decoding.
    pub mtp: bool,
    /// 2 for a 16-bit KV cache, 1 for FP8.
    pub kv_bytes_per_element: f64,
    pub max_model_len: u32,
    /// Concurrent sequences of the whole replica (spread over DP groups).
    pub concurrency: u32,
    pub usable_per_gpu_gib: f64,
}

impl MemoryInput<'_> {
    fn ep(&self) -> bool {
        self.expert_parallel > 1 && self.model.moe.is_some()
    }

    /// DP groups sequences are spread over.
    pub fn dp(&self) -> u32 {
        if self.ep() {
            self.data_parallel.max(1)
        } else {
            1
        }
    }

    /// Sequences the busiest DP group holds.
    pub fn sequences_per_group(&self) -> u32 {
        self.concurrency.div_ceil(self.dp())
    }
}

/// Routed-expert weight bytes of the whole model at `quant` (never embeddings).
pub fn routed_bytes(model: &ModelArch, quant: Quantization) -> f64 {
    (model.routed_expert_params() * quant.bytes_per_param()).min(weight_bytes(model, quant))
}

/// Experts one EP rank holds: routed + redundant, spread evenly, rounded up.
pub fn experts_per_rank(routed: u32, redundant: u32, ep: u32) -> u32 {
    routed.saturating_add(redundant).div_ceil(ep.max(1))
}

fn embed_bytes(model: &ModelArch, quant: Quantization) -> f64 {
    let per = if quant.keeps_embeddings_16bit() {
        2.0
    } else {
        quant.bytes_per_param()
    };
    (model.embedding_params() * per).min(weight_bytes(model, quant))
}

/// One decoder layer's weights (dense part, routed part), for the MTP layer.
fn one_layer_bytes(model: &ModelArch, quant: Quantization) -> (f64, f64) {
    let total = weight_bytes(model, quant);
    let routed = routed_bytes(model, quant);
    let dense_body = (total - routed - embed_bytes(model, quant)).max(0.0);
    let layers = f64::from(model.layers.max(1));
    let moe_layers = model
        .moe
        .as_ref()
        .map(|m| model.layers.saturating_sub(m.first_k_dense_replace).max(1))
        .unwrap_or(1);
    (dense_body / layers, routed / f64::from(moe_layers))
}

/// Weight bytes on the busiest accelerator, split into (dense, routed experts).
///
/// - TP x PP: `weight_bytes_per_gpu` (everything over TP, layers over PP); the
///   experts' share is their bytes x stage layers / layers / TP.
/// - EP: dense weights / attention TP on every rank; experts: bytes per expert x
///   `experts_per_rank(routed, redundant, EP)`.
/// - MTP adds one decoder layer, split the same way.
pub fn weight_split_per_gpu(input: &MemoryInput) -> (f64, f64) {
    let (m, q) = (input.model, input.quantization);
    let tp = f64::from(input.tensor_parallel.max(1));
    let routed = routed_bytes(m, q);
    let (layer_dense, layer_routed) = one_layer_bytes(m, q);
    let mtp = if input.mtp { 1.0 } else { 0.0 };
    match (&m.moe, input.ep()) {
        (Some(moe), true) if moe.routed_experts > 0 => {
            let dense = (weight_bytes(m, q) - routed) / tp + mtp * layer_dense / tp;
            let per_rank = f64::from(experts_per_rank(
                moe.routed_experts,
                input.redundant_experts,
                input.expert_parallel,
            ));
            let share = per_rank / f64::from(moe.routed_experts);
            (dense, routed * share + mtp * layer_routed * share)
        }
        _ => {
            let pp = input.pipeline_parallel;
            let total = weight_bytes_per_gpu(m, q, input.tensor_parallel, pp);
            let stage = f64::from(m.layers.max(1).div_ceil(pp.max(1))) / f64::from(m.layers.max(1));
            let experts = (routed * stage / tp).min(total);
            (
                total - experts + mtp * layer_dense / tp,
                experts + mtp * layer_routed / tp,
            )
        }
    }
}

/// KV bytes per token on one accelerator: MLA's latent whole on every rank of an
/// attention group (TP replicates it; DP attention gives each group its own
/// sequences instead), GQA heads split over the group's TP, layers over PP, plus
/// the MTP layer's own cache.
pub fn kv_bytes_per_token_on_gpu(input: &MemoryInput) -> f64 {
    let m = input.model;
    let tp = input.tensor_parallel;
    let stage_layers = f64::from(m.layers.max(1).div_ceil(input.pipeline_parallel.max(1)));
    let layers = stage_layers + if input.mtp { 1.0 } else { 0.0 };
    let per_layer = match m.attention {
        Attention::Mla => kv_elements_per_token_layer(m),
        Attention::Gqa => {
            let heads_per_rank = m.kv_heads.max(1).div_ceil(tp.max(1));
            2.0 * f64::from(heads_per_rank) * f64::from(m.head_dim)
        }
    };
    per_layer * layers * input.kv_bytes_per_element
}

/// Non-torch memory plus activation peak, GiB. EP layouts count the whole replica's
/// ranks for communicator buffers, add `EP_BUFFER_GIB`, and size activations for
/// one DP group's sequences.
pub fn overhead_gib(input: &MemoryInput) -> f64 {
    let act = |seqs: u32| activation_gib(input.model, input.engine, input.max_model_len, seqs);
    if input.ep() {
        let world = input.tensor_parallel.saturating_mul(input.dp());
        non_torch_gib(input.engine, world, 1) + EP_BUFFER_GIB + act(input.sequences_per_group())
    } else {
        non_torch_gib(input.engine, input.tensor_parallel, input.pipeline_parallel)
            + act(input.concurrency)
    }
}

/// Memory on the busiest accelerator for one layout.
pub fn breakdown(input: &MemoryInput) -> MemoryBreakdown {
    let (dense, experts) = weight_split_per_gpu(input);
    let (dense_weights_gib, expert_weights_gib) = (dense / GIB, experts / GIB);
    let weights_gib = dense_weights_gib + expert_weights_gib;
    let tokens = f64::from(input.max_model_len) * f64::from(input.sequences_per_group());
    let kv_cache_gib = kv_bytes_per_token_on_gpu(input) * tokens / GIB;
    let overhead_gib = overhead_gib(input);
    MemoryBreakdown {
        weights_gib,
        dense_weights_gib,
        expert_weights_gib,
        kv_cache_gib,
        overhead_gib,
        per_gpu_gib: weights_gib + kv_cache_gib + overhead_gib,
        usable_per_gpu_gib: input.usable_per_gpu_gib,
        total_weights_gib: weight_bytes(input.model, input.quantization) / GIB,
        kv_bytes_per_token: (kv_elements_per_token_layer(input.model)
            * f64::from(input.model.layers)
            * input.kv_bytes_per_element) as u64,
    }
}

impl MemoryBreakdown {
    /// Fits when finite and within the usable budget.
    pub fn fits(&self) -> bool {
        self.per_gpu_gib.is_finite() && self.per_gpu_gib <= self.usable_per_gpu_gib
    }
}

/// How many sequences of `max_model_len` tokens the memory left after weights and
/// overhead holds on the busiest accelerator, times the DP groups (saturating at
/// `u32::MAX`).
pub fn max_concurrency(input: &MemoryInput) -> u32 {
    let (dense, experts) = weight_split_per_gpu(input);
    let fixed = (dense + experts) / GIB + overhead_gib(input);
    let left = input.usable_per_gpu_gib - fixed;
    let per_seq = kv_bytes_per_token_on_gpu(input) * f64::from(input.max_model_len) / GIB;
    if !(left.is_finite() && left > 0.0) {
        return 0;
    }
    if per_seq <= 0.0 {
        return u32::MAX;
    }
    // `as` saturates for f64 -> u32.
    let per_group = (left / per_seq).floor() as u32;
    per_group.saturating_mul(input.dp())
}

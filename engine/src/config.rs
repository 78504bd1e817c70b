//! The launch contract: `LaunchConfig` (JSON in `DSO_LAUNCH_CONFIG`), roles and errors.

use serde::{Deserialize, Serialize};

use crate::Engine;

/// Everything a launcher needs to start one pod of a replica group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfig {
    pub engine: Engine,
    /// "nvidia" | "amd" | "ascend" | "cpu".
    pub vendor: String,
    /// Hugging Face repo id or local path the engine loads.
    pub model: String,
    /// Model name in the OpenAI API.
    pub served_model_name: String,
    pub revision: Option<String>,
    /// Manifest spelling: bf16, fp16, fp8, int8, int4-awq, int4-gptq, gguf-q8_0,
    /// gguf-q4_k_m, gguf-iq1_s, nvfp4, mxfp4, w4a8.
    pub quantization: String,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// Pods per replica group.
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub max_model_len: u32,
    pub max_num_seqs: u32,
    pub gpu_memory_utilization: f64,
    pub extra_args: Vec<String>,
    /// Pass `--trust-remote-code`: only for architectures the engine does not implement
    /// natively (the catalog says which), so engines never import code from a repository
    /// or a cache directory otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_remote_code: bool,
    /// KV cache size in bytes, for engines that cannot size it from accelerator memory:
    /// vLLM on CPU would otherwise take `gpuMemoryUtilization` of the whole host's memory,
    /// which a pod's memory limit does not bound. Absent for GPU plans (their JSON, and so
    /// their template hash, is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_memory_bytes: Option<u64>,
    /// Timing model of the sim engine (ignored by real engines).
    pub sim: Option<SimProfile>,
    /// Set when the group is one role of a prefill/decode-disaggregated model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disaggregation: Option<crate::pd::Disaggregation>,
    /// DP attention x expert parallelism (`dp-ep`/`hybrid` plans; engine/src/expert.rs).
    /// When set, `tensorParallel` is the attention TP within each DP group and
    /// dataParallel x tensorParallel = nodes x gpusPerNode. Absent for tp-pp plans (their
    /// JSON, and so their template hash, is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<crate::expert::ExpertLayout>,
    /// Load the model's MTP layer for speculative decoding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub speculative_mtp: bool,
    /// "fp8" for an FP8 KV cache; absent for the engine's default (the model's dtype).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_dtype: Option<String>,
}

impl LaunchConfig {
    /// One replica group of `nodes` pods with `gpus_per_node` accelerators each, laid out
    /// as plain tensor parallelism over all of them, 8192 tokens of context, 64 sequences,
    /// 90 % of accelerator memory, no extra arguments and no optional feature: the start
    /// that tools and tests vary with struct update syntax (the controller builds its own
    /// from the plan, operator/src/desired/workload.rs).
    pub fn new(
        engine: Engine,
        vendor: &str,
        model: &str,
        served_model_name: &str,
        quantization: &str,
        nodes: u32,
        gpus_per_node: u32,
    ) -> LaunchConfig {
        LaunchConfig {
            engine,
            vendor: vendor.into(),
            model: model.into(),
            served_model_name: served_model_name.into(),
            revision: None,
            quantization: quantization.into(),
            tensor_parallel: nodes * gpus_per_node,
            pipeline_parallel: 1,
            nodes,
            gpus_per_node,
            max_model_len: 8192,
            max_num_seqs: 64,
            gpu_memory_utilization: 0.9,
            extra_args: Vec::new(),
            trust_remote_code: false,
            kv_cache_memory_bytes: None,
            sim: None,
            disaggregation: None,
            expert: None,
            speculative_mtp: false,
            kv_cache_dtype: None,
        }
    }

    /// Parses the JSON the controller puts into `DSO_LAUNCH_CONFIG`.
    pub fn from_json(text: &str) -> Result<Self, RenderError> {
        serde_json::from_str(text).map_err(|e| RenderError::InvalidJson(e.to_string()))
    }

    /// The JSON form for `DSO_LAUNCH_CONFIG`.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Token-timing model of the sim engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SimProfile {
    /// Prompt tokens processed per second per request.
    pub prefill_tokens_per_s: f64,
    /// Tokens generated per second per running request.
    pub decode_tokens_per_s: f64,
    /// Running batch bound; further requests queue.
    pub max_running: u32,
}

/// A pod's role in its replica group: rank 0 leads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Leader,
    Worker,
}

impl Role {
    pub fn of_rank(rank: u32) -> Role {
        if rank == 0 {
            Role::Leader
        } else {
            Role::Worker
        }
    }
}

/// Why a `LaunchConfig` cannot be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("invalid launch config JSON: {0}")]
    InvalidJson(String),
    #[error("unknown vendor {0:?} (expected nvidia, amd, ascend or cpu)")]
    UnknownVendor(String),
    #[error("unknown quantization {0:?}")]
    UnknownQuantization(String),
    #[error("engine {engine} does not run on vendor {vendor}: {hint}")]
    EngineVendor {
        engine: String,
        vendor: String,
        hint: String,
    },
    #[error("quantization {quantization} is not supported by {engine} on {vendor}")]
    QuantizationUnsupported {
        quantization: String,
        engine: String,
        vendor: String,
    },
    #[error(
        "parallelism mismatch: tensor_parallel {tp} x pipeline_parallel {pp} = {} but nodes {nodes} x gpus_per_node {gpn} = {}",
        tp * pp,
        nodes * gpn
    )]
    Parallelism {
        tp: u32,
        pp: u32,
        nodes: u32,
        gpn: u32,
    },
    #[error("{engine} is single-node only, but nodes = {nodes}")]
    SingleNodeOnly { engine: String, nodes: u32 },
    #[error("rank {rank} is out of range for a group of {nodes} nodes")]
    RankOutOfRange { rank: u32, nodes: u32 },
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

//! `plan()`: the one entry point the CLI and the controller call. It resolves the
//! engine, applies defaults, searches layouts and explains what it did or why
//! nothing fits. Pure: no I/O, no catalog lookups.

use deepseek_engine::Engine;
use serde::Serialize;

use crate::choose;
use crate::expert_rule;
use crate::layout::{self, Layout};
use crate::memory::{self, MemoryBreakdown, MemoryInput};
use crate::{
    objective, support, Accelerator, Attention, KvCacheDtype, LayoutObjective, ModelArch,
    Quantization, Vendor,
};

/// Expert and attention parallelism options; `Default` is today's behaviour
/// (cheapest TP x PP, no redundant experts, no MTP, 16-bit KV cache).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParallelOptions {
    /// How the planner picks a layout when TP/PP/DP are not all given.
    pub objective: LayoutObjective,
    /// DP-attention groups; 2 or more means DP attention with EP over all ranks
    /// (`tensor_parallel` is then the attention TP within each group).
    pub data_parallel: Option<u32>,
    /// Extra expert copies for load balancing (SGLang/vLLM EPLB), on EP layouts.
    pub redundant_experts: u32,
    /// Load the MTP layer for speculative decoding (V3-family checkpoints).
    pub speculative_mtp: bool,
    pub kv_cache_dtype: KvCacheDtype,
}

/// Context length planned for when the request is silent (capped at the model's
/// max position embeddings).
pub const DEFAULT_MAX_MODEL_LEN: u32 = 8192;
/// Concurrent full-length sequences planned for when the request is silent.
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// vLLM's default share of device memory.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.9;

/// What to size. Defaults when a field is `None`: engine by vendor and
/// quantization; layout chosen by the planner (fewest accelerators, then fewest
/// nodes); `max_model_len` 8192 capped at the model's max position embeddings;
/// `concurrency` 1; `gpu_memory_utilization` 0.9; memory from the catalog
/// (`memory_override_gib` is required for `cpu`: the node's RAM).
#[derive(Clone, Debug)]
pub struct PlanRequest<'a> {
    pub model: &'a ModelArch,
    pub quantization: Quantization,
    pub accelerator: &'a Accelerator,
    /// Accelerators per node in the target pool.
    pub gpus_per_node: u32,
    /// Nodes available per replica; `None` = unlimited.
    pub max_nodes: Option<u32>,
    /// `None` = auto (by vendor and quantization).
    pub engine: Option<Engine>,
    pub tensor_parallel: Option<u32>,
    pub pipeline_parallel: Option<u32>,
    pub max_model_len: Option<u32>,
    pub concurrency: Option<u32>,
    pub gpu_memory_utilization: Option<f64>,
    /// Device memory in GiB instead of the catalog's, e.g. a CPU node's RAM.
    pub memory_override_gib: Option<f64>,
    pub parallel: ParallelOptions,
}

impl<'a> PlanRequest<'a> {
    /// A request with every option left to the planner, `gpus_per_node` from the
    /// accelerator's typical node.
    pub fn new(
        model: &'a ModelArch,
        quantization: Quantization,
        accelerator: &'a Accelerator,
    ) -> Self {
        PlanRequest {
            model,
            quantization,
            accelerator,
            gpus_per_node: accelerator.typical_per_node,
            max_nodes: None,
            engine: None,
            tensor_parallel: None,
            pipeline_parallel: None,
            max_model_len: None,
            concurrency: None,
            gpu_memory_utilization: None,
            memory_override_gib: None,
            parallel: ParallelOptions::default(),
        }
    }
}

/// A feasible deployment of one replica.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub model: String,
    pub hf_repo: String,
    pub quantization: Quantization,
    /// Accelerator catalog id.
    pub accelerator: String,
    pub vendor: Vendor,
    pub engine: Engine,
    pub gpus_per_replica: u32,
    pub nodes_per_replica: u32,
    /// Accelerators used on each node of the replica.
    pub gpus_per_node: u32,
    /// Whole-model TP (tp-pp) or attention TP within each DP group (dp-ep, hybrid).
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// DP-attention groups (1 for tp-pp).
    pub data_parallel: u32,
    /// Ranks the routed experts are spread over (1 for tp-pp).
    pub expert_parallel: u32,
    /// `tp-pp`, `dp-ep` (wide EP) or `hybrid` (TP within DP groups).
    pub parallelism: String,
    /// `TP8xPP2`, `DP16xEP16` or `DP4xTP4xEP16`.
    pub layout: String,
    /// Routed experts each rank holds (all of them, sliced, for tp-pp); `None`
    /// for dense models. Always x expertParallel >= the model's routed experts.
    pub experts_per_rank: Option<u32>,
    pub redundant_experts: u32,
    /// Whether the MTP layer is loaded for speculative decoding.
    pub speculative_mtp: bool,
    pub kv_cache_dtype: KvCacheDtype,
    pub objective: LayoutObjective,
    /// Why this layout, one sentence.
    pub layout_reason: String,
    /// Estimated decode tokens/s per accelerator at `concurrency` (memory-bandwidth
    /// bound; see docs/parallelism.md); `None` when the catalog has no bandwidth.
    pub est_decode_tokens_per_gpu_s: Option<f64>,
    pub max_model_len: u32,
    pub concurrency: u32,
    /// Sequences of `max_model_len` tokens the leftover KV memory holds.
    pub max_concurrency: u32,
    pub gpu_memory_utilization: f64,
    pub memory: MemoryBreakdown,
    /// Defaults applied and caveats, one sentence each.
    pub notes: Vec<String>,
}

/// What a deployment that does not fit would need.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    pub gpus: u32,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    pub data_parallel: u32,
    pub expert_parallel: u32,
    /// Device memory each accelerator needs in that layout (before utilization).
    #[serde(rename = "minMemoryPerGpuGiB")]
    pub min_memory_per_gpu_gib: f64,
}

/// Why no plan was produced. `Display` is one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown model '{id}' (see plan --list-models)")]
    UnknownModel { id: String },
    #[error("unknown accelerator '{id}' (see plan --list-accelerators)")]
    UnknownAccelerator { id: String },
    #[error("unsupported: {reason}; {suggestion}")]
    Unsupported { reason: String, suggestion: String },
    #[error("does not fit: {message}")]
    DoesNotFit {
        needed: Requirement,
        message: String,
    },
    #[error("invalid override: {0}")]
    InvalidOverride(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Validated request values, defaults applied.
pub(crate) struct Resolved<'a> {
    pub(crate) req: &'a PlanRequest<'a>,
    pub(crate) engine: Engine,
    pub(crate) gpus_per_node: u32,
    pub(crate) max_model_len: u32,
    pub(crate) concurrency: u32,
    pub(crate) util: f64,
    pub(crate) device_gib: f64,
}

impl Resolved<'_> {
    pub(crate) fn input(&self, layout: &Layout) -> MemoryInput<'_> {
        MemoryInput {
            model: self.req.model,
            quantization: self.req.quantization,
            engine: self.engine,
            tensor_parallel: layout.tensor_parallel,
            pipeline_parallel: layout.pipeline_parallel,
            data_parallel: layout.data_parallel,
            expert_parallel: layout.expert_parallel,
            redundant_experts: self.req.parallel.redundant_experts,
            mtp: self.req.parallel.speculative_mtp,
            kv_bytes_per_element: self.req.parallel.kv_cache_dtype.bytes_per_element(),
            max_model_len: self.max_model_len,
            concurrency: self.concurrency,
            usable_per_gpu_gib: self.device_gib * self.util,
        }
    }

    pub(crate) fn memory(&self, layout: &Layout) -> MemoryBreakdown {
        memory::breakdown(&self.input(layout))
    }

    pub(crate) fn requirement(&self, layout: &Layout) -> Requirement {
        let mem = self.memory(layout);
        Requirement {
            gpus: u32::try_from(layout.gpus()).unwrap_or(u32::MAX),
            nodes: layout.nodes,
            gpus_per_node: layout.gpus_per_node,
            tensor_parallel: layout.tensor_parallel,
            pipeline_parallel: layout.pipeline_parallel,
            data_parallel: layout.data_parallel,
            expert_parallel: layout.expert_parallel,
            min_memory_per_gpu_gib: mem.per_gpu_gib / self.util,
        }
    }

    pub(crate) fn kv_heads(&self) -> Option<u32> {
        match self.req.model.attention {
            Attention::Gqa => Some(self.req.model.kv_heads),
            Attention::Mla => None,
        }
    }

    pub(crate) fn tokens_per_gpu_s(&self, layout: &Layout) -> f64 {
        objective::tokens_per_gpu_s(
            &self.input(layout),
            layout,
            self.req.accelerator.bandwidth_tbps,
        )
    }

    /// Whether DP attention x EP layouts apply: an MoE model on an engine with
    /// expert parallelism (not llama.cpp, not CPU).
    pub(crate) fn ep_capable(&self) -> bool {
        self.req
            .model
            .moe
            .as_ref()
            .is_some_and(|m| m.routed_experts > 0)
            && self.engine != Engine::Llamacpp
            && self.req.accelerator.vendor != Vendor::Cpu
    }

    /// The model's routed experts; 0 for a dense model.
    pub(crate) fn routed_experts(&self) -> u32 {
        self.req.model.moe.as_ref().map_or(0, |m| m.routed_experts)
    }

    /// Routed plus redundant experts; 0 for a dense model.
    pub(crate) fn expert_slots(&self) -> u32 {
        match self.req.model.moe {
            Some(_) => self
                .routed_experts()
                .saturating_add(self.req.parallel.redundant_experts),
            None => 0,
        }
    }

    /// Whether the engine loads this layout's expert split (`expert_rule`).
    pub(crate) fn check_ep(&self, layout: &Layout) -> Result<(), String> {
        expert_rule::check_ep(
            self.engine,
            self.routed_experts(),
            self.req.parallel.redundant_experts,
            layout.expert_parallel,
        )
    }

    pub(crate) fn auto(&self, max_nodes: Option<u32>) -> Vec<Layout> {
        let m = self.req.model;
        layout::auto_layouts(
            m.attention_heads,
            self.kv_heads(),
            m.layers,
            self.gpus_per_node,
            max_nodes,
            self.req.accelerator.nvlink_domain,
        )
    }
}

/// Sizes one replica of `req.model` on `req.accelerator`.
///
/// Memory per accelerator = weights (at the quantization, all experts, split over
/// TP x PP) + KV cache (`max_model_len x concurrency` tokens) + runtime overhead,
/// which must stay within device memory x `gpu_memory_utilization`. Among valid
/// layouts (TP divides the heads; a node is filled before PP crosses nodes) the one
/// with the fewest accelerators, then fewest nodes, wins.
pub fn plan(req: &PlanRequest) -> Result<Plan, PlanError> {
    let mut notes = Vec::new();
    let r = resolve(req, &mut notes)?;
    let (layout, mem, layout_reason) = choose::choose_layout(&r)?;
    let max_concurrency = memory::max_concurrency(&r.input(&layout));
    let model = req.model;
    let opts = req.parallel;
    let ep = layout.is_expert_parallel();
    if model.attention == Attention::Mla && layout.tensor_parallel > 1 {
        if ep {
            notes.push(format!(
                "MLA KV cache is replicated on the {} TP ranks of each DP group; each of the {} DP groups holds only its own sequences",
                layout.tensor_parallel, layout.data_parallel
            ));
        } else {
            notes.push(format!(
                "MLA KV cache is replicated on all {} TP ranks (only PP splits it)",
                layout.tensor_parallel
            ));
        }
    }
    let experts_per_rank = model.moe.as_ref().map(|moe| {
        if ep {
            let per = memory::experts_per_rank(
                moe.routed_experts,
                opts.redundant_experts,
                layout.expert_parallel,
            );
            notes.push(format!(
                "{} routed experts + {} redundant over EP{}: {per} per rank; dense and shared-expert weights on every rank",
                moe.routed_experts, opts.redundant_experts, layout.expert_parallel
            ));
            per
        } else {
            notes.push(format!(
                "all {} routed experts are resident; {} active per token",
                moe.routed_experts, moe.experts_per_token
            ));
            moe.routed_experts
        }
    });
    if let Some(domain) = req.accelerator.nvlink_domain {
        if layout.nodes > 1 {
            notes.push(format!(
                "the group spans {} nodes inside one NVLink domain of {domain} accelerators: its ranks are placed on nodes sharing nvidia.com/gpu.clique",
                layout.nodes
            ));
        }
    }
    if opts.redundant_experts > 0 && !ep {
        notes.push("redundant experts apply only to EP layouts; ignored".into());
    }
    if opts.speculative_mtp {
        notes.push("MTP layer loaded for speculative decoding (one more decoder layer of weights and KV cache)".into());
    }
    if opts.kv_cache_dtype == KvCacheDtype::Fp8 {
        notes.push("FP8 KV cache: 1 byte per element".into());
    }
    let est = req
        .accelerator
        .bandwidth_tbps
        .filter(|b| b.is_finite() && *b > 0.0)
        .map(|_| r.tokens_per_gpu_s(&layout));
    Ok(Plan {
        model: model.id.clone(),
        hf_repo: model.hf_repo.clone(),
        quantization: req.quantization,
        accelerator: req.accelerator.id.clone(),
        vendor: req.accelerator.vendor,
        engine: r.engine,
        gpus_per_replica: u32::try_from(layout.gpus()).unwrap_or(u32::MAX),
        nodes_per_replica: layout.nodes,
        gpus_per_node: layout.gpus_per_node,
        tensor_parallel: layout.tensor_parallel,
        pipeline_parallel: layout.pipeline_parallel,
        data_parallel: layout.data_parallel,
        expert_parallel: layout.expert_parallel,
        parallelism: layout.kind().to_string(),
        layout: layout.name(),
        experts_per_rank,
        redundant_experts: opts.redundant_experts,
        speculative_mtp: opts.speculative_mtp,
        kv_cache_dtype: opts.kv_cache_dtype,
        objective: opts.objective,
        layout_reason,
        est_decode_tokens_per_gpu_s: est,
        max_model_len: r.max_model_len,
        concurrency: r.concurrency,
        max_concurrency,
        gpu_memory_utilization: r.util,
        memory: mem,
        notes,
    })
}

fn resolve<'a>(
    req: &'a PlanRequest<'a>,
    notes: &mut Vec<String>,
) -> Result<Resolved<'a>, PlanError> {
    let model = req.model;
    let acc = req.accelerator;
    model.validate().map_err(PlanError::InvalidInput)?;
    acc.validate().map_err(PlanError::InvalidInput)?;
    if req.gpus_per_node == 0 {
        return Err(PlanError::InvalidInput(
            "gpus per node must be at least 1".into(),
        ));
    }
    if req.max_nodes == Some(0) {
        return Err(PlanError::InvalidInput(
            "max nodes must be at least 1".into(),
        ));
    }
    let engine = support::resolve_engine(acc, req.quantization, req.engine, notes)?;
    support::check_parallel_options(model, engine, acc.vendor, &req.parallel)?;

    let util = match req.gpu_memory_utilization {
        None => {
            notes.push(format!(
                "gpuMemoryUtilization defaulted to {DEFAULT_GPU_MEMORY_UTILIZATION}"
            ));
            DEFAULT_GPU_MEMORY_UTILIZATION
        }
        Some(u) if u.is_finite() && u > 0.0 && u <= 1.0 => u,
        Some(u) => {
            return Err(PlanError::InvalidOverride(format!(
                "gpu memory utilization {u} must be in (0, 1]"
            )))
        }
    };

    let max_pos = model.max_position_embeddings;
    let max_model_len = match req.max_model_len {
        None => {
            let len = DEFAULT_MAX_MODEL_LEN.min(max_pos);
            if len < DEFAULT_MAX_MODEL_LEN {
                notes.push(format!(
                    "maxModelLen defaulted to {len} (the model's max position embeddings)"
                ));
            } else {
                notes.push(format!("maxModelLen defaulted to {len}"));
            }
            len
        }
        Some(0) => {
            return Err(PlanError::InvalidOverride(
                "max model len must be at least 1".into(),
            ))
        }
        Some(len) if len > max_pos => {
            return Err(PlanError::InvalidOverride(format!(
                "max model len {len} exceeds {}'s max position embeddings {max_pos}",
                model.id
            )))
        }
        Some(len) => len,
    };

    let concurrency = match req.concurrency {
        None => {
            notes.push(format!(
                "concurrency defaulted to {DEFAULT_CONCURRENCY} sequence of maxModelLen tokens"
            ));
            DEFAULT_CONCURRENCY
        }
        Some(0) => {
            return Err(PlanError::InvalidOverride(
                "concurrency must be at least 1".into(),
            ))
        }
        Some(c) => c,
    };

    let device_gib = match req.memory_override_gib {
        Some(m) if m.is_finite() && m > 0.0 => m,
        Some(m) => {
            return Err(PlanError::InvalidInput(format!(
                "memory override {m} GiB must be a positive number"
            )))
        }
        None if acc.vendor == Vendor::Cpu || acc.memory_mib == 0 => {
            return Err(PlanError::InvalidInput(format!(
                "accelerator {} needs the node's memory in GiB (memory override)",
                acc.id
            )))
        }
        None => acc.memory_gib(),
    };

    let mut gpus_per_node = req.gpus_per_node;
    if acc.vendor == Vendor::Cpu {
        if gpus_per_node != 1
            || req.tensor_parallel.unwrap_or(1) != 1
            || req.pipeline_parallel.unwrap_or(1) != 1
        {
            if req.tensor_parallel.unwrap_or(1) != 1 || req.pipeline_parallel.unwrap_or(1) != 1 {
                return Err(PlanError::InvalidOverride(
                    "cpu plans run one engine server (llama.cpp or vLLM) per replica: tensor and pipeline parallel must be 1".into(),
                ));
            }
            notes.push("cpu: one engine server per node, gpusPerNode taken as 1".into());
        }
        gpus_per_node = 1;
    }

    Ok(Resolved {
        req,
        engine,
        gpus_per_node,
        max_model_len,
        concurrency,
        util,
        device_gib,
    })
}

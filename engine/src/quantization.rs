//! Quantization spellings of the manifest and which engine/vendor pairs take them.

use crate::{Engine, RenderError};

/// A quantization as written in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantization {
    Bf16,
    Fp16,
    Fp8,
    Int8,
    Int4Awq,
    Int4Gptq,
    /// NVIDIA ModelOpt FP4 checkpoints (Blackwell).
    Nvfp4,
    /// OCP MXFP4 checkpoints from AMD Quark (CDNA 4).
    Mxfp4,
    /// ModelSlim W4A8 checkpoints (vllm-ascend, SGLang on Ascend).
    W4a8,
    /// A GGUF quant type, e.g. `Q4_K_M` for `gguf-q4_k_m`.
    Gguf(&'static str),
}

impl Quantization {
    pub fn parse(s: &str) -> Result<Self, RenderError> {
        Ok(match s {
            "bf16" => Quantization::Bf16,
            "fp16" => Quantization::Fp16,
            "fp8" => Quantization::Fp8,
            "int8" => Quantization::Int8,
            "int4-awq" => Quantization::Int4Awq,
            "int4-gptq" => Quantization::Int4Gptq,
            "nvfp4" => Quantization::Nvfp4,
            "mxfp4" => Quantization::Mxfp4,
            "w4a8" => Quantization::W4a8,
            "gguf-q8_0" => Quantization::Gguf("Q8_0"),
            "gguf-q4_k_m" => Quantization::Gguf("Q4_K_M"),
            "gguf-iq1_s" => Quantization::Gguf("IQ1_S"),
            other => return Err(RenderError::UnknownQuantization(other.to_string())),
        })
    }

    pub fn is_gguf(self) -> bool {
        matches!(self, Quantization::Gguf(_))
    }

    /// Whether `engine` on `vendor` can serve this quantization (engines.md tables).
    pub fn supported(self, engine: Engine, vendor: &str) -> bool {
        use Quantization::*;
        match engine {
            Engine::Sim => true,
            Engine::Llamacpp => self.is_gguf(),
            Engine::Vllm => match self {
                Bf16 | Fp16 | Fp8 => true,
                // AWQ, GPTQ and INT8 W8A8 kernels are NVIDIA-only in vLLM.
                Int4Awq | Int4Gptq | Int8 => vendor == "nvidia",
                Nvfp4 => vendor == "nvidia",
                Mxfp4 => vendor == "amd",
                W4a8 => false,
                Gguf(_) => true,
            },
            // SGLang on Ascend (its Ascend quantization doc, and the pinned source's NPU
            // schemes): ModelSlim W8A8/W4A8, AWQ/GPTQ W4A16; the NPUs have no FP8 or FP4.
            Engine::Sglang => match self {
                Bf16 | Fp16 | Int4Awq | Int4Gptq => true,
                Fp8 => vendor != "ascend",
                Int8 => vendor == "nvidia" || vendor == "ascend",
                Nvfp4 => vendor == "nvidia",
                Mxfp4 => vendor == "amd",
                W4a8 => vendor == "ascend",
                Gguf(_) => vendor == "nvidia",
            },
            // vllm-ascend: W8A8 and W4A8 (ModelSlim) and float; no FP8, no AWQ/GPTQ
            // kernels, no FP4, no GGUF.
            Engine::VllmAscend => matches!(self, Bf16 | Fp16 | Int8 | W4a8),
        }
    }
}

//! Plain vocabulary shared by the planner, the CLI and the CRD: quantizations and vendors.
//! They derive `JsonSchema` so the CRD can embed them as enums.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Weight formats the planner and engines understand.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum Quantization {
    #[default]
    #[serde(rename = "bf16")]
    Bf16,
    #[serde(rename = "fp16")]
    Fp16,
    #[serde(rename = "fp8")]
    Fp8,
    /// W8A8 integer.
    #[serde(rename = "int8")]
    Int8,
    #[serde(rename = "int4-awq")]
    Int4Awq,
    #[serde(rename = "int4-gptq")]
    Int4Gptq,
    #[serde(rename = "gguf-q8_0")]
    GgufQ8_0,
    #[serde(rename = "gguf-q4_k_m")]
    GgufQ4KM,
    /// Unsloth's dynamic 1.58-bit GGUF.
    #[serde(rename = "gguf-iq1_s")]
    GgufIq1S,
    /// NVIDIA's FP4 (E2M1 values, an FP8 scale per 16 weights), from TensorRT Model
    /// Optimizer; Blackwell tensor cores run it natively.
    #[serde(rename = "nvfp4")]
    Nvfp4,
    /// OCP microscaling FP4 (E2M1 values, an E8M0 scale per 32 weights), e.g. AMD
    /// Quark checkpoints; MI355X-class (CDNA4) hardware runs it natively.
    #[serde(rename = "mxfp4")]
    Mxfp4,
    /// 4-bit integer weights with 8-bit integer activations, from Huawei ModelSlim,
    /// served by vllm-ascend.
    #[serde(rename = "w4a8")]
    W4a8,
}

impl Quantization {
    pub const ALL: [Quantization; 12] = [
        Quantization::Bf16,
        Quantization::Fp16,
        Quantization::Fp8,
        Quantization::Int8,
        Quantization::Int4Awq,
        Quantization::Int4Gptq,
        Quantization::GgufQ8_0,
        Quantization::GgufQ4KM,
        Quantization::GgufIq1S,
        Quantization::Nvfp4,
        Quantization::Mxfp4,
        Quantization::W4a8,
    ];

    /// The manifest spelling, e.g. `int4-awq`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::Bf16 => "bf16",
            Quantization::Fp16 => "fp16",
            Quantization::Fp8 => "fp8",
            Quantization::Int8 => "int8",
            Quantization::Int4Awq => "int4-awq",
            Quantization::Int4Gptq => "int4-gptq",
            Quantization::GgufQ8_0 => "gguf-q8_0",
            Quantization::GgufQ4KM => "gguf-q4_k_m",
            Quantization::GgufIq1S => "gguf-iq1_s",
            Quantization::Nvfp4 => "nvfp4",
            Quantization::Mxfp4 => "mxfp4",
            Quantization::W4a8 => "w4a8",
        }
    }

    /// Bytes per parameter as stored, scale overhead included:
    /// - bf16/fp16: 2.
    /// - fp8: 1 + one fp32 scale per 128x128 block (DeepSeek's V3 format).
    /// - int8 (W8A8): 1 + one fp32 scale per output channel (~0.1%).
    /// - int4 AWQ/GPTQ: 0.5 + an fp16 scale and 4-bit zero per group of 128.
    /// - gguf-q8_0: 34 bytes per 32 weights (8.5 bits).
    /// - gguf-q4_k_m: ~4.85 bits on average (Q4_K with some Q6_K tensors).
    /// - gguf-iq1_s: calibrated to Unsloth's R1 UD-IQ1_S file, 131 GiB for 671B
    ///   parameters (~1.68 bits: its dynamic scheme keeps some layers wider).
    /// - nvfp4: 0.5 + one FP8 scale per 16 weights (the per-tensor FP32 scale is
    ///   negligible).
    /// - mxfp4: 0.5 + one E8M0 (1 byte) scale per 32 weights.
    /// - w4a8: 0.5 + an estimate of ModelSlim's scales (per group of 256, with a
    ///   second-level scale): 4 bytes per 256 weights. Estimate.
    pub fn bytes_per_param(self) -> f64 {
        match self {
            Quantization::Bf16 | Quantization::Fp16 => 2.0,
            Quantization::Fp8 => 1.0 + 4.0 / (128.0 * 128.0),
            Quantization::Int8 => 1.001,
            Quantization::Int4Awq | Quantization::Int4Gptq => 0.5 + 2.5 / 128.0,
            Quantization::GgufQ8_0 => 34.0 / 32.0,
            Quantization::GgufQ4KM => 4.85 / 8.0,
            Quantization::GgufIq1S => 131.0 * 1_073_741_824.0 / 671e9,
            Quantization::Nvfp4 => 0.5 + 1.0 / 16.0,
            Quantization::Mxfp4 => 0.5 + 1.0 / 32.0,
            Quantization::W4a8 => 0.5 + 4.0 / 256.0,
        }
    }

    /// Nominal bits per weight, as the seed's rule of thumb counts them.
    pub fn nominal_bits(self) -> f64 {
        match self {
            Quantization::Bf16 | Quantization::Fp16 => 16.0,
            Quantization::Fp8 | Quantization::Int8 | Quantization::GgufQ8_0 => 8.0,
            Quantization::Int4Awq
            | Quantization::Int4Gptq
            | Quantization::GgufQ4KM
            | Quantization::Nvfp4
            | Quantization::Mxfp4
            | Quantization::W4a8 => 4.0,
            Quantization::GgufIq1S => 1.58,
        }
    }

    /// Formats whose checkpoints keep embeddings and lm_head in 16-bit.
    pub fn keeps_embeddings_16bit(self) -> bool {
        matches!(
            self,
            Quantization::Fp8
                | Quantization::Int8
                | Quantization::Int4Awq
                | Quantization::Int4Gptq
                | Quantization::Nvfp4
                | Quantization::Mxfp4
                | Quantization::W4a8
        )
    }

    /// A 4-bit float format that needs FP4 tensor cores (NVFP4 or MXFP4).
    pub fn is_fp4(self) -> bool {
        matches!(self, Quantization::Nvfp4 | Quantization::Mxfp4)
    }

    /// AWQ or GPTQ 4-bit.
    pub fn is_int4(self) -> bool {
        matches!(self, Quantization::Int4Awq | Quantization::Int4Gptq)
    }

    pub fn is_gguf(self) -> bool {
        matches!(
            self,
            Quantization::GgufQ8_0 | Quantization::GgufQ4KM | Quantization::GgufIq1S
        )
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantization::ALL
            .into_iter()
            .find(|q| q.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let all: Vec<_> = Quantization::ALL.iter().map(|q| q.as_str()).collect();
                format!(
                    "unknown quantization '{s}' (expected one of: {})",
                    all.join(", ")
                )
            })
    }
}

/// Accelerator vendors, each with its own device plugin, labels and engines.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Amd,
    Ascend,
    Cpu,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [Vendor::Nvidia, Vendor::Amd, Vendor::Ascend, Vendor::Cpu];
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Ascend => "ascend",
            Vendor::Cpu => "cpu",
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the planner optimizes when it picks a layout itself.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LayoutObjective {
    /// Fewest accelerators, then fewest nodes, then least PP (TP x PP layouts only).
    #[default]
    Cheapest,
    /// Most decode tokens/s per accelerator at the requested concurrency, among
    /// TP x PP, DP-attention x EP and hybrid layouts (see `docs/parallelism.md`).
    Throughput,
}

impl LayoutObjective {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutObjective::Cheapest => "cheapest",
            LayoutObjective::Throughput => "throughput",
        }
    }
}

impl std::fmt::Display for LayoutObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LayoutObjective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cheapest" => Ok(LayoutObjective::Cheapest),
            "throughput" => Ok(LayoutObjective::Throughput),
            other => Err(format!(
                "unknown layout objective '{other}' (expected cheapest or throughput)"
            )),
        }
    }
}

/// Element type of the KV cache.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheDtype {
    /// The model's activation type: 2 bytes per element.
    #[default]
    Auto,
    /// FP8 (e4m3): 1 byte per element, where the engine supports it.
    Fp8,
}

impl KvCacheDtype {
    pub fn bytes_per_element(self) -> f64 {
        match self {
            KvCacheDtype::Auto => 2.0,
            KvCacheDtype::Fp8 => 1.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheDtype::Auto => "auto",
            KvCacheDtype::Fp8 => "fp8",
        }
    }
}

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
}

impl Quantization {
    pub const ALL: [Quantization; 9] = [
        Quantization::Bf16,
        Quantization::Fp16,
        Quantization::Fp8,
        Quantization::Int8,
        Quantization::Int4Awq,
        Quantization::Int4Gptq,
        Quantization::GgufQ8_0,
        Quantization::GgufQ4KM,
        Quantization::GgufIq1S,
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
        }
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

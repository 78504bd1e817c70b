//! The seed article's rule of thumb (params x bytes x ~1.15) and its table, so the
//! planner's estimates can be shown next to the numbers people already quote.

use crate::{plan, Catalog, Plan, PlanError, PlanRequest, Quantization};

/// The article's multiplier for "overhead" on top of raw weights.
pub const RULE_OF_THUMB_FACTOR: f64 = 1.15;

/// Memory in GB (10^9 bytes) by the seed's rule: `params x bits/8 x 1.15`.
/// 671B at 16 bits ~ 1543 GB, at 4 bits ~ 386 GB; 70B at 16 bits ~ 161 GB.
pub fn rule_of_thumb(params_billions: f64, bits: f64) -> f64 {
    params_billions * bits / 8.0 * RULE_OF_THUMB_FACTOR
}

/// One row of the seed's "Recommended Hardware" table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeedRow {
    /// The article's size label, e.g. `671B (DeepSeek-V3)`.
    pub label: &'static str,
    /// Parameters the article's figures imply, in billions.
    pub params_b: f64,
    /// Catalog model standing in for the row.
    pub model: &'static str,
    /// The article's FP16 figure, GB.
    pub seed_fp16_gb: f64,
    /// The article's 4-bit figure, GB.
    pub seed_4bit_gb: f64,
    /// The article's recommended setup.
    pub seed_setup: &'static str,
}

/// The seed's five sizes.
pub const SEED_TABLE: [SeedRow; 5] = [
    SeedRow {
        label: "1.5B",
        params_b: 1.5,
        model: "deepseek-r1-distill-qwen-1.5b",
        seed_fp16_gb: 4.0,
        seed_4bit_gb: 1.0,
        seed_setup: "RTX 3050 or Jetson Nano",
    },
    SeedRow {
        label: "7B",
        params_b: 7.0,
        model: "deepseek-llm-7b",
        seed_fp16_gb: 16.0,
        seed_4bit_gb: 4.0,
        seed_setup: "RTX 3060",
    },
    SeedRow {
        label: "32B",
        params_b: 32.0,
        model: "deepseek-r1-distill-qwen-32b",
        seed_fp16_gb: 48.0,
        seed_4bit_gb: 16.0,
        seed_setup: "RTX 3090",
    },
    SeedRow {
        label: "67B/70B",
        params_b: 67.0,
        model: "deepseek-llm-67b",
        seed_fp16_gb: 154.0,
        seed_4bit_gb: 38.0,
        seed_setup: "2 x A100 40GB",
    },
    SeedRow {
        label: "671B",
        params_b: 671.0,
        model: "deepseek-v3",
        seed_fp16_gb: 1543.0,
        seed_4bit_gb: 386.0,
        seed_setup: "12+ x H800 80GB",
    },
];

/// One seed row with our weights and plans on a given accelerator.
#[derive(Clone, Debug)]
pub struct SeedComparison {
    pub row: SeedRow,
    /// Rule of thumb for the catalog model's real parameter count, GB.
    pub rule_fp16_gb: f64,
    pub rule_4bit_gb: f64,
    /// Our whole-model weights, GB (10^9 bytes, like the article).
    pub weights_16bit_gb: Option<f64>,
    pub weights_4bit_gb: Option<f64>,
    pub plan_16bit: Result<Plan, PlanError>,
    pub plan_4bit: Result<Plan, PlanError>,
}

/// Compares the seed's table with our plans on `accelerator` (16-bit and the
/// accelerator's 4-bit format: AWQ on GPUs, GGUF Q4_K_M on CPU; Ascend has none).
pub fn compare_seed(
    catalog: &Catalog,
    accelerator: &str,
    gpus_per_node: Option<u32>,
    memory_override_gib: Option<f64>,
) -> Result<Vec<SeedComparison>, PlanError> {
    let acc = catalog
        .accelerator(accelerator)
        .ok_or_else(|| PlanError::UnknownAccelerator {
            id: accelerator.to_string(),
        })?;
    let (q16, q4) = if acc.vendor == crate::Vendor::Cpu {
        (Quantization::GgufQ8_0, Quantization::GgufQ4KM)
    } else {
        (Quantization::Bf16, Quantization::Int4Awq)
    };
    let mut rows = Vec::new();
    for row in SEED_TABLE {
        let model = catalog
            .model(row.model)
            .ok_or_else(|| PlanError::UnknownModel {
                id: row.model.to_string(),
            })?;
        let run = |q: Quantization| {
            let mut req = PlanRequest::new(model, q, acc);
            if let Some(g) = gpus_per_node {
                req.gpus_per_node = g;
            }
            req.memory_override_gib = memory_override_gib;
            plan(&req)
        };
        let weights_gb = |q: Quantization| Some(crate::memory::weight_bytes(model, q) / 1e9);
        rows.push(SeedComparison {
            row,
            rule_fp16_gb: rule_of_thumb(model.total_params_b, 16.0),
            rule_4bit_gb: rule_of_thumb(model.total_params_b, 4.0),
            weights_16bit_gb: weights_gb(q16),
            weights_4bit_gb: weights_gb(q4),
            plan_16bit: run(q16),
            plan_4bit: run(q4),
        });
    }
    Ok(rows)
}

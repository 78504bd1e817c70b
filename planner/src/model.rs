//! Model architectures: the numbers that decide how much memory a model needs.
//!
//! Catalog entries and user-described custom models share this one type, so the
//! planner never needs to know where a model came from.

use serde::{Deserialize, Serialize};

use crate::Quantization;

/// How the KV cache is laid out per token.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// Multi-head latent attention (DeepSeek V2/V3): one compressed latent per token
    /// and layer, `kv_lora_rank + qk_rope_head_dim` elements.
    Mla,
    /// Grouped-query or multi-head attention: K and V per KV head.
    Gqa,
}

impl Attention {
    pub fn as_str(self) -> &'static str {
        match self {
            Attention::Mla => "mla",
            Attention::Gqa => "gqa",
        }
    }
}

/// Mixture-of-experts shape. Every expert stays resident in memory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Moe {
    pub routed_experts: u32,
    pub shared_experts: u32,
    pub experts_per_token: u32,
    #[serde(default)]
    pub first_k_dense_replace: u32,
    #[serde(default)]
    pub moe_intermediate_size: Option<u32>,
}

/// One model's architecture. Parameters are in billions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelArch {
    /// Catalog id, e.g. `deepseek-r1`; `custom` for user-described models.
    pub id: String,
    /// Hugging Face repository, e.g. `deepseek-ai/DeepSeek-R1`.
    pub hf_repo: String,
    /// Architecture family (`deepseek-v3`, `qwen2`, ...); informational.
    #[serde(default)]
    pub family: Option<String>,
    pub attention: Attention,
    /// Total parameters in billions, all MoE experts included.
    pub total_params_b: f64,
    /// Parameters active per token in billions (equals total for dense models).
    pub active_params_b: f64,
    pub layers: u32,
    pub hidden_size: u32,
    #[serde(default)]
    pub intermediate_size: Option<u32>,
    pub attention_heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    #[serde(default)]
    pub q_lora_rank: Option<u32>,
    /// MLA latent width (512 for V2/V3).
    #[serde(default)]
    pub kv_lora_rank: Option<u32>,
    /// MLA decoupled rope key width (64 for V2/V3).
    #[serde(default)]
    pub qk_rope_head_dim: Option<u32>,
    /// V3.2 sparse-attention indexer key width, cached per token and layer.
    #[serde(default)]
    pub index_head_dim: Option<u32>,
    pub vocab_size: u32,
    pub max_position_embeddings: u32,
    /// The checkpoint's own weight format: `fp8` for V3/R1, `bf16` otherwise.
    pub native_dtype: Quantization,
    /// Whether the engine must run Python code from the model's repository
    /// (`--trust-remote-code`): only for architectures the pinned engines do not implement.
    pub trust_remote_code: bool,
    /// Whether lm_head shares the embedding matrix (false for every DeepSeek model).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub moe: Option<Moe>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl ModelArch {
    /// A user-described model with plain defaults: `kv_heads = heads`,
    /// `head_dim = hidden / heads`, active = total params, BF16, no vocabulary
    /// information (embeddings then count as ordinary weights). For MLA set
    /// `kv_lora_rank` and `qk_rope_head_dim` on the result (V3 uses 512 and 64).
    pub fn custom(
        hf_repo: &str,
        attention: Attention,
        total_params_b: f64,
        layers: u32,
        hidden_size: u32,
        attention_heads: u32,
        max_position_embeddings: u32,
    ) -> ModelArch {
        ModelArch {
            id: "custom".into(),
            hf_repo: hf_repo.into(),
            family: None,
            attention,
            total_params_b,
            active_params_b: total_params_b,
            layers,
            hidden_size,
            intermediate_size: None,
            attention_heads,
            kv_heads: attention_heads,
            head_dim: hidden_size.checked_div(attention_heads).unwrap_or(0),
            q_lora_rank: None,
            kv_lora_rank: None,
            qk_rope_head_dim: None,
            index_head_dim: None,
            vocab_size: 0,
            max_position_embeddings,
            native_dtype: Quantization::Bf16,
            trust_remote_code: false,
            tie_word_embeddings: false,
            moe: None,
            notes: None,
        }
    }

    /// Checks the numbers are usable for sizing; the reason names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.id;
        if !(self.total_params_b.is_finite() && self.total_params_b > 0.0) {
            return Err(format!(
                "model {id}: total parameters must be a positive number"
            ));
        }
        if !(self.active_params_b.is_finite() && self.active_params_b >= 0.0) {
            return Err(format!(
                "model {id}: active parameters must be a non-negative number"
            ));
        }
        for (name, v) in [
            ("layers", self.layers),
            ("hidden size", self.hidden_size),
            ("attention heads", self.attention_heads),
            ("max position embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(format!("model {id}: {name} must be at least 1"));
            }
        }
        match self.attention {
            Attention::Mla => {
                if self.kv_lora_rank.unwrap_or(0) == 0 {
                    return Err(format!("model {id}: MLA attention needs kv_lora_rank"));
                }
            }
            Attention::Gqa => {
                if self.kv_heads == 0 || self.head_dim == 0 {
                    return Err(format!(
                        "model {id}: GQA attention needs kv_heads and head_dim"
                    ));
                }
                if self.kv_heads > self.attention_heads {
                    return Err(format!(
                        "model {id}: kv_heads ({}) exceeds attention heads ({})",
                        self.kv_heads, self.attention_heads
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parameters in all routed experts of all MoE layers (0 for dense models).
    /// From the config when `moe_intermediate_size` is known (3 matrices of
    /// hidden x moe_intermediate per expert per MoE layer); otherwise from the
    /// active/total split: total - active = routed x (1 - per_token / routed).
    pub fn routed_expert_params(&self) -> f64 {
        let Some(moe) = &self.moe else { return 0.0 };
        if moe.routed_experts == 0 {
            return 0.0;
        }
        let total = self.total_params_b * 1e9;
        let from_config = moe.moe_intermediate_size.map(|mi| {
            let moe_layers = f64::from(self.layers.saturating_sub(moe.first_k_dense_replace));
            3.0 * f64::from(self.hidden_size)
                * f64::from(mi)
                * f64::from(moe.routed_experts)
                * moe_layers
        });
        let estimate = from_config.unwrap_or_else(|| {
            let share = f64::from(moe.experts_per_token.min(moe.routed_experts))
                / f64::from(moe.routed_experts);
            if share >= 1.0 {
                0.0
            } else {
                (total - self.active_params_b * 1e9).max(0.0) / (1.0 - share)
            }
        });
        if estimate.is_finite() {
            estimate.clamp(0.0, total)
        } else {
            0.0
        }
    }

    /// Whether the checkpoint ships a multi-token-prediction layer usable for
    /// speculative decoding (`num_nextn_predict_layers: 1` in V3/R1/V3.2 configs).
    pub fn has_mtp(&self) -> bool {
        matches!(
            self.family.as_deref(),
            Some("deepseek-v3") | Some("deepseek-v32")
        )
    }

    /// Parameters in the embedding and lm_head matrices, which quantized
    /// checkpoints keep in 16-bit.
    pub fn embedding_params(&self) -> f64 {
        let one = f64::from(self.vocab_size) * f64::from(self.hidden_size);
        if self.tie_word_embeddings {
            one
        } else {
            2.0 * one
        }
    }
}

//! Which expert-parallel sizes each engine loads.
//!
//! A plan that spreads the routed experts over EP ranks is only useful if the engine
//! accepts that split when it loads the model; otherwise every rank crashes at start and
//! the group never comes up. The rules below were read in the pinned engines' sources
//! (docs/parallelism.md, "EP sizes the engines accept", quotes file and line):
//!
//! - SGLang 0.5.23 asserts that EP divides the routed experts plus the redundant copies
//!   in its MoE layer, whatever the load balancer (`(routed + redundant) % EP == 0`).
//! - vllm-ascend 0.23.0 sizes each rank's expert weights as `(routed + redundant) // EP`,
//!   and its load balancer raises unless EP divides them: the same rule.
//! - vLLM (0.32.0 on CUDA, 0.23.0 on ROCm) spreads experts unevenly when EP does not
//!   divide them, but refuses it with redundant experts (its load balancer, EPLB, needs
//!   an even split): the rule holds only when `redundant > 0`.
//! - The sim engine loads no experts and llama.cpp has no EP.

use deepseek_engine::Engine;

/// What an engine requires of the EP size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpRule {
    /// Any EP size loads.
    Any,
    /// EP must divide the routed experts plus the redundant ones.
    DividesExpertSlots {
        /// The engine's own check, for the refusal's message.
        source: &'static str,
    },
}

/// The rule `engine` applies to EP when `redundant` extra expert copies are placed.
pub fn ep_rule(engine: Engine, redundant: u32) -> EpRule {
    match engine {
        Engine::Sglang => EpRule::DividesExpertSlots {
            source: "SGLang 0.5.23 asserts it when its MoE layer loads (sglang/srt/layers/moe/fused_moe_triton/layer.py:414)",
        },
        Engine::VllmAscend => EpRule::DividesExpertSlots {
            source: "vllm-ascend 0.23.0 sizes each rank's experts as slots // EP (vllm_ascend/ops/fused_moe/fused_moe_0_23_0.py:235) and its load balancer raises otherwise (vllm_ascend/eplb/core/eplb_utils.py:48)",
        },
        Engine::Vllm if redundant > 0 => EpRule::DividesExpertSlots {
            source: "vLLM's expert load balancer, which redundant experts need, refuses an uneven split (vllm/model_executor/layers/fused_moe/layer.py:262 in 0.32.0, :202 in 0.23.0)",
        },
        Engine::Vllm | Engine::Sim | Engine::Llamacpp => EpRule::Any,
    }
}

/// Whether `engine` loads `routed + redundant` expert slots over `ep` ranks; the error
/// names the engine's own check.
pub fn check_ep(engine: Engine, routed: u32, redundant: u32, ep: u32) -> Result<(), String> {
    if ep <= 1 {
        return Ok(());
    }
    let slots = u64::from(routed) + u64::from(redundant);
    match ep_rule(engine, redundant) {
        EpRule::Any => Ok(()),
        EpRule::DividesExpertSlots { .. } if slots.is_multiple_of(u64::from(ep)) => Ok(()),
        EpRule::DividesExpertSlots { source } => Err(format!(
            "EP{ep} does not divide the {slots} expert slots ({routed} routed + {redundant} redundant), which {engine} requires: {source}"
        )),
    }
}

/// The fewest redundant experts at or above `redundant` that make `ep` divide the
/// expert slots (`None` past `limit`).
pub fn redundant_for(routed: u32, redundant: u32, ep: u32, limit: u32) -> Option<u32> {
    if ep == 0 {
        return None;
    }
    let slots = u64::from(routed) + u64::from(redundant);
    let add = (u64::from(ep) - slots % u64::from(ep)) % u64::from(ep);
    u32::try_from(u64::from(redundant) + add)
        .ok()
        .filter(|r| *r <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_rule() {
        // (engine, routed, redundant, ep, accepted)
        let table = [
            (Engine::Sglang, 256, 0, 72, false),
            (Engine::Sglang, 256, 32, 72, true),
            (Engine::Sglang, 256, 0, 64, true),
            (Engine::Sglang, 256, 0, 24, false),
            (Engine::VllmAscend, 256, 0, 24, false),
            (Engine::VllmAscend, 256, 0, 32, true),
            (Engine::Vllm, 256, 0, 72, true),
            (Engine::Vllm, 256, 8, 72, false),
            (Engine::Vllm, 256, 32, 72, true),
            (Engine::Sim, 256, 0, 72, true),
            (Engine::Sglang, 256, 0, 1, true),
        ];
        for (engine, routed, redundant, ep, ok) in table {
            let got = check_ep(engine, routed, redundant, ep);
            assert_eq!(
                got.is_ok(),
                ok,
                "{engine} {routed}+{redundant} over EP{ep}: {got:?}"
            );
            if let Err(e) = got {
                assert!(e.contains(".py:"), "names the engine's check: {e}");
            }
        }
    }

    #[test]
    fn redundant_that_divides() {
        assert_eq!(redundant_for(256, 0, 72, 1024), Some(32));
        assert_eq!(redundant_for(256, 0, 64, 1024), Some(0));
        assert_eq!(redundant_for(256, 33, 72, 1024), Some(104));
        assert_eq!(redundant_for(256, 0, 72, 16), None);
    }
}

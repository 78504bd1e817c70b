//! Prefill/decode disaggregation: one model served by two roles, each its own groups.
//!
//! Prefill computes prompts and hands each sequence's KV cache to decode, so a prefill
//! rank holds KV only for the prompts it is working on; decode holds the KV of every
//! running sequence and is sized for the requested concurrency. Each role is planned with
//! the request's objective, `cheapest` unless asked otherwise: the same default as the
//! operator's role models, so `plan --mode disaggregated` shows what the operator deploys
//! ([`role_concurrency`] is the one split of the load both use). The published PD
//! deployments (SGLang's 96-GPU H100 one, llm-d's wide-EP guide) put both roles on DP
//! attention + EP: ask for it with `throughput` or a data parallel size per role. Mixed
//! fleets put prefill and decode on different accelerators (prefill on H200, decode on
//! H20), so decode may name its own accelerator.

use serde::Serialize;

use crate::support::{auto_engine_disaggregated, check_disaggregated_engine};
use deepseek_engine::PdRole;

use crate::{plan, Accelerator, Plan, PlanError, PlanRequest, DEFAULT_CONCURRENCY};

/// Sequences in flight on prefill per sequence decoding: a prompt stays on prefill only
/// while it is computed, a short share of a sequence's life.
pub const PREFILL_SHARE: u32 = 4;

/// The sequences a role is sized for, given the model's `concurrency`: decode holds every
/// running sequence, prefill 1 in [`PREFILL_SHARE`] of them (at least 1). `None` stays
/// `None` (the planner's default). The operator's role models and
/// [`plan_disaggregated`] both take their load from here.
pub fn role_concurrency(role: PdRole, concurrency: Option<u32>) -> Option<u32> {
    match role {
        PdRole::Prefill => concurrency.map(|c| c.div_ceil(PREFILL_SHARE).max(1)),
        PdRole::Decode => concurrency,
    }
}

/// The two roles' plans.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisaggregatedPlan {
    pub prefill: Plan,
    pub decode: Plan,
    /// Why each role got its size, in one line.
    pub reason: String,
}

/// Which role a planning failure belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleError {
    pub role: &'static str,
    pub error: PlanError,
}

impl std::fmt::Display for RoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} role: {}", self.role, self.error)
    }
}

impl std::error::Error for RoleError {}

/// What differs per role; everything else comes from the base request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleOverrides<'a> {
    pub accelerator: Option<&'a Accelerator>,
    pub gpus_per_node: Option<u32>,
    pub concurrency: Option<u32>,
    pub data_parallel: Option<u32>,
    pub tensor_parallel: Option<u32>,
}

/// Plans prefill and decode for `base` (its model, quantization, context, concurrency and
/// objective). Decode takes `base.concurrency`; prefill `ceil(concurrency /
/// PREFILL_SHARE)` unless overridden ([`role_concurrency`]). An open engine
/// becomes SGLang ([`auto_engine_disaggregated`]: the router fronts SGLang only, so on
/// Ascend too), and an engine whose roles cannot be routed is refused
/// ([`check_disaggregated_engine`]).
pub fn plan_disaggregated(
    base: &PlanRequest<'_>,
    prefill: RoleOverrides<'_>,
    decode: RoleOverrides<'_>,
) -> Result<DisaggregatedPlan, RoleError> {
    let concurrency = base.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
    let role = |pd: PdRole, o: RoleOverrides<'_>| {
        let name = match pd {
            PdRole::Prefill => "prefill",
            PdRole::Decode => "decode",
        };
        let accelerator = o.accelerator.unwrap_or(base.accelerator);
        let mut req = base.clone();
        req.accelerator = accelerator;
        req.gpus_per_node = o.gpus_per_node.unwrap_or(if o.accelerator.is_some() {
            accelerator.typical_per_node
        } else {
            base.gpus_per_node
        });
        req.concurrency = o
            .concurrency
            .or_else(|| role_concurrency(pd, Some(concurrency)));
        req.parallel.data_parallel = o.data_parallel.or(base.parallel.data_parallel);
        req.tensor_parallel = o.tensor_parallel.or(base.tensor_parallel);
        let fail = |error| RoleError { role: name, error };
        let auto = req.engine.is_none().then(|| {
            let engine = auto_engine_disaggregated(accelerator.vendor, req.quantization);
            req.engine = Some(engine);
            format!(
                "engine auto-selected for prefill/decode: {engine} (the router fronts SGLang's protocol)"
            )
        });
        if let Some(engine) = req.engine {
            check_disaggregated_engine(engine, accelerator.vendor).map_err(fail)?;
        }
        let mut p = plan(&req).map_err(fail)?;
        p.notes.extend(auto);
        Ok(p)
    };
    let p = role(PdRole::Prefill, prefill)?;
    let d = role(PdRole::Decode, decode)?;
    let reason = format!(
        "prefill holds KV only for prompts in flight ({} sequences: 1 in {PREFILL_SHARE} of the {concurrency} decoding unless set) and decode for every running sequence ({}); each role takes its layout by the {} objective{}: prefill {} on {} x {}, decode {} on {} x {}",
        p.concurrency,
        d.concurrency,
        base.parallel.objective,
        if base.parallel.objective == crate::LayoutObjective::Throughput {
            " (prefill ranked by the same memory-bound estimate as decode: its compute-bound speed is not modelled)"
        } else {
            ""
        },
        p.layout,
        p.gpus_per_replica,
        p.accelerator,
        d.layout,
        d.gpus_per_replica,
        d.accelerator,
    );
    Ok(DisaggregatedPlan {
        prefill: p,
        decode: d,
        reason,
    })
}

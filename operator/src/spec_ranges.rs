//! The numeric bounds of the CRD schema, checked again in code.
//!
//! Why twice: `helm upgrade` never updates CRDs, so a cluster may serve an older schema
//! without a bound or CEL rule, and values past them used to reach `clamp` (which panics
//! when min > max) or size loops by billions. `validate` refuses such a spec with reason
//! `InvalidSpec`, which the reconcile reports in the `Planned` condition.

use crate::api::DeepSeekModelSpec;

/// Inclusive bounds, as the schema in api/spec.rs declares them.
pub const REPLICAS: (i64, i64) = (0, 1000);
pub const MIN_REPLICAS: (i64, i64) = (0, 1000);
pub const MAX_REPLICAS: (i64, i64) = (1, 1000);
pub const TARGET_QUEUE_DEPTH: (i64, i64) = (1, 100_000);
pub const INTERVAL_SECONDS: (i64, i64) = (1, 600);
pub const STABILIZATION_SECONDS: (i64, i64) = (0, 86_400);
pub const MAX_SCALE_UP_STEP: (i64, i64) = (1, 100);
pub const HOLD_QUEUE_SIZE: (i64, i64) = (1, 10_000);
pub const HOLD_MAX_WAIT_SECONDS: (i64, i64) = (1, 3600);
pub const TENSOR: (i64, i64) = (1, 256);
pub const PIPELINE: (i64, i64) = (1, 64);
pub const MAX_MODEL_LEN: (i64, i64) = (256, 1_048_576);
pub const CONCURRENCY: (i64, i64) = (1, 4096);
pub const ROLLOUT_GROUPS: (i64, i64) = (0, 100);

fn within(field: &str, value: Option<i64>, (lo, hi): (i64, i64)) -> Result<(), String> {
    match value {
        Some(v) if v < lo || v > hi => Err(format!("{field} must be in [{lo}, {hi}], got {v}")),
        _ => Ok(()),
    }
}

/// The first numeric field outside its bounds, as a message for the condition.
pub fn check(spec: &DeepSeekModelSpec) -> Result<(), String> {
    let w = |v: Option<u32>| v.map(i64::from);
    within("replicas", spec.replicas.map(i64::from), REPLICAS)?;
    if let Some(a) = &spec.autoscaling {
        within(
            "autoscaling.minReplicas",
            Some(a.min_replicas.into()),
            MIN_REPLICAS,
        )?;
        within(
            "autoscaling.maxReplicas",
            Some(a.max_replicas.into()),
            MAX_REPLICAS,
        )?;
        if a.min_replicas > a.max_replicas {
            return Err(format!(
                "autoscaling.minReplicas ({}) must be <= maxReplicas ({})",
                a.min_replicas, a.max_replicas
            ));
        }
        within(
            "autoscaling.targetQueueDepth",
            Some(a.target_queue_depth.into()),
            TARGET_QUEUE_DEPTH,
        )?;
        within(
            "autoscaling.intervalSeconds",
            w(a.interval_seconds),
            INTERVAL_SECONDS,
        )?;
        within(
            "autoscaling.scaleDownStabilizationSeconds",
            w(a.scale_down_stabilization_seconds),
            STABILIZATION_SECONDS,
        )?;
        within(
            "autoscaling.maxScaleUpStep",
            w(a.max_scale_up_step),
            MAX_SCALE_UP_STEP,
        )?;
        if let Some(h) = &a.hold_requests {
            within(
                "autoscaling.holdRequests.queueSize",
                w(h.queue_size),
                HOLD_QUEUE_SIZE,
            )?;
            within(
                "autoscaling.holdRequests.maxWaitSeconds",
                w(h.max_wait_seconds),
                HOLD_MAX_WAIT_SECONDS,
            )?;
        }
    }
    if let Some(p) = &spec.parallelism {
        within("parallelism.tensor", w(p.tensor), TENSOR)?;
        within("parallelism.pipeline", w(p.pipeline), PIPELINE)?;
    }
    if let Some(s) = &spec.serving {
        within("serving.maxModelLen", w(s.max_model_len), MAX_MODEL_LEN)?;
        within("serving.concurrency", w(s.concurrency), CONCURRENCY)?;
    }
    if let Some(r) = &spec.rollout {
        within(
            "rollout.maxUnavailable",
            w(r.max_unavailable),
            ROLLOUT_GROUPS,
        )?;
        within("rollout.maxSurge", w(r.max_surge), ROLLOUT_GROUPS)?;
    }
    Ok(())
}

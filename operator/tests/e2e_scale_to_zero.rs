//! Scale to zero and back, end to end (issue 6 item 3), with simulated engines behind the
//! pods (SimFleet) and the built-in autoscaler at a 1 s interval and a 5 s window. The
//! model (DeepSeek-V3 FP8 on one MI300X node per replica) runs one group with
//! `minReplicas: 0`:
//!
//! - idle, with complete metrics from its leader, it scales to 0 after the window: no pods
//!   are left, and status says why (`lastScaleReason`, `Available=False` reason
//!   `ScaledToZero`, `desiredReplicas: 0`);
//! - at zero the autoscaler keeps reading (no leaders: the load is the demand annotation
//!   alone) and holds;
//! - `kubectl annotate ... autoscaling.deepseek-operator.dev/demand=1` (the documented
//!   wake-up signal) brings it back to one group, Running and Ready, `Available=True`.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions};
use deepseek_e2e::wait::{wait_for, wait_for_state};
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::autoscale::DEMAND_ANNOTATION;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

/// Accelerator nodes may be shared with other suites: wait generously for them.
const T: Duration = Duration::from_secs(300);
const WINDOW_S: u64 = 5;

fn status_line(m: &DeepSeekModel) -> String {
    let st = m.status.clone().unwrap_or_default();
    format!(
        "spec.replicas={:?} desired={} replicas={} ready={} queue={:?} reason={:?} available={:?}",
        m.spec.replicas,
        st.desired_replicas,
        st.replicas,
        st.ready_replicas,
        st.queue_depth,
        st.last_scale_reason,
        condition(m, "Available")
    )
}

#[tokio::test]
async fn idle_model_scales_to_zero_and_the_demand_annotation_wakes_it() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster.namespace("scale-zero").await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let fleet = SimFleet::start(ns.client(), ns.name(), SimOptions::new(launcher));

    let mut model = example("v3-fp8-mi300x.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    // Running one group to begin with; the autoscaler may take it to zero.
    model.spec.replicas = Some(1);
    model.spec.autoscaling = Some(serde_json::from_value(serde_json::json!({
        "minReplicas": 0,
        "maxReplicas": 1,
        "targetQueueDepth": 4,
        "intervalSeconds": 1,
        "scaleDownStabilizationSeconds": WINDOW_S,
        // Pending rather than held back when another suite holds the MI300X nodes.
        "allowNodeProvisioning": true,
    }))?);
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    wait_groups(&pods, &name, 1, 1, T).await?;

    // Idle with complete metrics: down to zero after the window.
    let idle_from = Instant::now();
    let zero = wait_scaled(
        &models,
        &name,
        0,
        "scaling down",
        "the idle model scaled to zero",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}; operator log:\n{}", op.log_tail()))?;
    let decided = idle_from.elapsed();
    let reason = zero
        .status
        .as_ref()
        .and_then(|s| s.last_scale_reason.clone())
        .unwrap_or_default();
    ensure!(
        reason.contains("scaling down from 1"),
        "lastScaleReason: {reason:?}"
    );
    wait_for_state(T, "no pods are left", || async {
        let left: Vec<String> = model_pods(&pods, &name)
            .await?
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        Ok(if left.is_empty() { Ok(()) } else { Err(left) })
    })
    .await?;
    let (why, msg) = wait_condition(&models, &name, "Available", "False", T).await?;
    ensure!(why == "ScaledToZero", "Available=False reason {why}: {msg}");
    // The status counts groups on the reconcile after their pods are gone.
    wait_for_state(T, "status shows 0 of 0 replicas", || async {
        let m = models.get(&name).await?;
        let at_zero = m.status.as_ref().map(|s| (s.desired_replicas, s.replicas)) == Some((0, 0));
        Ok(if at_zero {
            Ok(())
        } else {
            Err(status_line(&m))
        })
    })
    .await?;
    eprintln!(
        "scaled to zero {:.1}s after idle began (window {WINDOW_S}s): {reason}",
        decided.as_secs_f64()
    );

    // At zero the autoscaler keeps reading (zero leaders, no demand) and holds.
    wait_for(T, "the autoscaler read the model at zero", || async {
        let m = models.get(&name).await?;
        Ok(condition(&m, "MetricsAvailable")
            .filter(|(s, _, msg)| s == "True" && msg.contains("from 0 leader(s)"))
            .map(|_| m))
    })
    .await?;
    ensure!(models.get(&name).await?.spec.replicas == Some(0));

    // The documented wake-up signal.
    let wake_at = Instant::now();
    let out = cluster
        .kubectl()
        .args(["-n", ns.name(), "annotate", "deepseekmodel", &name])
        .arg(format!("{DEMAND_ANNOTATION}=1"))
        .arg("--overwrite")
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl annotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let woke = wait_scaled(
        &models,
        &name,
        1,
        "from 0",
        "the demand annotation scaled the model to 1",
    )
    .await?;
    let wake_decided = wake_at.elapsed();
    let reason = woke
        .status
        .and_then(|s| s.last_scale_reason)
        .unwrap_or_default();
    ensure!(
        reason.contains("from 0 to 1"),
        "lastScaleReason: {reason:?}"
    );
    wait_groups(&pods, &name, 1, 1, T).await?;
    let (why, _) = wait_condition(&models, &name, "Available", "True", T).await?;
    eprintln!(
        "woken by the demand annotation: decision {:.1}s, group Running and Available ({why}) {:.1}s: {reason}",
        wake_decided.as_secs_f64(),
        wake_at.elapsed().as_secs_f64()
    );
    drop(fleet);
    drop(op);
    ns.finish().await
}

/// Waits until the autoscaler has both patched the scale subresource to `replicas` and
/// written a status whose lastScaleReason mentions `reason` (two separate writes).
async fn wait_scaled(
    models: &Api<DeepSeekModel>,
    name: &str,
    replicas: i32,
    reason: &str,
    what: &str,
) -> Result<DeepSeekModel> {
    wait_for_state(T, what, || async {
        let m = models.get(name).await?;
        let said = m
            .status
            .as_ref()
            .and_then(|s| s.last_scale_reason.clone())
            .unwrap_or_default();
        Ok(
            if m.spec.replicas == Some(replicas) && said.contains(reason) {
                Ok(m)
            } else {
                Err(status_line(&m))
            },
        )
    })
    .await
}

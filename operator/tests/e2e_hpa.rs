//! A plain HorizontalPodAutoscaler on the DeepSeekModel's scale subresource (issue 6
//! item 4), driven by the real kube-controller-manager. There is no metrics server and no
//! external metrics API here, so the HPA cannot compute a recommendation; what it shows is
//! whether it resolved the target's scale subresource:
//!
//! - `AbleToScale=True`, reason `SucceededGetScale`: the HPA controller mapped
//!   `inference.deepseek-operator.dev/v1alpha1 DeepSeekModel` to the `deepseekmodels/scale`
//!   subresource and read it;
//! - `status.currentReplicas` equals the model's replicas (the scale's `spec.replicas`) and
//!   follows a `kubectl scale` of the model;
//! - `ScalingActive=False` with a metrics reason (`FailedGetExternalMetric`), not
//!   `InvalidSelector`: the scale's `status.selector` (the leaders) was read and parsed
//!   before the controller went looking for the metric.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for_state;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

/// The HPA controller syncs every 15 s by default; several syncs fit.
const T: Duration = Duration::from_secs(120);

/// (currentReplicas, AbleToScale (status, reason), ScalingActive (status, reason)).
type HpaView = (i32, Option<(String, String)>, Option<(String, String)>);

fn view(h: &HorizontalPodAutoscaler) -> HpaView {
    let st = h.status.as_ref();
    let cond = |t: &str| {
        st.and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
    };
    (
        st.and_then(|s| s.current_replicas).unwrap_or(-1),
        cond("AbleToScale"),
        cond("ScalingActive"),
    )
}

async fn wait_current(
    hpas: &Api<HorizontalPodAutoscaler>,
    name: &str,
    replicas: i32,
) -> Result<HpaView> {
    wait_for_state(
        T,
        &format!("the HPA read the model's scale: currentReplicas={replicas}, AbleToScale=True"),
        || async {
            let v = view(&hpas.get(name).await?);
            let able = v.1.as_ref().is_some_and(|(s, _)| s == "True");
            Ok(if v.0 == replicas && able {
                Ok(v)
            } else {
                Err(v)
            })
        },
    )
    .await
}

#[tokio::test]
async fn hpa_resolves_the_model_scale_subresource() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("hpa").await?;
    let _op = Operator::start(&cluster, OperatorOptions::default()).await?;

    // Plain replicas, no `autoscaling`: the HPA is the only thing that may scale it.
    let model = example("r1-distill-7b-cpu-gguf.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    let models: Api<DeepSeekModel> = ns.api();
    apply_model(&models, &model).await?;
    // The scale subresource as the HPA will read it: replicas and the leaders' selector.
    let scale = wait_for_state(T, "the model's scale has a selector", || async {
        let s = models.get_scale(&name).await?;
        let sel = s.status.as_ref().and_then(|st| st.selector.clone());
        Ok(match sel {
            Some(sel) if !sel.is_empty() => Ok((s.spec.and_then(|sp| sp.replicas), sel)),
            _ => Err(format!("{:?}", s.status)),
        })
    })
    .await?;
    ensure!(scale.0 == Some(1), "scale spec.replicas: {:?}", scale.0);
    eprintln!("scale subresource: replicas 1, selector {}", scale.1);

    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
                "kind": "DeepSeekModel",
                "name": name,
            },
            "minReplicas": 1,
            "maxReplicas": 3,
            // The leaders' queue as an external metric: no metrics API serves it here.
            "metrics": [{
                "type": "External",
                "external": {
                    "metric": {"name": "dso_queue_depth"},
                    "target": {"type": "AverageValue", "averageValue": "16"},
                },
            }],
        },
    }))?;
    let hpas: Api<HorizontalPodAutoscaler> = ns.api();
    hpas.create(&PostParams::default(), &hpa).await?;

    let (current, able, active) = wait_current(&hpas, &name, 1).await?;
    eprintln!("HPA: currentReplicas {current}, AbleToScale {able:?}, ScalingActive {active:?}");
    ensure!(
        able.as_ref().map(|(_, r)| r.as_str()) == Some("SucceededGetScale"),
        "AbleToScale: {able:?}"
    );
    let (active_status, active_reason) = active.context("no ScalingActive condition")?;
    ensure!(
        active_status == "False" && active_reason != "InvalidSelector",
        "ScalingActive: {active_status} {active_reason} (the selector must be read; only the metric is missing)"
    );

    // `kubectl scale` of the model (through the same subresource): the HPA follows.
    let out = cluster
        .kubectl()
        .args([
            "-n",
            ns.name(),
            "scale",
            "deepseekmodel",
            &name,
            "--replicas=2",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (current, able, active) = wait_current(&hpas, &name, 2).await?;
    eprintln!("after kubectl scale: currentReplicas {current}, AbleToScale {able:?}, ScalingActive {active:?}");
    ensure!(
        models.get(&name).await?.spec.replicas == Some(2),
        "no metrics: the HPA must leave the replicas alone"
    );
    ns.finish().await
}

//! Invalid never freezes, on the real control plane: a model whose spec stops validating
//! after a configuration change (the administrator removed the cache it names) keeps its
//! groups serving, keeps `Available` describing them while `Planned` says why nothing new
//! is planned, and still scales to zero. Before, the invalid spec returned before
//! anything was retired: `replicas: 0` was ignored, and the status written kept only
//! `Planned`, so `Available` vanished while the groups served.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

const T: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_model_made_invalid_by_a_config_change_keeps_serving_and_still_scales_to_zero(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("invalid").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let with_cache = "caches: [{name: fast, hostPath: /nvme/w, sharedAcrossNamespaces: true}]\n";
    let op = operator_with_config(&cluster, "invalid-before", with_cache, None).await?;
    let mut m: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "cached"},
        "spec": {"model": "deepseek-r1-distill-qwen-1.5b", "replicas": 2,
                 "accelerator": {"product": "h100-80gb"}, "cache": {"name": "fast"}},
    }))?;
    apply_model(&models, &m).await?;
    let serving = wait_groups(&pods, "cached", 2, 1, T)
        .await
        .with_context(|| op.log_tail())?;
    wait_condition(&models, "cached", "Available", "True", T).await?;
    drop(op);

    // The administrator removes the cache: the stored model no longer validates.
    let op = operator_with_config(&cluster, "invalid-after", "caches: []\n", None).await?;
    let (_, message) = wait_for(T, "Planned=False UnknownCache", || async {
        let m = models.get("cached").await?;
        Ok(condition(&m, "Planned").filter(|(s, r, _)| s == "False" && r == "UnknownCache"))
    })
    .await
    .map(|(_, r, msg)| (r, msg))
    .with_context(|| op.log_tail())?;
    ensure!(message.contains("fast"), "{message}");
    let now = models.get("cached").await?;
    let available = condition(&now, "Available");
    ensure!(
        available
            .as_ref()
            .is_some_and(|(s, r, _)| s == "True" && r == "ReplicasReady"),
        "Available still describes the serving groups: {available:?}"
    );
    for t in ["Progressing", "Degraded", "Scheduled"] {
        ensure!(condition(&now, t).is_some(), "{t} was dropped");
    }
    let still = model_pods(&pods, "cached").await?;
    ensure!(
        uids(&still) == uids(&serving),
        "the serving groups were touched"
    );

    // Scaling to zero needs no valid plan.
    m.spec.replicas = Some(0);
    apply_model(&models, &m).await?;
    wait_for(T, "every group of the invalid model is gone", || async {
        Ok(model_pods(&pods, "cached").await?.is_empty().then_some(()))
    })
    .await
    .with_context(|| op.log_tail())?;
    let (reason, _) = wait_condition(&models, "cached", "Available", "False", T).await?;
    ensure!(reason == "ScaledToZero", "{reason}");
    let planned = condition(&models.get("cached").await?, "Planned");
    ensure!(
        planned.is_some_and(|(s, r, _)| s == "False" && r == "UnknownCache"),
        "Planned still says why nothing is planned"
    );
    drop(op);
    ns.finish().await
}

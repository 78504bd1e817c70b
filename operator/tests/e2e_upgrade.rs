//! An operator upgrade restarts nothing: the operator is replaced by one whose default
//! runtime image tag differs (what a new release changes), and the running group keeps its
//! pods; a group added afterwards joins at the same template hash. With
//! `spec.image: auto-upgrade` the same upgrade rolls the model onto the new image.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const HASH: &str = "inference.deepseek-operator.dev/template-hash";

fn uids_by_name(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, p.metadata.uid.clone()?)))
        .collect()
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_operator_version_restarts_nothing_unless_asked() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("upgrade").await?;
    let config = |tag: &str| -> Result<std::path::PathBuf> {
        let path = cluster
            .state_dir()
            .join(format!("operator-config-{}-{tag}.yaml", ns.name()));
        std::fs::write(&path, format!("runtimeImageTag: \"{tag}\"\n"))?;
        Ok(path)
    };
    let (old_cfg, new_cfg) = (config("0.1.0")?, config("0.2.0")?);
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();

    let mut op = Operator::start(
        &cluster,
        OperatorOptions {
            config_file: Some(&old_cfg),
            ..Default::default()
        },
    )
    .await?;
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("steady".into());
    m.spec.replicas = Some(1);
    // H100 nodes hold eight one-GPU groups each: room for the surge and the scale-up.
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("h100-80gb".into()),
        ..Default::default()
    });
    apply_model(&models, &m).await?;
    let mut auto = m.clone();
    auto.metadata.name = Some("follows".into());
    auto.spec.image = Some("auto-upgrade".into());
    apply_model(&models, &auto).await?;
    let before = wait_groups(&pods, "steady", 1, 1, T).await?;
    let auto_before = wait_groups(&pods, "follows", 1, 1, T).await?;
    ensure!(
        image(&before[0]).ends_with(":0.1.0"),
        "{}",
        image(&before[0])
    );
    let resolved = models
        .get("steady")
        .await?
        .status
        .and_then(|s| s.resolved)
        .context("status.resolved is recorded")?;
    ensure!(resolved.image.ends_with(":0.1.0"));
    op.kill();

    // The "new release".
    let op = Operator::start(
        &cluster,
        OperatorOptions {
            config_file: Some(&new_cfg),
            ..Default::default()
        },
    )
    .await?;
    let result = async {
        // auto-upgrade rolls onto the new image: proof the new operator reconciled.
        wait_for(T, "the auto-upgrade model runs the new image", || async {
            let ps = model_pods(&pods, "follows").await?;
            Ok(
                (ps.len() == 1 && image(&ps[0]).ends_with(":0.2.0") && is_running_ready(&ps[0]))
                    .then_some(()),
            )
        })
        .await?;
        ensure!(uids_by_name(&auto_before) != uids_by_name(&model_pods(&pods, "follows").await?));

        // Scale the steady model: the new operator has reconciled it once this is done.
        models
            .patch(
                "steady",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 2}})),
            )
            .await?;
        let after = wait_groups(&pods, "steady", 2, 1, T).await?;
        let after_uids = uids_by_name(&after);
        for (name, uid) in uids_by_name(&before) {
            ensure!(
                after_uids.get(&name) == Some(&uid),
                "pod {name} was recreated by the upgrade"
            );
        }
        let hashes: std::collections::BTreeSet<String> = after
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH).cloned())
            .collect();
        ensure!(hashes.len() == 1, "groups at different hashes: {hashes:?}");
        ensure!(after.iter().all(|p| image(p).ends_with(":0.1.0")));
        anyhow::Ok(())
    }
    .await;
    result.with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    ns.finish().await
}

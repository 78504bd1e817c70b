//! The autoscaler's scale patch against the real API server: it carries the resourceVersion
//! of the model the decision was made from, so a `kubectl scale` that landed in between is
//! answered with 409 Conflict instead of being overwritten. No operator runs here: the test
//! sends the exact body the autoscaler sends (`autoscale::scale_patch`).

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::autoscale::{scale_patch, FIELD_MANAGER};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

const T: Duration = Duration::from_secs(30);

async fn replicas(models: &Api<DeepSeekModel>, name: &str) -> Result<Option<i32>> {
    Ok(models.get(name).await?.spec.replicas)
}

#[tokio::test]
async fn a_concurrent_kubectl_scale_is_not_overwritten() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("scale-precondition").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let model = example("r1-distill-qwen-1.5b-l4.yaml")?;
    let name = model.name_any();
    apply_model(&models, &model).await?;

    // The autoscaler reads the model...
    let read = models.get(&name).await?;
    let rv = read.resource_version().context("a resourceVersion")?;
    // ...a user scales it meanwhile...
    let out = cluster
        .kubectl()
        .args([
            "scale",
            "deepseekmodel",
            &name,
            "--replicas=3",
            "-n",
            ns.name(),
        ])
        .output()
        .context("kubectl scale")?;
    ensure!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(replicas(&models, &name).await? == Some(3));

    // ...and the autoscaler's patch from its stale read is refused.
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match models
        .patch_scale(&name, &pp, &Patch::Merge(scale_patch(5, &rv)))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        other => anyhow::bail!("a stale scale patch must get 409 Conflict, got {other:?}"),
    }
    ensure!(
        replicas(&models, &name).await? == Some(3),
        "the user's count was overwritten"
    );

    // From a fresh read the same patch goes through. (Another writer, say an operator
    // writing status, may slip in between read and patch: then read again, as the
    // autoscaler does at its next interval.)
    wait_for(T, "a scale patch from a fresh read", || async {
        let rv = models
            .get(&name)
            .await?
            .resource_version()
            .context("a resourceVersion")?;
        match models
            .patch_scale(&name, &pp, &Patch::Merge(scale_patch(5, &rv)))
            .await
        {
            Ok(_) => Ok(Some(())),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    ensure!(replicas(&models, &name).await? == Some(5));
    ns.finish().await
}

//! A non-root engine writes its node cache on a real kubelet node (`e2e/cluster up
//! --real-nodes 2`). The pod is the operator's own, built from a manifest with the
//! default node cache (`/var/lib/deepseek-operator/models/<namespace>`, a
//! `DirectoryOrCreate` host path): its security context, volumes and init containers are
//! kept as built. Only what ties it to a simulated GPU pool is changed: it is bound to
//! `real-0`, runs the runtime-cpu image `scripts/images` imported, and its engine
//! command is a shell that creates `/models/hf/hub` and a file in it, as the launcher's
//! first download would. Before the cache-owner init container the kubelet created the
//! directory root-owned 0755 and `mkdir` failed with "Permission denied".
//!
//! Not part of `cargo test --workspace` (root, real nodes and the images are needed):
//! `scripts/images && DSO_REAL_NODES=2 cargo test -p deepseek-operator --features real-nodes --test e2e_real_node_cache`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use deepseek_e2e::{wait, Cluster};
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::build::desired::desired;
use deepseek_operator::build::WeightsVolume;
use deepseek_operator::config::OperatorConfig;
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);
const WRITE: &str =
    "mkdir -p /models/hf/hub && echo ok > /models/hf/hub/written && exec sleep 3600";

fn l4_node() -> Result<Node> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "l4-a", "labels": {
            "kubernetes.io/hostname": "l4-a",
            "cloud.google.com/gke-accelerator": "nvidia-l4"}},
        "status": {
            "allocatable": {"cpu": "96", "memory": "1024Gi", "pods": "110", "nvidia.com/gpu": "1"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))?)
}

/// The runtime image `scripts/images` imported, as real-0 reports it.
fn runtime_image(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .images
        .as_ref()?
        .iter()
        .flat_map(|i| i.names.iter().flatten())
        .find(|n| n.starts_with("ghcr.io/deepseek-operator/runtime-cpu:"))
        .cloned()
}

#[tokio::test]
async fn a_non_root_engine_writes_its_default_node_cache() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    let real0 = wait::wait_for(TIMEOUT, "node real-0 is Ready", || async {
        Ok(nodes.get_opt("real-0").await?.filter(wait::node_is_ready))
    })
    .await
    .context("start the cluster with `e2e/cluster up --real-nodes 2`")?;
    let image = runtime_image(&real0)
        .context("real-0 has no runtime-cpu image: run scripts/images with the real nodes up")?;

    let ns = cluster.namespace("real-cache").await?;
    let model: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "m", "namespace": ns.name(), "uid": "uid-real-cache"},
        "spec": {"model": "deepseek-r1-distill-qwen-1.5b", "accelerator": {"product": "l4"}},
    }))?;
    let l4 = l4_node()?;
    let d = desired(
        &model,
        &[&l4],
        &OperatorConfig::default(),
        Catalog::builtin(),
    )
    .map_err(|(r, m)| anyhow::anyhow!("{r}: {m}"))?;
    let WeightsVolume::HostPath(cache) = d.workload.weights.clone() else {
        anyhow::bail!(
            "the default cache is not a node cache: {:?}",
            d.workload.weights
        )
    };
    ensure!(
        cache.ends_with(ns.name()) && !Path::new(&cache).exists(),
        "expected a fresh per-namespace cache directory, got {cache}"
    );

    let mut pod: Pod = d.pods[0].clone();
    pod.metadata.owner_references = None;
    pod.metadata.name = Some("engine".into());
    let spec = pod.spec.as_mut().context("pod without spec")?;
    spec.node_name = Some("real-0".into());
    spec.affinity = None;
    spec.node_selector = None;
    spec.tolerations = None;
    spec.subdomain = None;
    spec.termination_grace_period_seconds = Some(2);
    for c in spec.init_containers.iter_mut().flatten() {
        c.image = Some(image.clone());
        c.image_pull_policy = Some("Never".into());
    }
    let engine = spec
        .containers
        .first_mut()
        .context("pod without container")?;
    engine.image = Some(image.clone());
    engine.image_pull_policy = Some("Never".into());
    engine.command = Some(vec!["/bin/sh".into(), "-c".into(), WRITE.into()]);
    engine.args = None;
    engine.resources = None;
    engine.startup_probe = None;
    engine.liveness_probe = None;
    engine.readiness_probe = None;
    engine.lifecycle = None;

    let pods: Api<Pod> = ns.api();
    pods.create(&PostParams::default(), &pod).await?;
    let written = Path::new(&cache).join("hf/hub/written");
    let result = wait::wait_for(
        TIMEOUT,
        "the engine wrote /models/hf/hub/written",
        || async {
            let p = pods.get("engine").await?;
            let waiting = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.last_state.as_ref())
                .and_then(|s| s.terminated.as_ref())
                .map(|t| format!("engine exited {}: {:?}", t.exit_code, t.reason));
            if let Some(w) = waiting {
                anyhow::bail!("{w}");
            }
            Ok(written.exists().then_some(()))
        },
    )
    .await;
    let owner = std::fs::metadata(&written).map(|m| (m.uid(), m.gid()));
    let dir_owner = std::fs::metadata(&cache).map(|m| m.uid());
    pods.delete("engine", &DeleteParams::default()).await?;
    wait::deleted(&pods, "engine", TIMEOUT).await?;
    let _ = std::fs::remove_dir_all(&cache);
    result?;
    ensure!(
        matches!(owner, Ok((10001, 10001))),
        "the engine's file is owned by {owner:?}, not 10001:10001"
    );
    ensure!(
        matches!(dir_owner, Ok(10001)),
        "the cache directory is owned by {dir_owner:?}"
    );
    ns.finish().await
}

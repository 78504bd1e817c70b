//! A CPU model with the default node cache serves a streamed chat from a non-root
//! container on a real kubelet node (`e2e/cluster up --real-nodes 2`), and its files are
//! on the node's cache directory, owned by the engine's user.
//!
//! The pod is the operator's own, built by `desired` for a llama.cpp model on a CPU pool
//! with the default node cache (`/var/lib/deepseek-operator/models/<namespace>`, a
//! `DirectoryOrCreate` host path the kubelet creates root-owned 0755): its security
//! context, volumes, init containers, probes and image (runtime-cpu, imported by
//! `scripts/images`) are kept as built. Changed: it is bound to `real-0` (no scheduler
//! pass over the simulated CPU nodes), it requests nothing (the node has 2 cores), and
//! since nothing may reach a model hub here, the weights arrive as a download would put
//! them: the engine's command first copies the tiny GGUF, placed on the node beforehand
//! and mounted read-only at `/seed`, into `/models/hf/hub/tiny/`, then runs the launcher,
//! whose launch configuration names that file. Before the cache-owner init container,
//! that first `mkdir` failed with "Permission denied" and the engine exited 1.
//!
//! Not part of `cargo test --workspace` (root, real nodes, the images and the tiny
//! checkpoint of runtime-image/real-engines/run are needed): `e2e/cluster up --real-nodes 2
//! && scripts/images && cargo test -p deepseek-operator --features real-nodes --test
//! e2e_real_node_cache`.

mod common;
mod real_nodes;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use deepseek_e2e::{wait, Cluster};
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::preview::desired;
use deepseek_operator::desired::WeightsVolume;
use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, Node, Pod, Volume, VolumeMount};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);
const WEIGHTS: &str = "/models/hf/hub/tiny/tiny-q8_0.gguf";
const FETCH_THEN_LAUNCH: &str =
    "mkdir -p /models/hf/hub/tiny && cp /seed/tiny-q8_0.gguf /models/hf/hub/tiny/ && exec deepseek-launcher";

/// A CPU node as the planner sees one (no accelerator labels).
fn cpu_node() -> Result<Node> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "cpu-a", "labels": {"kubernetes.io/hostname": "cpu-a"}},
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))?)
}

#[tokio::test]
async fn a_non_root_cpu_engine_serves_a_streamed_chat_from_its_default_node_cache() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let image = real_nodes::real_node_with_image(
        &cluster,
        "real-0",
        "ghcr.io/deepseek-operator/runtime-cpu",
    )
    .await?;
    let gguf = real_nodes::tiny_gguf()?;

    let ns = cluster.namespace("real-cache").await?;
    let model: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "m", "namespace": ns.name(), "uid": "uid-real-cache"},
        "spec": {
            "model": "deepseek-r1-distill-qwen-1.5b",
            "quantization": "gguf-q8_0",
            "accelerator": {"vendor": "cpu"},
            "serving": {"maxModelLen": 512, "concurrency": 2},
        },
    }))?;
    let node = cpu_node()?;
    let d = desired(
        &model,
        &[&node],
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

    // The weights, placed on the node beforehand (nothing is downloaded here).
    let seed = std::env::temp_dir().join(format!("dso-seed-{}", ns.name()));
    std::fs::create_dir_all(&seed)?;
    std::fs::copy(&gguf, seed.join("tiny-q8_0.gguf"))
        .with_context(|| format!("copying {}", gguf.display()))?;

    let mut pod: Pod = d.pods[0].clone();
    pod.metadata.owner_references = None;
    pod.metadata.name = Some("engine".into());
    let spec = pod.spec.as_mut().context("pod without spec")?;
    spec.node_name = Some("real-0".into());
    spec.affinity = None;
    spec.node_selector = None;
    spec.tolerations = None;
    spec.subdomain = None;
    spec.termination_grace_period_seconds = Some(10);
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: "seed".into(),
        host_path: Some(HostPathVolumeSource {
            path: seed.display().to_string(),
            type_: Some("Directory".into()),
        }),
        ..Default::default()
    });
    ensure!(
        spec.init_containers
            .iter()
            .flatten()
            .all(|c| c.image.as_deref() == Some(image.as_str())),
        "the init containers do not run the model's image {image}"
    );
    let engine = spec
        .containers
        .first_mut()
        .context("pod without container")?;
    ensure!(
        engine.image.as_deref() == Some(image.as_str()),
        "the operator picked {:?}, scripts/images imported {image}",
        engine.image
    );
    engine.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        FETCH_THEN_LAUNCH.into(),
    ]);
    engine.args = None;
    engine.resources = None;
    engine
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "seed".into(),
            mount_path: "/seed".into(),
            read_only: Some(true),
            ..Default::default()
        });
    for e in engine.env.iter_mut().flatten() {
        if e.name == deepseek_engine::env::LAUNCH_CONFIG {
            let mut cfg: serde_json::Value =
                serde_json::from_str(e.value.as_deref().unwrap_or_default())?;
            ensure!(cfg["engine"] == "llamacpp", "not a llama.cpp launch: {cfg}");
            cfg["model"] = json!(WEIGHTS);
            e.value = Some(cfg.to_string());
        }
    }

    let pods: Api<Pod> = ns.api();
    pods.create(&PostParams::default(), &pod).await?;
    let served = wait::wait_for(
        TIMEOUT,
        "the engine pod is Ready (the kubelet's probes)",
        || async {
            let p = pods.get("engine").await?;
            // An exit ends the wait at once (wait_for retries errors as transient).
            if let Some(exit) = real_nodes::last_exit(&p, "engine") {
                return Ok(Some(Err(anyhow::anyhow!(
                    "the engine exited, {exit}; its log:\n{}",
                    real_nodes::container_log(&cluster, "real-0", &p, "engine")
                ))));
            }
            Ok(kubelet_ready(&p).then_some(Ok(p)))
        },
    )
    .await
    .and_then(|r| r);
    let chat = match &served {
        Ok(p) => match real_nodes::bridge_ip(p) {
            Ok(ip) => real_nodes::stream_chat(ip, deepseek_engine::ENGINE_PORT, "m", 24).await,
            Err(e) => Err(e),
        },
        Err(_) => Err(anyhow::anyhow!("not served")),
    };
    let written = Path::new(&cache).join("hf/hub/tiny/tiny-q8_0.gguf");
    let owner = std::fs::metadata(&written).map(|m| (m.uid(), m.gid()));
    let dir_owner = std::fs::metadata(&cache).map(|m| m.uid());
    pods.delete("engine", &DeleteParams::default()).await?;
    wait::deleted(&pods, "engine", TIMEOUT).await?;
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&seed);
    let pod = served?;
    let chat = chat?;
    ensure!(
        chat.done && chat.deltas >= 2,
        "the chat did not stream (pod {:?}): {chat:?}",
        pod.status.as_ref().and_then(|s| s.pod_ip.as_deref())
    );
    ensure!(
        matches!(owner, Ok((10001, 10001))),
        "the engine's weights are owned by {owner:?}, not 10001:10001"
    );
    ensure!(
        matches!(dir_owner, Ok(10001)),
        "the cache directory is owned by {dir_owner:?}"
    );
    eprintln!(
        "real-0: streamed {} deltas ({:?}) from a uid-10001 engine; {} owned 10001:10001",
        chat.deltas,
        chat.text,
        written.display()
    );
    ns.finish().await
}

/// Ready as the kubelet reports it (its readiness probe of the launcher's port).
fn kubelet_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

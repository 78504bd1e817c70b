//! A 2-rank group across two real kubelet nodes (`e2e/cluster up --real-nodes 2`,
//! `scripts/images`): real-0 and real-1 are made H100 nodes for placement (NVIDIA's
//! labels, `nvidia.com/gpu: 8` patched into their status, as a device plugin would
//! advertise it), an operator on the host places a DeepSeek-R1 FP8 group of two 8-GPU pods
//! on them, and the pods run the runtime-sim image (the launcher with `DSO_ENGINE=sim`:
//! rendering, rendezvous, probes and drain as for a real engine, the engine process the
//! sim). The worker finds its leader through the headless Service's DNS name, answered by
//! the run's CoreDNS on the bridge. The leader turns Ready through the kubelet's own
//! readiness probe of the port the pod spec names, and not before the worker's engine
//! started; it then streams a chat.
//!
//! `cargo test -p deepseek-operator --features real-nodes --test e2e_real_group`.

mod common;
mod real_nodes;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(300);
const NODES: [&str; 2] = ["real-0", "real-1"];
const H100_LABELS: [(&str, &str); 4] = [
    ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
    ("nvidia.com/gpu.memory", "81559"),
    ("nvidia.com/gpu.count", "8"),
    ("nvidia.com/gpu.family", "hopper"),
];

/// Labels and extended resources of an 8-GPU H100 node on `name`, or (`on` false) none.
async fn make_h100(nodes: &Api<Node>, name: &str, on: bool) -> Result<()> {
    let labels: serde_json::Map<String, serde_json::Value> = H100_LABELS
        .iter()
        .map(|(k, v)| (k.to_string(), if on { json!(v) } else { json!(null) }))
        .collect();
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    let gpus = if on { json!("8") } else { json!(null) };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "capacity": {"nvidia.com/gpu": gpus},
                "allocatable": {"nvidia.com/gpu": gpus},
            }})),
        )
        .await?;
    Ok(())
}

fn ready_since(p: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn started_at(p: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "engine")?
        .state
        .as_ref()?
        .running
        .as_ref()?
        .started_at
        .as_ref()
        .map(|t| t.0)
}

fn rank(p: &Pod) -> Option<&str> {
    p.labels()
        .get("inference.deepseek-operator.dev/rank")
        .map(String::as_str)
}

#[tokio::test]
async fn a_two_rank_h100_group_on_two_real_nodes_is_ready_through_the_kubelets_probes() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    let mut image = String::new();
    for node in NODES {
        image = real_nodes::real_node_with_image(
            &cluster,
            node,
            "ghcr.io/deepseek-operator/runtime-sim",
        )
        .await?;
    }
    let nodes: Api<Node> = Api::all(cluster.client());
    for node in NODES {
        make_h100(&nodes, node, true).await?;
    }
    let result = run(&cluster, &nodes, &image).await;
    for node in NODES {
        make_h100(&nodes, node, false).await?;
    }
    result
}

async fn run(cluster: &Cluster, nodes: &Api<Node>, image: &str) -> Result<()> {
    for node in NODES {
        wait_for(
            T,
            &format!("{node} advertises 8 nvidia.com/gpu"),
            || async {
                let n = nodes.get(node).await?;
                let gpus = n
                    .status
                    .and_then(|s| s.allocatable)
                    .and_then(|a| a.get("nvidia.com/gpu").map(|q| q.0.clone()));
                Ok((gpus.as_deref() == Some("8")).then_some(()))
            },
        )
        .await?;
    }
    install_crd(cluster).await?;
    let ns = cluster.namespace("real-group").await?;
    let op =
        operator_with_config(cluster, ns.name(), "allowRootHostPathCache: true\n", None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let model: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "r1", "namespace": ns.name()},
        "spec": {
            "model": "deepseek-r1",
            "quantization": "fp8",
            "accelerator": {"product": "h100-80gb", "nodeSelector": {real_nodes::REAL_LABEL: "true"}},
            "image": image,
            "serving": {"maxModelLen": 16384},
            "resources": {"cpu": "100m", "memory": "256Mi"},
            "replicas": 1,
        },
    }))?;
    apply_model(&models, &model).await?;

    let waited = wait_for(
        T,
        "the group's leader is Ready (the kubelet's probe)",
        || async {
            let ps = model_pods(&pods, "r1").await?;
            let leader = ps.iter().find(|p| rank(p) == Some("0"));
            let worker = ps.iter().find(|p| rank(p) == Some("1"));
            Ok(match (leader, worker) {
                (Some(l), Some(w)) if ready_since(l).is_some() => Some((l.clone(), w.clone())),
                _ => None,
            })
        },
    )
    .await;
    let (leader, worker) = match waited {
        Ok(v) => v,
        Err(e) => {
            let logs = pod_logs(cluster, &pods).await;
            return Err(e.context(format!("{logs}\n--- operator ---\n{}", op.log_tail())));
        }
    };
    let placed: Vec<Option<String>> = [&leader, &worker]
        .iter()
        .map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    ensure!(
        placed.contains(&Some("real-0".into())) && placed.contains(&Some("real-1".into())),
        "the ranks are on {placed:?}, not on real-0 and real-1"
    );
    let worker_started = started_at(&worker).context("the worker's engine is not running")?;
    let leader_ready = ready_since(&leader).context("leader not Ready")?;
    ensure!(
        leader_ready >= worker_started,
        "the leader turned Ready at {leader_ready}, before the worker's engine started at {worker_started}"
    );
    let ip = real_nodes::bridge_ip(&leader)?;
    let chat = real_nodes::stream_chat(ip, deepseek_engine::ENGINE_PORT, "r1", 16).await?;
    ensure!(
        chat.done && chat.deltas >= 2,
        "the group did not stream: {chat:?}"
    );
    eprintln!(
        "2-rank H100 group on {placed:?}: worker's engine started {worker_started}, leader Ready \
         {leader_ready} (the kubelet's probe); streamed {} deltas through the leader at {ip}",
        chat.deltas
    );
    models.delete("r1", &Default::default()).await?;
    wait_for(T, "the model's pods are gone", || async {
        Ok(model_pods(&pods, "r1").await?.is_empty().then_some(()))
    })
    .await?;
    ns.finish().await
}

/// The tail of each pod's engine log, from the node it runs on.
async fn pod_logs(cluster: &Cluster, pods: &Api<Pod>) -> String {
    let list = pods
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .map(|p| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            format!(
                "--- {} on {node} ---\n{}",
                p.name_any(),
                real_nodes::container_log(cluster, &node, p, "engine")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

//! Smoke test of the e2e cluster: real scheduler, controller-manager and KWOK
//! simulated accelerator nodes, all on loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use deepseek_e2e::{fixtures, wait, Cluster};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;

const TIMEOUT: Duration = Duration::from_secs(90);
const H100: &str = "NVIDIA-H100-80GB-HBM3";

async fn pool_capacity(nodes: &Api<Node>, pool: &str, resource: &str) -> Result<Vec<String>> {
    let list = nodes
        .list(&ListParams::default().labels(&format!("e2e.deepseek.ai/pool={pool}")))
        .await?;
    ensure!(!list.items.is_empty(), "no nodes in pool {pool}");
    Ok(list
        .items
        .iter()
        .map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get(resource))
                .map(|q| q.0.clone())
                .unwrap_or_default()
        })
        .collect())
}

#[tokio::test]
async fn nodes_report_accelerator_capacity() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    let mixed = nodes
        .list(&ListParams::default().labels("e2e.deepseek.ai/topology=mixed"))
        .await?;
    ensure!(
        !mixed.items.is_empty(),
        "the smoke test expects the `mixed` topology (e2e/cluster up --topology mixed)"
    );
    wait::nodes_ready(&nodes, "e2e.deepseek.ai/managed=true", 13, TIMEOUT).await?;
    for (pool, resource, count) in [
        ("h100", "nvidia.com/gpu", "8"),
        ("h200", "nvidia.com/gpu", "8"),
        ("mi300x", "amd.com/gpu", "8"),
        ("ascend910b", "huawei.com/Ascend910", "8"),
        ("l4", "nvidia.com/gpu", "1"),
    ] {
        let caps = pool_capacity(&nodes, pool, resource).await?;
        ensure!(
            caps.iter().all(|c| c == count),
            "pool {pool}: expected {resource}={count} on every node, got {caps:?}"
        );
    }
    let h100 = nodes
        .list(&ListParams::default().labels(&format!("nvidia.com/gpu.product={H100}")))
        .await?;
    ensure!(
        h100.items.len() == 2,
        "expected 2 H100 nodes, got {}",
        h100.items.len()
    );
    let checked = fixtures::assert_loopback_addresses(&cluster.client()).await?;
    ensure!(
        checked >= 13,
        "expected at least 13 node addresses, checked {checked}"
    );
    Ok(())
}

#[tokio::test]
async fn gpu_pod_is_scheduled_on_a_matching_node_and_runs() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let ns = cluster.namespace("smoke-gpu-pod").await?;
    let pods: Api<Pod> = ns.api();
    let pod = fixtures::accelerator_pod(
        "h100-pod",
        "nvidia.com/gpu",
        8,
        &[("nvidia.com/gpu.product", H100)],
    );
    pods.create(&PostParams::default(), &pod).await?;
    let pod = wait::pod_running(&pods, "h100-pod", TIMEOUT).await?;

    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("running pod has no nodeName")?;
    let node = Api::<Node>::all(cluster.client()).get(&node_name).await?;
    let labels = node.metadata.labels.unwrap_or_default();
    ensure!(
        labels.get("nvidia.com/gpu.product").map(String::as_str) == Some(H100),
        "pod landed on {node_name} with labels {labels:?}"
    );
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("running pod has no IP")?;
    ensure!(
        fixtures::is_loopback(&ip),
        "pod IP {ip} is not in 127.0.0.0/8"
    );
    fixtures::assert_loopback_addresses(&cluster.client()).await?;
    ns.finish().await
}

#[tokio::test]
async fn oversized_gpu_pod_stays_unschedulable() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let ns = cluster.namespace("smoke-unschedulable").await?;
    let pods: Api<Pod> = ns.api();
    let pod = fixtures::accelerator_pod("too-big", "nvidia.com/gpu", 16, &[]);
    pods.create(&PostParams::default(), &pod).await?;
    let pod = wait::pod_pending_unschedulable(&pods, "too-big", TIMEOUT).await?;
    ensure!(
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none(),
        "unschedulable pod has a node"
    );
    ns.finish().await
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependent() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let ns = cluster.namespace("smoke-gc").await?;
    let cms: Api<ConfigMap> = ns.api();
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let uid = owner.metadata.uid.clone().context("owner has no uid")?;
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("dependent".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: "owner".into(),
                    uid,
                    ..Default::default()
                }]),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
            ..Default::default()
        },
    )
    .await?;
    cms.delete("owner", &DeleteParams::default()).await?;
    wait::deleted(&cms, "dependent", TIMEOUT).await?;
    ns.finish().await
}

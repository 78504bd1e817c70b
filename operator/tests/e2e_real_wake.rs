//! Scale from zero of a 2-node group on real kubelet nodes (`e2e/cluster up --real-nodes
//! 2`, `scripts/images`; issue 27): real-0 and real-1 are made H100 nodes for placement
//! (as in e2e_real_group), and a DeepSeek-R1 FP8 model (TP8 x PP2: one group of two 8-GPU
//! pods, runtime-sim image) sits at zero replicas with `holdRequests`. The operator runs on
//! the host; its `helperPods` node selector puts the model's front on the real nodes, so
//! the front, too, is a real container, reached on its bridge IP (ClusterIPs do not route
//! here). 20 streamed chats sent to the front at zero are held, the 21st is refused with
//! 503 and Retry-After, the operator wakes the group on the held count, both ranks start in
//! real containers and join, the kubelet's probe turns the leader Ready, the front forwards
//! every held chat once, and the timeline the operator recorded is printed and in order.
//!
//! Unlike the simulated fleet, the runtime-sim image takes no load delay (the sim engine's
//! `DSO_SIM_LOAD_SECONDS` is not something a model sets): the wait here is the real one of
//! scheduling, starting two containers and the ranks' rendezvous.
//!
//! `cargo test -p deepseek-operator --features real-nodes --test e2e_real_wake`.

mod common;
mod real_nodes;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::front_client::*;
use common::*;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::desired::front;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(240);
const HELD: usize = 20;
const MODEL: &str = "r1";

#[tokio::test]
async fn a_two_node_group_wakes_from_zero_on_real_nodes_for_held_chats() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    real_nodes::on_h100_nodes(
        &cluster,
        &[
            "ghcr.io/deepseek-operator/runtime-sim",
            "ghcr.io/deepseek-operator/runtime-cpu",
        ],
        |image| run(&cluster, image),
    )
    .await
}

async fn run(cluster: &Cluster, image: String) -> Result<()> {
    install_crd(cluster).await?;
    let ns = cluster.namespace("real-wake").await?;
    let config = format!(
        "helperPods: {{nodeSelector: {{{}: \"true\"}}}}\n",
        real_nodes::REAL_LABEL
    );
    let op = operator_with_config(cluster, ns.name(), &config, None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let model = real_nodes::r1_on_real_nodes(
        ns.name(),
        MODEL,
        &image,
        json!({"replicas": 0, "autoscaling": held_at_zero(HELD)}),
    )?;
    apply_model(&models, &model).await?;
    let c = client()?;

    // The front: two real containers on the real nodes, answering on their bridge IPs.
    let fronts = ready_fronts(&c, &pods, MODEL, T)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; operator log:\n{}", op.log_tail()))?;
    let front_pods = pods
        .list(&ListParams::default().labels(&front::selector_string(MODEL)))
        .await?
        .items;
    for p in &front_pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        ensure!(
            node.as_deref().is_some_and(|n| n.starts_with("real-")),
            "front pod {} is on {node:?}, not a real node",
            p.name_any()
        );
        real_nodes::bridge_ip(p)?;
    }
    ensure!(
        model_pods(&pods, MODEL).await?.is_empty(),
        "no group at zero"
    );

    let wake = wake_for_held_chats(&c, fronts[0], &models, &pods, &ns.api(), MODEL, 2, HELD)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; operator log:\n{}", op.log_tail()))?;
    let group = model_pods(&pods, MODEL).await?;
    let mut placed: Vec<String> = group
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    placed.sort();
    ensure!(
        placed == real_nodes::NODES,
        "the group's ranks are on {placed:?}, not on real-0 and real-1"
    );
    eprintln!("  Event ScaledFromZero: {}", wake.note);
    wake.timeline
        .print("DeepSeek-R1 FP8, 2 pods per group, real nodes");
    eprintln!(
        "  all {HELD} held chats answered in full {:.1}s after they were sent; 21st: 503, Retry-After {}",
        wake.answered_after.as_secs_f64(),
        wake.retry_after
    );
    Ok(())
}

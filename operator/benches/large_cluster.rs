//! The operator on the `large` topology (3,000 simulated nodes in 48 pools): time to start
//! (list and group every node), time from applying models to their groups Running, the
//! reconcile duration the operator reports, and its memory. Runs a throwaway cluster in
//! its own state directory and ports, and removes it afterwards.
//!
//! Run: `cargo bench -p deepseek-operator --bench large_cluster` (about 5 minutes, most of
//! it creating the nodes). `DSO_TOPOLOGY_SCALE` (e.g. 0.25) shrinks the topology.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::{AcceleratorSelector, DeepSeekModel};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::Api;

const STATE_DIR: &str = "/tmp/deepseek-operator-large-cluster";
const T: Duration = Duration::from_secs(900);

fn set_default(key: &str, value: &str) {
    if std::env::var_os(key).is_none() {
        std::env::set_var(key, value);
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// (product, model file, replicas): models spread over the big pools.
const MODELS: &[(&str, &str, i32)] = &[
    ("h100-80gb", "r1-fp8-h100-multinode.yaml", 8),
    ("h200", "r1-autoscaled-h200.yaml", 6),
    ("mi300x", "v3-fp8-mi300x.yaml", 8),
    ("ascend-910b", "r1-int8-ascend.yaml", 6),
    ("l4", "r1-distill-qwen-1.5b-l4.yaml", 20),
];

async fn bench() -> Result<()> {
    set_default("DSO_CLUSTER_DIR", STATE_DIR);
    set_default("DSO_TOPOLOGY", "large");
    for (k, v) in [
        ("DSO_ETCD_PORT", "42379"),
        ("DSO_ETCD_PEER_PORT", "42380"),
        ("DSO_API_PORT", "46443"),
        ("DSO_KCM_PORT", "46257"),
        ("DSO_SCHEDULER_PORT", "46259"),
        ("DSO_KWOK_PORT", "46247"),
    ] {
        set_default(k, v);
    }
    let started = Instant::now();
    let cluster = Cluster::ensure().await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    let node_count = nodes
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    println!(
        "cluster with {node_count} nodes up in {:.1?}",
        started.elapsed()
    );
    install_crd(&cluster).await?;

    let t0 = Instant::now();
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    println!(
        "operator ready (nodes listed and grouped) in {:.2?}",
        t0.elapsed()
    );
    println!(
        "operator RSS after start: {:.0} MiB",
        rss_mib(op.pid()).unwrap_or(f64::NAN)
    );

    let ns = cluster.namespace("large").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let t1 = Instant::now();
    let mut expected_pods = 0usize;
    for (product, file, replicas) in MODELS {
        let mut m = example(file)?;
        m.spec.autoscaling = None;
        m.spec.replicas = Some(*replicas);
        m.spec.accelerator = Some(AcceleratorSelector {
            product: Some((*product).into()),
            ..Default::default()
        });
        apply_model(&models, &m).await?;
        let per_group = if file.contains("multinode") || file.contains("ascend") {
            2
        } else {
            1
        };
        expected_pods += per_group * *replicas as usize;
    }
    let all = wait_for(T, "every group of every model is Running", || async {
        let running = pods
            .list(&ListParams::default().labels(SELECTOR_MANAGED))
            .await?
            .items
            .iter()
            .filter(|p| is_running_ready(p))
            .count();
        Ok((running == expected_pods).then_some(running))
    })
    .await
    .with_context(|| op.log_tail())?;
    println!(
        "{} models, {all} pods in {} groups placed and Running in {:.2?}",
        MODELS.len(),
        MODELS.iter().map(|m| m.2).sum::<i32>(),
        t1.elapsed()
    );
    let sum = op
        .counter("deepseek_operator_reconcile_duration_seconds_sum")
        .await?;
    let count = op
        .counter("deepseek_operator_reconcile_duration_seconds_count")
        .await?;
    println!(
        "reconciles: {count} taking {:.1} ms on average (API round trips included)",
        1000.0 * sum / count.max(1.0)
    );
    println!(
        "operator RSS with {all} pods: {:.0} MiB",
        rss_mib(op.pid()).unwrap_or(f64::NAN)
    );
    // Steady state: touch every model (metadata only) and time the reconciles that follow.
    let (sum0, count0) = (
        op.counter("deepseek_operator_reconcile_duration_seconds_sum")
            .await?,
        op.counter("deepseek_operator_reconcile_duration_seconds_count")
            .await?,
    );
    let writes0 = op.counter("deepseek_operator_api_writes_total").await?;
    let names: Vec<String> = models
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    let pokes = 5;
    for round in 0..pokes {
        for name in &names {
            let patch =
                serde_json::json!({"metadata": {"annotations": {"bench/poke": round.to_string()}}});
            models
                .patch(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await?;
        }
    }
    // Pokes of one model may coalesce into fewer reconciles; one per model is the least.
    let want = count0 + names.len() as f64;
    wait_for(T, "the pokes were reconciled", || async {
        let c = op
            .counter("deepseek_operator_reconcile_duration_seconds_count")
            .await?;
        Ok((c >= want).then_some(()))
    })
    .await?;
    let sum1 = op
        .counter("deepseek_operator_reconcile_duration_seconds_sum")
        .await?;
    let count1 = op
        .counter("deepseek_operator_reconcile_duration_seconds_count")
        .await?;
    let writes1 = op.counter("deepseek_operator_api_writes_total").await?;
    println!(
        "steady-state reconciles: {} taking {:.1} ms on average; {} writes",
        count1 - count0,
        1000.0 * (sum1 - sum0) / (count1 - count0).max(1.0),
        writes1 - writes0
    );
    drop(op);
    ns.finish().await?;
    let status = std::process::Command::new(Cluster::script())
        .args(["down", "--purge"])
        .status()?;
    anyhow::ensure!(status.success(), "tearing the large cluster down failed");
    Ok(())
}

fn main() -> Result<()> {
    // `cargo test --benches` passes test-harness flags; only `cargo bench` runs the scenario.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "large_cluster: run with `cargo bench -p deepseek-operator --bench large_cluster`"
        );
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

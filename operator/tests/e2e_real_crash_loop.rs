//! A crash loop on real kubelet nodes (`e2e/cluster up --real-nodes 2`, `scripts/images`):
//! a llama.cpp model whose `serving.extraArgs` llama-server refuses, so its engine exits
//! at every start in a real container. The kubelet restarts it (its own back-off); the
//! operator, running here against the same API server, recreates the group with its
//! capped, jittered back-off (decide/crash_backoff.rs): never more than
//! `maxRecreations` in a window, and `Degraded=CrashLooping` names the termination the
//! kubelet reported. The operator's API writes over the run are bounded and printed.
//!
//! The model is pinned to the real nodes with `accelerator.nodeSelector` (the simulated
//! CPU nodes of the topology would otherwise take it) and asks for little CPU and memory
//! (the nodes share a 2-core machine). Nothing is downloaded: llama-server stops at its
//! argument parsing, before it would fetch the weights.
//!
//! `cargo test -p deepseek-operator --features real-nodes --test e2e_real_crash_loop`.

mod common;
mod real_nodes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(120);
/// A short window so the run sees more than one.
const WINDOW: u64 = 60;
const MAX: usize = 3;
/// The operator's writes per minute this loop may cost at most. A recreation costs about
/// a dozen (the pod's deletion and creation, statuses, Events; 91 in 2.7 min for 8 on the
/// first run), at most MAX per window; recreating at the kubelet's pace (a crash every
/// 5-10 s) would cost well over a hundred.
const WRITES_PER_MINUTE: f64 = 60.0;

#[tokio::test]
async fn an_engine_that_exits_at_start_is_recreated_with_backoff_on_real_nodes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    for node in ["real-0", "real-1"] {
        real_nodes::real_node_with_image(&cluster, node, "ghcr.io/deepseek-operator/runtime-cpu")
            .await?;
    }
    install_crd(&cluster).await?;
    let ns = cluster.namespace("real-crash").await?;
    let config = format!(
        "crashLoopBackoff: {{maxRecreations: {MAX}, windowSeconds: {WINDOW}, baseSeconds: 2, capSeconds: 20}}\n"
    );
    let op = operator_with_config(&cluster, ns.name(), &config, None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let model: DeepSeekModel = serde_json::from_value(json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": "crash", "namespace": ns.name()},
        "spec": {
            "model": "deepseek-r1-distill-qwen-1.5b",
            "quantization": "gguf-q8_0",
            "accelerator": {"vendor": "cpu", "nodeSelector": {real_nodes::REAL_LABEL: "true"}},
            "serving": {"maxModelLen": 512, "concurrency": 2, "extraArgs": ["--no-such-flag"]},
            "resources": {"cpu": "100m", "memory": "256Mi"},
            "replicas": 1,
        },
    }))?;
    apply_model(&models, &model).await?;

    let start = Instant::now();
    let writes_at_start = common::crash_loop::all_writes(&op.metrics().await?);
    // When each pod of the group (a new one per recreation) was first seen terminated.
    let mut crashed: BTreeMap<String, Duration> = BTreeMap::new();
    let mut exits: Vec<String> = Vec::new();
    let mut nodes_used = std::collections::BTreeSet::new();
    let observe = Duration::from_secs(2 * WINDOW + 40);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while start.elapsed() < observe {
        tick.tick().await;
        for p in model_pods(&pods, "crash").await? {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                ensure!(
                    n.starts_with("real-"),
                    "{} placed on {n}, not a real node",
                    p.name_any()
                );
                nodes_used.insert(n);
            }
            if let Some(exit) = real_nodes::last_exit(&p, "engine") {
                if !crashed.contains_key(&p.uid().unwrap_or_default()) {
                    exits.push(exit);
                }
                crashed
                    .entry(p.uid().unwrap_or_default())
                    .or_insert(start.elapsed());
            }
        }
    }
    let minutes = start.elapsed().as_secs_f64() / 60.0;
    let writes = common::crash_loop::all_writes(&op.metrics().await?) - writes_at_start;

    let times: Vec<Duration> = crashed.values().copied().collect();
    let recreations = common::crash_loop::recreations_within_bound(
        times,
        MAX,
        Duration::from_secs(WINDOW),
        &op.log_tail(),
    )?;
    let code = exits
        .first()
        .and_then(|e| e.strip_prefix("exit code "))
        .and_then(|e| e.split(' ').next())
        .context("no exit code seen")?
        .to_string();
    let degraded = wait_for(
        T,
        "Degraded=CrashLooping naming the engine's exit",
        || async {
            let m = models.get("crash").await?;
            let c = m
                .status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Degraded"));
            Ok(c.filter(|c| c.reason == "CrashLooping"))
        },
    )
    .await
    .with_context(|| op.log_tail())?;
    ensure!(
        degraded.message.contains(&format!("exit code {code}"))
            && degraded.message.contains("Error"),
        "Degraded does not name the exit the kubelet reported ({exits:?}): {}",
        degraded.message
    );
    ensure!(
        writes / minutes <= WRITES_PER_MINUTE,
        "{writes} API writes in {minutes:.1} min: more than {WRITES_PER_MINUTE} a minute"
    );
    eprintln!(
        "real crash loop on {nodes_used:?}: {} recreations in {:.1} min (at most {MAX} per {WINDOW} s), \
         at {:?} s; engine exits {exits:?}; {writes} API writes, {:.1} per minute (bound {WRITES_PER_MINUTE}); \
         Degraded: {}",
        recreations.len(),
        minutes,
        recreations.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
        writes / minutes,
        degraded.message
    );
    models.delete("crash", &Default::default()).await?;
    wait_for(T, "the model's pods are gone", || async {
        Ok(model_pods(&pods, "crash").await?.is_empty().then_some(()))
    })
    .await?;
    real_nodes::remove_node_cache(ns.name());
    ns.finish().await
}

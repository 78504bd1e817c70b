//! End to end on the real control plane: a rank that crashes at every start gets its group
//! recreated with back-off (decide/crash_backoff.rs), never more than the configured
//! number of times in any window, and the model ends `Degraded=CrashLooping` with the exit
//! reason and code the kubelet reported. Prints the operator's writes per minute.
//!
//! The groups run on nodes of a stand-in kubelet (`failures/fake_kubelet.rs`); the test
//! plays the kubelet's part for the crashing rank: every rank 0 that starts is reported
//! restarted, waiting in CrashLoopBackOff, its last run ended with exit code 3.

mod common;
#[path = "failures/fake_kubelet.rs"]
#[allow(dead_code)] // shared with chaos.rs, which kills nodes; this suite does not
mod fake_kubelet;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use fake_kubelet::{running_status, FakeNodes};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(120);
/// A short window so the test sees several of them.
const WINDOW: u64 = 60;
const MAX: usize = 3;

fn rank(p: &Pod) -> Option<&str> {
    p.labels()
        .get("inference.deepseek-operator.dev/rank")
        .map(String::as_str)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Plays the kubelet for every rank 0 running without restarts: reports it restarted,
/// waiting in CrashLoopBackOff, its last run ended with exit code 3. Records when each was
/// first seen running (by pod uid) in `started`.
async fn crash_new_leaders(
    pods: &Api<Pod>,
    started: &mut BTreeMap<String, Duration>,
    start: Instant,
) -> Result<()> {
    for p in model_pods(pods, "crash").await? {
        if rank(&p) != Some("0") || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if !running(&p) || restarts(&p) > 0 {
            continue;
        }
        started
            .entry(p.uid().unwrap_or_default())
            .or_insert(start.elapsed());
        let mut status = running_status(&p, false, 1);
        if let Some(cs) = status["status"]["containerStatuses"].as_array_mut() {
            for c in cs {
                c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
                c["lastState"] = json!({"terminated": {"reason": "Error", "exitCode": 3}});
            }
        }
        pods.patch_status(
            &p.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .with_context(|| format!("crashing {}", p.name_any()))?;
    }
    Ok(())
}

#[tokio::test]
async fn a_rank_crashing_at_every_start_is_recreated_within_the_backoff_bound() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("crash-loop").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 2).await?;
    let config = format!(
        "crashLoopBackoff: {{maxRecreations: {MAX}, windowSeconds: {WINDOW}, baseSeconds: 2, capSeconds: 20}}\n"
    );
    let op = operator_with_config(&cluster, ns.name(), &config, None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &nodes.model("crash")?).await?;

    let start = Instant::now();
    let writes_at_start = common::crash_loop::all_writes(&op.metrics().await?);
    // When each rank 0 (one per group created) was first seen running.
    let mut started: BTreeMap<String, Duration> = BTreeMap::new();
    let observe = Duration::from_secs(2 * WINDOW + 30);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while start.elapsed() < observe {
        tick.tick().await;
        crash_new_leaders(&pods, &mut started, start).await?;
    }
    let minutes = start.elapsed().as_secs_f64() / 60.0;
    let writes = common::crash_loop::all_writes(&op.metrics().await?) - writes_at_start;

    let times: Vec<Duration> = started.values().copied().collect();
    let recreations = common::crash_loop::recreations_within_bound(
        times,
        MAX,
        Duration::from_secs(WINDOW),
        &op.log_tail(),
    )?;
    // The kubelet goes on reporting crashes: a group recreated as the observation ended
    // crashes too (it is not counted above).
    let degraded = wait_for(T, "Degraded=CrashLooping naming the exit code", || async {
        crash_new_leaders(&pods, &mut BTreeMap::new(), start).await?;
        let m = models.get("crash").await?;
        let c = m
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Degraded"));
        Ok(c.filter(|c| c.reason == "CrashLooping" && c.message.contains("exit code 3")))
    })
    .await
    .with_context(|| op.log_tail())?;
    ensure!(degraded.message.contains("Error"), "{}", degraded.message);
    eprintln!(
        "crash loop: {} recreations in {:.1} min (at most {MAX} per {WINDOW} s), at {:?}; \
         {writes} API writes, {:.1} per minute; Degraded: {}",
        recreations.len(),
        minutes,
        recreations.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
        writes / minutes,
        degraded.message
    );
    drop(nodes);
    ns.finish().await
}

//! Reaction time of the built-in autoscaler on the local cluster (issue 6 item 6), with
//! simulated engines behind the pods (SimFleet) and the operator as a child process.
//!
//! Model: DeepSeek-V3 FP8 on MI300X (one node per group), autoscaling 1..2, target 4,
//! `intervalSeconds: 1`, `scaleDownStabilizationSeconds: 10`. Each round steps a bounded
//! loopback load generator from idle to 10 requests in flight and measures
//!
//! - load step -> scale-up decision (`status.lastScaleTime`, written by the autoscaler) and
//!   -> `spec.replicas` seen at 2 by this client,
//! - load step -> the new group Running and Ready,
//! - load stopped (idle) -> scale-down decision, and -> the group's pods gone,
//!
//! by polling every 100 ms, and prints every round and the median. Bounded: at most
//! `common::load`'s request and time limits, every wait has a deadline, and only
//! 127.x pod IPs are dialled.
//!
//! Run: `cargo bench -p deepseek-operator --bench autoscale_reaction` (release), or in the
//! debug profile the e2e suites use: `cargo test -p deepseek-operator --bench
//! autoscale_reaction`. `DSO_BENCH_ROUNDS` (default 3) sets the number of rounds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use common::load::LoadGen;
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions};
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;

const TARGET: u32 = 4;
const WINDOW_S: u64 = 10;
const STEP_TO: usize = 10;
/// Deadline of every wait.
const T: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every 100 ms until it holds, for at most `T`; returns the elapsed time
/// since `from`. (A measurement loop: the figure is when the condition was first seen.)
async fn until<F, Fut>(from: Instant, what: &str, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + T;
    loop {
        if check().await.unwrap_or(false) {
            return Ok(from.elapsed());
        }
        if Instant::now() > deadline {
            return Err(anyhow!("timed out after {T:?} waiting until {what}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn spec_replicas(api: &Api<DeepSeekModel>, name: &str) -> Result<i32> {
    Ok(api.get(name).await?.spec.replicas.unwrap_or(1))
}

/// Live (not terminating) pods of the model, and how many of them are Running and Ready.
async fn live_pods(api: &Api<Pod>, name: &str) -> Result<(usize, usize)> {
    let pods = model_pods(api, name).await?;
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    Ok((
        live.len(),
        live.iter().filter(|p| is_running_ready(p)).count(),
    ))
}

/// `status.lastScaleTime` once it is later than `after`, minus `after`.
async fn scale_time_after(
    api: &Api<DeepSeekModel>,
    name: &str,
    after: Timestamp,
) -> Result<Duration> {
    let deadline = Instant::now() + T;
    loop {
        let m = api.get(name).await?;
        let t: Option<Timestamp> = m
            .status
            .and_then(|s| s.last_scale_time)
            .and_then(|t| t.parse().ok());
        if let Some(d) = t
            .filter(|t| *t > after)
            .and_then(|t| Duration::try_from(t.duration_since(after)).ok())
        {
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(anyhow!("no lastScaleTime after {after} within {T:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Debug, Clone, Copy)]
struct Round {
    up_decision: Duration,
    up_seen: Duration,
    up_running: Duration,
    down_decision: Duration,
    down_seen: Duration,
    down_removed: Duration,
}

fn s(d: Duration) -> String {
    format!("{:>6.2}s", d.as_secs_f64())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn round(
    models: &Api<DeepSeekModel>,
    pods: &Api<Pod>,
    name: &str,
    load: &LoadGen,
) -> Result<Round> {
    // Steady state: one group Running, the autoscaler reading its leader.
    until(Instant::now(), "one group Running at 1 replica", || async {
        Ok(spec_replicas(models, name).await? == 1 && live_pods(pods, name).await? == (1, 1))
    })
    .await?;
    wait_condition(models, name, "MetricsAvailable", "True", T).await?;

    let step_wall = Timestamp::now();
    let step = Instant::now();
    load.set(STEP_TO);
    let up_seen = until(step, "spec.replicas rose to 2", || async {
        Ok(spec_replicas(models, name).await? == 2)
    })
    .await?;
    let up_running = until(step, "the new group is Running and Ready", || async {
        Ok(live_pods(pods, name).await? == (2, 2))
    })
    .await?;
    let up_decision = scale_time_after(models, name, step_wall).await?;

    let idle_wall = Timestamp::now();
    let idle = Instant::now();
    load.set(0);
    let down_seen = until(idle, "spec.replicas returned to 1", || async {
        Ok(spec_replicas(models, name).await? == 1)
    })
    .await?;
    let down_removed = until(idle, "the second group's pods are gone", || async {
        Ok(model_pods(pods, name).await?.len() == 1)
    })
    .await?;
    let down_decision = scale_time_after(models, name, idle_wall).await?;
    Ok(Round {
        up_decision,
        up_seen,
        up_running,
        down_decision,
        down_seen,
        down_removed,
    })
}

async fn run() -> Result<()> {
    let rounds: usize = std::env::var("DSO_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 10);
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster.namespace("autoscale-bench").await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let fleet = SimFleet::start(
        ns.client(),
        ns.name(),
        SimOptions::new(launcher).env("DSO_SIM_TIME_SCALE", "10"),
    );
    let mut model = example("v3-fp8-mi300x.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    model.spec.replicas = None;
    model.spec.autoscaling = Some(serde_json::from_value(serde_json::json!({
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetQueueDepth": TARGET,
        "intervalSeconds": 1,
        "scaleDownStabilizationSeconds": WINDOW_S,
        "maxScaleUpStep": 1,
        "allowNodeProvisioning": true,
    }))?);
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let load = LoadGen::start(ns.client(), ns.name().to_string(), name.clone(), STEP_TO);

    println!(
        "autoscale reaction: {name} (1 MI300X node per group), 1..2 replicas, target {TARGET}, \
         interval 1s, window {WINDOW_S}s; load step 0 -> {STEP_TO} in flight; {rounds} round(s)"
    );
    println!("round | up: decision  seen  Running | down: decision  seen  removed");
    let mut all = Vec::new();
    for i in 1..=rounds {
        let r = round(&models, &pods, &name, &load)
            .await
            .map_err(|e| anyhow!("round {i}: {e:#}; operator log:\n{}", op.log_tail()))?;
        println!(
            "{i:>5} |   {} {} {} |   {} {} {}",
            s(r.up_decision),
            s(r.up_seen),
            s(r.up_running),
            s(r.down_decision),
            s(r.down_seen),
            s(r.down_removed)
        );
        all.push(r);
    }
    let m = |f: fn(&Round) -> Duration| median(all.iter().map(f).collect());
    println!(
        "median |   {} {} {} |   {} {} {}",
        s(m(|r| r.up_decision)),
        s(m(|r| r.up_seen)),
        s(m(|r| r.up_running)),
        s(m(|r| r.down_decision)),
        s(m(|r| r.down_seen)),
        s(m(|r| r.down_removed))
    );
    println!(
        "load generator: {} requests, {} failed",
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed)
    );
    drop(load);
    drop(fleet);
    drop(op);
    ns.finish().await
}

#[tokio::main]
async fn main() -> Result<()> {
    run().await
}

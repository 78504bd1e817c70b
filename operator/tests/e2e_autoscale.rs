//! End to end autoscaling under load (issue 6 item 5) with simulated engines: the Ascend R1
//! INT8 example (2 nodes per group, 4 Ascend nodes = at most 2 groups) with autoscaling
//! 1..2, target 4, interval 1 s, window 10 s. A bounded load generator (loopback only)
//! steps concurrency up, holds, and stops. Asserts: replicas rise to the maximum, whole
//! 2-pod groups are added, no flapping while load holds, an outage of every metrics
//! endpoint (SimFleet paused) scales nothing down even past the window, and once metrics
//! are back the model returns to the minimum. Reaction times are printed, not asserted.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::load::LoadGen;
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::Api;

/// Accelerator nodes are shared with other suites: wait generously for them.
const T: Duration = Duration::from_secs(300);
const WINDOW_S: u64 = 10;
const TARGET: u32 = 4;
const MIN: i32 = 1;
/// Load generator workers.
const WORKERS: usize = 12;

/// spec.replicas, status.desiredReplicas and live groups, sampled every 200 ms.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    spec: i32,
    desired: i32,
}

fn sampler(
    api: Api<DeepSeekModel>,
    name: String,
) -> (Arc<Mutex<Vec<Sample>>>, tokio::task::JoinHandle<()>) {
    let log: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let out = log.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(m) = api.get(&name).await {
                let s = Sample {
                    at: Instant::now(),
                    spec: m.spec.replicas.unwrap_or(MIN),
                    desired: m.status.as_ref().map(|s| s.desired_replicas).unwrap_or(-1),
                };
                if let Ok(mut l) = log.lock() {
                    l.push(s);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (out, task)
}

fn samples_between(log: &Mutex<Vec<Sample>>, from: Instant, to: Instant) -> Vec<Sample> {
    log.lock()
        .map(|l| {
            l.iter()
                .filter(|s| s.at >= from && s.at <= to)
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

fn since(ts: &str) -> Option<Duration> {
    let t: Timestamp = ts.parse().ok()?;
    let d = Timestamp::now().duration_since(t);
    Duration::try_from(d).ok()
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

async fn spec_replicas(api: &Api<DeepSeekModel>, name: &str) -> Result<i32> {
    // Unset means the minimum (the autoscaler writes it on its first scale).
    Ok(api.get(name).await?.spec.replicas.unwrap_or(MIN))
}

#[tokio::test]
async fn replicas_follow_the_queue_in_whole_groups_without_flapping_or_blind_scale_down(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster.namespace("autoscale").await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    // Requests last ~1-2 s under a 10x time scale, so concurrency shows as running load.
    let fleet = SimFleet::start(
        ns.client(),
        ns.name(),
        SimOptions::new(launcher).env("DSO_SIM_TIME_SCALE", "10"),
    );

    let mut model = example("r1-int8-ascend.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    model.spec.replicas = None;
    model.spec.autoscaling = Some(serde_json::from_value(serde_json::json!({
        "minReplicas": MIN,
        "maxReplicas": 2,
        "targetQueueDepth": TARGET,
        "intervalSeconds": 1,
        "scaleDownStabilizationSeconds": WINDOW_S,
        "maxScaleUpStep": 2,
        // Pending groups when another suite holds the Ascend nodes: they start once free.
        "allowNodeProvisioning": true,
    }))?);
    let models: Api<DeepSeekModel> = ns.api();
    apply_model(&models, &model).await?;
    let pods: Api<Pod> = ns.api();
    wait_groups(&pods, &name, 1, 2, T).await?;
    wait_condition(&models, &name, "MetricsAvailable", "True", T).await?;
    let (log, sampler_task) = sampler(models.clone(), name.clone());
    let load = LoadGen::start(ns.client(), ns.name().to_string(), name.clone(), WORKERS);

    // Light load (2 in flight, half a replica's target): stays at 1.
    load.set(2);
    wait_for(T, "the autoscaler observed the light load", || async {
        let m = models.get(&name).await?;
        Ok(m.status
            .and_then(|s| s.queue_depth)
            .filter(|q| *q >= 2)
            .map(|_| ()))
    })
    .await?;
    ensure!(
        spec_replicas(&models, &name).await? == 1,
        "light load must not scale up"
    );

    // Step: 10 in flight = 3 replicas' worth, clamped to the maximum of 2.
    let step_at = Instant::now();
    let step_wall = Timestamp::now();
    load.set(10);
    wait_for(T, "spec.replicas rose to 2", || async {
        Ok((spec_replicas(&models, &name).await? == 2).then_some(()))
    })
    .await?;
    let decided = step_at.elapsed();
    let m = models.get(&name).await?;
    let st = m.status.clone().unwrap_or_default();
    let scale_time: Option<Timestamp> = st.last_scale_time.as_deref().and_then(|t| t.parse().ok());
    let server_decision =
        scale_time.and_then(|t| Duration::try_from(t.duration_since(step_wall)).ok());
    let grouped = wait_groups(&pods, &name, 2, 2, T).await?;
    let running = step_at.elapsed();
    ensure!(
        grouped.len() == 4,
        "two whole groups of two pods: {}",
        grouped.len()
    );
    eprintln!(
        "scale-up reaction: load step -> decision {} (lastScaleTime: {}), -> new group Running {}; reason: {:?}",
        secs(decided),
        server_decision.map(secs).unwrap_or_else(|| "?".into()),
        secs(running),
        st.last_scale_reason
    );

    // Hold the load past the window: no flapping.
    let hold_from = Instant::now();
    wait_for(
        T,
        "the load held for longer than the window after the scale-up",
        || async {
            let m = models.get(&name).await?;
            let t = m.status.and_then(|s| s.last_scale_time).unwrap_or_default();
            Ok(since(&t)
                .filter(|d| *d > Duration::from_secs(WINDOW_S + 5))
                .map(|_| ()))
        },
    )
    .await?;
    let held = samples_between(&log, hold_from, Instant::now());
    ensure!(!held.is_empty());
    ensure!(
        held.iter().all(|s| s.spec == 2 && s.desired == 2),
        "replicas changed while the load held: {held:?}"
    );
    wait_groups(&pods, &name, 2, 2, Duration::from_secs(5)).await?;

    // Outage: the load stops and every metrics endpoint goes away. Nothing scales down,
    // even well past the window.
    load.set(0);
    fleet.set_paused(true);
    let outage_from = Instant::now();
    wait_condition(&models, &name, "MetricsAvailable", "False", T).await?;
    wait_for(
        T,
        "the metrics outage lasted longer than the window",
        || async {
            let m = models.get(&name).await?;
            let c = m.status.and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "MetricsAvailable")
            });
            Ok(c.filter(|c| c.status == "False")
                .and_then(|c| {
                    Duration::try_from(Timestamp::now().duration_since(c.last_transition_time.0))
                        .ok()
                })
                .filter(|d| *d > Duration::from_secs(WINDOW_S + 5))
                .map(|_| ()))
        },
    )
    .await?;
    let during = samples_between(&log, outage_from, Instant::now());
    ensure!(
        during.iter().all(|s| s.spec == 2),
        "scaled down while metrics were missing: {during:?}"
    );
    ensure!(spec_replicas(&models, &name).await? == 2);

    // Metrics back, no load: back to the minimum after the window.
    let back_at = Instant::now();
    fleet.set_paused(false);
    wait_for(T, "spec.replicas returned to the minimum (1)", || async {
        Ok((spec_replicas(&models, &name).await? == 1).then_some(()))
    })
    .await?;
    let down_decided = back_at.elapsed();
    wait_groups(&pods, &name, 1, 2, T).await?;
    let down_done = back_at.elapsed();
    eprintln!(
        "scale-down: metrics back (idle) -> decision {} (window {WINDOW_S}s), -> group removed {}",
        secs(down_decided),
        secs(down_done)
    );

    // An Event for every scale this test's operator made. (Operators of other suites on
    // the shared cluster reconcile every namespace too and may have made some of the
    // scales; their Events depend on their own RBAC.)
    let own_scales: f64 = op
        .metrics()
        .await?
        .lines()
        .filter(|l| l.starts_with("deepseek_operator_api_writes"))
        .filter(|l| l.contains("resource=\"deepseekmodels/scale\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let events: Api<Event> = ns.api();
    let evs = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?
        .items;
    let reasons: Vec<String> = evs.iter().filter_map(|e| e.reason.clone()).collect();
    let scale_events = evs
        .iter()
        .filter(|e| matches!(e.reason.as_deref(), Some("ScaledUp" | "ScaledDown")))
        .map(|e| f64::from(e.count.unwrap_or(1).max(1)))
        .sum::<f64>();
    ensure!(
        scale_events >= own_scales,
        "{own_scales} scale(s) by this operator but {scale_events} scale Event(s): {reasons:?}"
    );
    eprintln!("scales by this test's operator: {own_scales}; scale events: {scale_events}; events: {reasons:?}");
    let created: Vec<String> = evs
        .iter()
        .filter(|e| e.reason.as_deref() == Some("GroupCreated"))
        .filter_map(|e| e.message.clone())
        .collect();
    ensure!(
        !created.is_empty() && created.iter().all(|m| m.contains("(2 pod(s) each)")),
        "groups are created whole: {created:?}"
    );

    eprintln!(
        "load generator: {} requests sent, {} failed (includes the outage)",
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed)
    );
    drop(load);
    sampler_task.abort();
    drop(fleet);
    ns.finish().await
}

//! A 2-rank group across two real kubelet nodes (`e2e/cluster up --real-nodes 2`,
//! `scripts/images`): real-0 and real-1 are made H100 nodes for placement (NVIDIA's
//! labels, `nvidia.com/gpu: 8` patched into their status, as a device plugin would
//! advertise it), an operator on the host places a DeepSeek-R1 FP8 group of two 8-GPU pods
//! on them, and the pods run the runtime-sim image (the launcher with `DSO_ENGINE=sim`:
//! rendering, rendezvous, probes and drain as for a real engine, the engine process the
//! sim). The worker finds its leader through the headless Service's DNS name, answered by
//! the run's CoreDNS on the bridge. The leader turns Ready through the kubelet's own
//! readiness probe of the port the pod spec names, and not before the worker's engine
//! started; it then streams a chat. Then the worker's engine process is killed (SIGKILL,
//! found in the host's process table by its pod's hostname): the kubelet restarts the
//! container, the operator recreates the whole group and `Degraded` names the reason; the
//! new group turns Ready. Then the new group's leader is deleted with streams in flight:
//! the kubelet runs its preStop hook (`deepseek-launcher drain`) and then sends the
//! container a real SIGTERM; every stream ends complete, and new requests meanwhile get 503.
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
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(300);
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
async fn a_two_rank_h100_group_on_two_real_nodes_is_ready_by_the_kubelets_probes_and_drains(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    real_nodes::on_h100_nodes(
        &cluster,
        &["ghcr.io/deepseek-operator/runtime-sim"],
        |image| run(&cluster, image),
    )
    .await
}

async fn run(cluster: &Cluster, image: String) -> Result<()> {
    install_crd(cluster).await?;
    let ns = cluster.namespace("real-group").await?;
    let op =
        operator_with_config(cluster, ns.name(), "allowRootHostPathCache: true\n", None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let model = real_nodes::r1_on_real_nodes(ns.name(), "r1", &image, json!({"replicas": 1}))?;
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
    let (leader, ip) = engine_killed(&models, &pods, &worker).await?;
    drain_on_leader_deletion(&pods, &leader, ip).await?;
    models.delete("r1", &Default::default()).await?;
    wait_for(T, "the model's pods are gone", || async {
        Ok(model_pods(&pods, "r1").await?.is_empty().then_some(()))
    })
    .await?;
    real_nodes::remove_node_cache(ns.name());
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

/// Streams in flight through the leader, then the leader's pod deleted: the preStop drain
/// refuses new requests with 503 and lets every stream finish before the SIGTERM.
async fn drain_on_leader_deletion(
    pods: &Api<Pod>,
    leader: &Pod,
    ip: std::net::Ipv4Addr,
) -> Result<()> {
    const STREAMS: usize = 3;
    let (tx, mut rx) = tokio::sync::mpsc::channel(STREAMS);
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let tx = tx.clone();
            tokio::spawn(real_nodes::stream_chat_in_flight(
                ip,
                deepseek_engine::ENGINE_PORT,
                "r1",
                12000,
                tx,
            ))
        })
        .collect();
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .context("a stream never started")?;
    }
    let name = leader.name_any();
    pods.delete(&name, &Default::default()).await?;
    // New requests while the leader drains: 503 (then, once its engine stopped, refused).
    let mut statuses = Vec::new();
    let refused = wait_for(
        Duration::from_secs(60),
        "a new request refused with 503",
        || async {
            let s = real_nodes::chat_status(ip, deepseek_engine::ENGINE_PORT, "r1").await?;
            Ok((s == 503).then_some(s))
        },
    )
    .await;
    if let Err(e) = &refused {
        statuses.push(format!("{e:#}"));
    }
    let mut results = Vec::new();
    for s in streams {
        results.push(s.await?);
    }
    let cut: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(s) if s.done => None,
            Ok(s) => Some(format!("ended without [DONE] after {} deltas", s.deltas)),
            Err(e) => Some(format!("{e:#}")),
        })
        .collect();
    ensure!(
        cut.is_empty(),
        "{} of {STREAMS} streams cut: {cut:?}",
        cut.len()
    );
    refused.with_context(|| format!("no 503 while the leader drained: {statuses:?}"))?;
    // The drain was the preStop hook's: the kubelet reports no failure of it.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(
        pods.clone().into_client(),
        &leader.namespace().unwrap_or_default(),
    );
    let seen = events
        .list(&kube::api::ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?
        .items;
    // "Killing": the kubelet stopped the engine container (preStop, then SIGTERM).
    ensure!(
        seen.iter().any(|e| e.reason.as_deref() == Some("Killing")),
        "no Killing event from the kubelet for {name}"
    );
    let failed: Vec<String> = seen
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedPreStopHook"))
        .map(|e| e.message.unwrap_or_default())
        .collect();
    ensure!(
        failed.is_empty(),
        "the leader's preStop hook failed: {failed:?}"
    );
    let deltas: Vec<usize> = results.iter().flatten().map(|s| s.deltas).collect();
    eprintln!(
        "leader {name} deleted with {STREAMS} streams in flight: 0 cut ({deltas:?} deltas each), \
         new requests got 503 during its preStop drain"
    );
    Ok(())
}

/// Kills the worker's engine process: the kubelet restarts its container, the operator
/// recreates the whole group (every pod new) with `Degraded` naming the reason, and the new
/// group's leader turns Ready. Returns the new leader and its IP.
async fn engine_killed(
    models: &Api<DeepSeekModel>,
    pods: &Api<Pod>,
    worker: &Pod,
) -> Result<(Pod, std::net::Ipv4Addr)> {
    let name = worker.name_any();
    let pid = wait_for(T, &format!("the engine process of {name}"), || async {
        Ok(real_nodes::pod_process(&name, "deepseek-launcher", "sim"))
    })
    .await?;
    let old: std::collections::BTreeSet<String> = model_pods(pods, "r1")
        .await?
        .iter()
        .map(|p| p.uid().unwrap_or_default())
        .collect();
    real_nodes::kill_hard(pid)?;
    let mut restarted = false;
    let mut degraded: Option<(String, String)> = None;
    let deadline = tokio::time::Instant::now() + T;
    let leader = loop {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the group was not recreated and Ready within {T:?} (kubelet restart seen: {restarted}, Degraded: {degraded:?})"
        );
        let ps = model_pods(pods, "r1").await?;
        if let Some(w) = ps
            .iter()
            .find(|p| p.uid().as_deref() == worker.uid().as_deref())
        {
            let restarts = w
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
                .unwrap_or(0);
            restarted |= restarts > 0;
        }
        let m = models.get("r1").await?;
        if let Some(c) = m
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Degraded"))
            .filter(|c| c.status == "True")
        {
            degraded.get_or_insert((c.reason, c.message));
        }
        let fresh = ps.len() == 2
            && ps
                .iter()
                .all(|p| !old.contains(&p.uid().unwrap_or_default()));
        if let Some(l) = ps.iter().find(|p| rank(p) == Some("0")) {
            if fresh && ready_since(l).is_some() {
                break l.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(restarted, "the kubelet never restarted {name}'s container");
    let (reason, message) = degraded.context("Degraded never turned True")?;
    ensure!(
        reason == "RankRestarted" || reason == "RankFailed",
        "Degraded does not name the restart: {reason}: {message}"
    );
    let ip = real_nodes::bridge_ip(&leader)?;
    eprintln!(
        "killed the engine (pid {pid}) of {name}: the kubelet restarted it, Degraded={reason} \
         ({message}), the group was recreated whole and its new leader is Ready at {ip}"
    );
    Ok((leader, ip))
}

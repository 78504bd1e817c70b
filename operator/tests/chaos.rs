//! The chaos suite: replica groups under the failures a real cluster has, on the real
//! control plane. Twenty SIGKILLs of the leading operator at random points of rollouts and
//! scaling; a leader handover timed against the lease; the API server down for 10 s; a node
//! lost under a running 2-pod group; a rank whose container restarted; an operator upgrade.
//! Each scenario asserts its end state and appends its figures to
//! `target/tmp/chaos-figures.md`, which `scripts/test` prints and the README quotes.
//!
//! The groups run on nodes of the stand-in kubelet (`failures/fake_kubelet.rs`), which a
//! test can kill without disturbing the shared KWOK controller.

mod common;
#[path = "failures/fake_kubelet.rs"]
mod fake_kubelet;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::{wait_for, wait_for_state};
use deepseek_e2e::{Cluster, TestNamespace};
use deepseek_operator::api::{DeepSeekModel, Serving};
use fake_kubelet::{running_status, FakeNodes};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

const T: Duration = Duration::from_secs(120);
const HASH: &str = "inference.deepseek-operator.dev/template-hash";
const GROUP_ID: &str = "inference.deepseek-operator.dev/group-id";
const SLOT: &str = "inference.deepseek-operator.dev/group";
/// The lease duration the test operators run with (tests/common: 6 s).
const LEASE: Duration = Duration::from_secs(6);
/// kube-lease-manager renews at `duration - grace`; the operator's grace is a third.
const RENEW: Duration = Duration::from_secs(4);
const UNREACHABLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Beyond a configured bound: the operator's recheck, deletions, the scheduler and the
/// stand-in kubelet.
const MARGIN: Duration = Duration::from_secs(60);

/// Appends rows to the figures table.
fn record(rows: &[(&str, String)]) {
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/chaos-figures.md");
    let fresh = !std::path::Path::new(path).exists();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        if fresh {
            let _ = writeln!(f, "| scenario | result |\n|---|---|");
        }
        for (scenario, figure) in rows {
            let _ = writeln!(f, "| {scenario} | {figure} |");
            eprintln!("chaos: {scenario}: {figure}");
        }
    }
}

/// A small PRNG, seeded from the clock (or `DSO_CHAOS_SEED` to replay a run).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("DSO_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(42)
            });
        eprintln!("chaos seed {seed} (DSO_CHAOS_SEED={seed} replays it)");
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn label(p: &Pod, key: &str) -> String {
    p.labels().get(key).cloned().unwrap_or_default()
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// The model's state once converged: `replicas` groups of 2 Ready pods at one hash, one
/// group per slot, every pod of the namespace owned by a group of the model.
async fn converged(
    pods: &Api<Pod>,
    name: &str,
    replicas: usize,
    not_hash: Option<&str>,
) -> Result<Option<String>> {
    let all = pods.list(&Default::default()).await?.items;
    let live: Vec<&Pod> = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let hashes: BTreeSet<String> = live.iter().map(|p| label(p, HASH)).collect();
    let groups: BTreeMap<String, usize> = live.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(label(p, GROUP_ID)).or_default() += 1;
        m
    });
    let slots: BTreeSet<String> = live.iter().map(|p| label(p, SLOT)).collect();
    let owned = all.iter().all(|p| {
        p.labels()
            .get("app.kubernetes.io/instance")
            .map(String::as_str)
            == Some(name)
            && p.owner_references().iter().any(|o| o.name == name)
    });
    let ok = live.len() == all.len()
        && live.len() == replicas * 2
        && groups.len() == replicas
        && groups.values().all(|n| *n == 2)
        && slots.len() == replicas
        && hashes.len() == 1
        && owned
        && live.iter().all(|p| is_running_ready(p))
        && not_hash.is_none_or(|h| !hashes.contains(h));
    Ok(ok.then(|| hashes.into_iter().next().unwrap_or_default()))
}

/// Which of two operators leads, by their metrics.
async fn leader_of(ops: &[Operator; 2]) -> Result<usize> {
    wait_for(T, "exactly one replica leads", || async {
        let a = ops[0]
            .counter("deepseek_operator_leader")
            .await
            .unwrap_or(0.0);
        let b = ops[1]
            .counter("deepseek_operator_leader")
            .await
            .unwrap_or(0.0);
        Ok(match (a as u8, b as u8) {
            (1, 0) => Some(0),
            (0, 1) => Some(1),
            _ => None,
        })
    })
    .await
}

#[tokio::test]
async fn twenty_sigkills_of_the_leader_during_rollouts_and_scaling() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("chaos-kill").await?;
    // Three groups of two plus a surge group.
    let nodes = FakeNodes::start(&cluster, ns.name(), 8).await?;
    let run = ns.name().to_string();
    let mut next_id = 0;
    let mut start = |cluster: &Cluster| {
        next_id += 1;
        let id = format!("{run}-{next_id}");
        let run = run.clone();
        let cluster = cluster.clone();
        async move {
            operator_with_config(&cluster, &id, "{}\n", Some((run.as_str(), id.as_str()))).await
        }
    };
    let mut ops = [start(&cluster).await?, start(&cluster).await?];
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut m = nodes.model("chaos")?;
    let mut replicas = 2usize;
    m.spec.replicas = Some(replicas as i32);
    apply_model(&models, &m).await?;
    let mut hash = wait_for(T, "the first groups converge", || {
        converged(&pods, "chaos", replicas, None)
    })
    .await?;

    let mut rng = Rng::new();
    let mut len = 4096;
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    let (mut rollouts, mut ups, mut downs) = (0, 0, 0);
    for round in 0..20 {
        let mut action = rng.below(3);
        if (action == 1 && replicas == 3) || (action == 2 && replicas == 1) {
            action = 0;
        }
        let rollout = action == 0;
        match action {
            0 => {
                // A spec change that reaches pods: the launch configuration's context.
                len = if len == 4096 { 6144 } else { 4096 };
                m.spec.serving = Some(Serving {
                    max_model_len: Some(len),
                    ..Default::default()
                });
                rollouts += 1;
            }
            1 => {
                replicas += 1;
                ups += 1;
            }
            _ => {
                replicas -= 1;
                downs += 1;
            }
        }
        m.spec.replicas = Some(replicas as i32);
        apply_model(&models, &m).await?;
        // The fault-injection point: somewhere in the first 1.5 s of the operator's work.
        tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
        let leader = leader_of(&ops).await?;
        ops[leader].kill();
        let killed_at = Instant::now();
        ops[leader] = start(&cluster).await?;
        let previous = hash.clone();
        hash = wait_for(
            T,
            &format!("round {round}: {replicas} group(s) converge after the kill"),
            || {
                converged(
                    &pods,
                    "chaos",
                    replicas,
                    rollout.then_some(previous.as_str()),
                )
            },
        )
        .await
        .with_context(|| {
            format!(
                "round {round}: operator logs:\n{}\n---\n{}",
                ops[0].log_tail(),
                ops[1].log_tail()
            )
        })?;
        let took = killed_at.elapsed();
        worst = worst.max(took);
        total += took;
    }
    record(&[(
        "20 SIGKILLs of the leader (2 replicas, lease 6 s) during rollouts, scale-ups and scale-downs of 2-pod groups",
        format!(
            "{rollouts} rollouts, {ups} scale-ups, {downs} scale-downs; 0 duplicate groups, 0 orphaned pods; converged every time, worst {:.1} s, mean {:.1} s after the kill",
            worst.as_secs_f64(),
            total.as_secs_f64() / 20.0
        ),
    )]);
    drop(ops);
    drop(nodes);
    ns.finish().await
}

#[tokio::test]
async fn leader_failover_within_the_lease_duration_plus_a_renew_period() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("chaos-failover").await?;
    let mut measured = Vec::new();
    for round in 0..3 {
        let a = format!("{}-a{round}", ns.name());
        let b = format!("{}-b{round}", ns.name());
        let mut ops = [
            operator_with_config(&cluster, &a, "{}\n", Some((ns.name(), a.as_str()))).await?,
            operator_with_config(&cluster, &b, "{}\n", Some((ns.name(), b.as_str()))).await?,
        ];
        let leader = leader_of(&ops).await?;
        ops[leader].kill();
        let killed_at = Instant::now();
        let standby = 1 - leader;
        wait_for(T, "the standby leads", || async {
            Ok((ops[standby].counter("deepseek_operator_leader").await? == 1.0).then_some(()))
        })
        .await?;
        let took = killed_at.elapsed();
        // Polling the standby's metrics adds up to one poll interval to the measurement.
        let bound = LEASE + RENEW + Duration::from_millis(500);
        ensure!(
            took <= bound,
            "handover took {took:?}, more than the lease duration plus a renew period ({bound:?})"
        );
        measured.push(took.as_secs_f64());
        drop(ops);
    }
    let max = measured.iter().cloned().fold(0.0, f64::max);
    let min = measured.iter().cloned().fold(f64::MAX, f64::min);
    record(&[(
        "leader killed, 2 replicas, lease 6 s, renew every 4 s (3 rounds)",
        format!("handover {min:.1}-{max:.1} s, asserted <= 10.5 s (lease + renew period + poll)"),
    )]);
    ns.finish().await
}

/// `deepseek_operator_api_writes` for one verb and resource.
async fn writes(op: &Operator, verb: &str, resource: &str) -> Result<f64> {
    let text = op.metrics().await?;
    let want = format!("verb=\"{verb}\"");
    let res = format!("resource=\"{resource}\"");
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("deepseek_operator_api_writes") && l.contains(&want) && l.contains(&res)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn the_api_server_down_for_ten_seconds_costs_no_restart_and_no_duplicate_write() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("chaos-apiserver").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 4).await?;
    let mut op = operator_with_config(&cluster, ns.name(), "{}\n", None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut m = nodes.model("outage")?;
    m.spec.replicas = Some(1);
    apply_model(&models, &m).await?;
    wait_for(T, "one group runs", || converged(&pods, "outage", 1, None)).await?;
    let pod_writes = writes(&op, "apply", "pods").await?;
    let svc_writes = writes(&op, "apply", "services").await?;

    let down_at = Instant::now();
    let out = std::process::Command::new(Cluster::script())
        .args(["restart-apiserver", "10"])
        .output()
        .context("e2e/cluster restart-apiserver")?;
    ensure!(
        out.status.success(),
        "restart-apiserver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The operator resumes: a scale-up after the outage is carried out.
    m.spec.replicas = Some(2);
    let resumed = async {
        wait_for(T, "the API server answers again", || async {
            Ok(models.get_opt("outage").await.ok().flatten().map(|_| ()))
        })
        .await?;
        apply_model(&models, &m).await?;
        wait_for(T, "the scale-up after the outage converges", || {
            converged(&pods, "outage", 2, None)
        })
        .await
    }
    .await
    .with_context(|| op.log_tail())?;
    let took = down_at.elapsed();
    ensure!(op.running(), "the operator exited during the outage");
    let new_pods = writes(&op, "apply", "pods").await? - pod_writes;
    let new_svcs = writes(&op, "apply", "services").await? - svc_writes;
    ensure!(
        new_pods == 2.0 && new_svcs == 0.0,
        "duplicate writes: {new_pods} pod applies (2 expected, one new group), {new_svcs} Service applies"
    );
    drop(resumed);
    controllers_recovered(&cluster).await?;
    record(&[(
        "kube-apiserver killed, down 10 s, then started",
        format!(
            "operator kept running (no restart); 0 duplicate writes (2 pod applies for the one new group, 0 Service applies); scale-up done {:.1} s after the stop began",
            took.as_secs_f64()
        ),
    )]);
    op.kill();
    drop(nodes);
    ns.finish().await
}

/// After an API server restart the controller-manager's informers come back with a
/// backoff: wait until a new namespace gets its ServiceAccount again, so the suites that
/// follow find a working cluster.
async fn controllers_recovered(cluster: &Cluster) -> Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let name = format!("chaos-probe-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    let _ = namespaces.create(&Default::default(), &ns).await;
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client(), &name);
    let done = wait_for(
        Duration::from_secs(180),
        "the controller-manager creates ServiceAccounts again",
        || async { Ok(sas.get_opt("default").await.ok().flatten().map(|_| ())) },
    )
    .await;
    let _ = namespaces.delete(&name, &Default::default()).await;
    done
}

#[tokio::test]
async fn a_lost_node_gets_its_group_recreated_on_healthy_nodes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("lost-node").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 3).await?;
    let config = format!(
        "unreachableNodeTimeoutSeconds: {}\n",
        UNREACHABLE_TIMEOUT.as_secs()
    );
    let op = operator_with_config(&cluster, ns.name(), &config, None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &nodes.model("lost")?).await?;
    let before = wait_groups(&pods, "lost", 1, 2, T)
        .await
        .with_context(|| op.log_tail())?;

    let (degraded, watch) = watch_degraded(models.clone(), "lost");
    let victim = node_of(&before[1]);
    let lost_at = Instant::now();
    nodes.kill(&victim).await?;
    let after = wait_for_state(
        UNREACHABLE_TIMEOUT + MARGIN,
        "the group runs again on healthy nodes and nothing is left on the lost node",
        || async {
            let all = model_pods(&pods, "lost").await?;
            let stuck: Vec<String> = all
                .iter()
                .filter(|p| node_of(p) == victim)
                .map(|p| p.name_any())
                .collect();
            let ok = stuck.is_empty() && all.len() == 2 && all.iter().all(is_running_ready);
            let seen: Vec<(String, String)> =
                all.iter().map(|p| (p.name_any(), node_of(p))).collect();
            Ok(if ok { Ok(all) } else { Err((stuck, seen)) })
        },
    )
    .await
    .with_context(|| op.log_tail())?;
    let took = lost_at.elapsed();
    ensure!(
        uids(&after).is_disjoint(&uids(&before)),
        "the group was recreated whole, the healthy rank included"
    );
    ensure!(
        after
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_none()),
        "no pod of the new group is terminating"
    );
    wait_condition(&models, "lost", "Degraded", "False", T).await?;
    watch.abort();
    let reasons = degraded.lock().map(|d| d.clone()).unwrap_or_default();
    ensure!(
        reasons.iter().any(|r| r == "NodeLost"),
        "Degraded was True with reason NodeLost while the group was broken: {reasons:?}"
    );
    record(&[(
        "a node lost under a running 2-pod group (unreachableNodeTimeoutSeconds 5)",
        format!(
            "group Running again on healthy nodes {:.1} s after the node died (bound 5 s + {} s margin); Degraded=NodeLost in between",
            took.as_secs_f64(),
            MARGIN.as_secs()
        ),
    )]);
    drop(nodes);
    ns.finish().await
}

#[tokio::test]
async fn a_restarted_rank_recreates_its_whole_group() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("rank-restart").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 2).await?;
    let op = operator_with_config(&cluster, ns.name(), "{}\n", None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &nodes.model("restart")?).await?;
    let before = wait_groups(&pods, "restart", 1, 2, T)
        .await
        .with_context(|| op.log_tail())?;
    let (degraded, watch) = watch_degraded(models.clone(), "restart");

    // The worker's process dies and its container restarts (OOM-killed, say): the
    // kubelet reports the restart.
    let worker = before
        .iter()
        .find(|p| p.labels().get("inference.deepseek-operator.dev/rank") == Some(&"1".into()))
        .context("the group has a rank 1")?;
    let killed_at = Instant::now();
    pods.patch_status(
        &worker.name_any(),
        &PatchParams::default(),
        &Patch::Merge(running_status(worker, true, 1)),
    )
    .await?;

    let after = wait_for(T, "a new group replaces the whole old one", || async {
        let all = model_pods(&pods, "restart").await?;
        let ok = all.len() == 2
            && all.iter().all(is_running_ready)
            && uids(&all).is_disjoint(&uids(&before));
        Ok(ok.then_some(all))
    })
    .await
    .with_context(|| op.log_tail())?;
    let took = killed_at.elapsed();
    wait_condition(&models, "restart", "Degraded", "False", T).await?;
    watch.abort();
    let reasons = degraded.lock().map(|d| d.clone()).unwrap_or_default();
    ensure!(
        reasons.iter().any(|r| r == "RankRestarted"),
        "Degraded was True with reason RankRestarted while the group was broken: {reasons:?}"
    );
    ensure!(after.len() == 2);
    record(&[(
        "a rank's container restarted (2-pod group)",
        format!(
            "whole group recreated, Running again {:.1} s later; Degraded=RankRestarted in between",
            took.as_secs_f64()
        ),
    )]);
    drop(nodes);
    ns.finish().await
}

/// Records every reason the model's Degraded condition had while True.
fn watch_degraded(
    api: Api<DeepSeekModel>,
    name: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, cfg).applied_objects().boxed();
            while let Some(Ok(m)) = stream.next().await {
                if let Some((status, reason, _)) = condition(&m, "Degraded") {
                    if status == "True" {
                        if let Ok(mut s) = seen.lock() {
                            s.push(reason);
                        }
                    }
                }
            }
        })
    };
    (seen, task)
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// An operator upgrade restarts nothing: the operator is replaced by one whose default
/// runtime image tag differs (what a new release changes); the running group keeps its
/// pods, and a group added afterwards joins at the same template hash. With
/// `spec.image: auto-upgrade` the same upgrade rolls the model onto the new image.
#[tokio::test]
async fn an_operator_upgrade_recreates_no_pod() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns: TestNamespace = cluster.namespace("chaos-upgrade").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 6).await?;
    let run = ns.name().to_string();
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut op = operator_with_config(
        &cluster,
        &format!("{run}-old"),
        "runtimeImageTag: \"0.1.0\"\n",
        None,
    )
    .await?;
    let mut steady = nodes.model("steady")?;
    steady.spec.replicas = Some(1);
    apply_model(&models, &steady).await?;
    let mut follows = nodes.model("follows")?;
    follows.spec.replicas = Some(1);
    follows.spec.image = Some("auto-upgrade".into());
    apply_model(&models, &follows).await?;
    let before = wait_groups(&pods, "steady", 1, 2, T).await?;
    let follows_before = wait_groups(&pods, "follows", 1, 2, T).await?;
    ensure!(before.iter().all(|p| image(p).ends_with(":0.1.0")));
    op.kill();

    let op = operator_with_config(
        &cluster,
        &format!("{run}-new"),
        "runtimeImageTag: \"0.2.0\"\n",
        None,
    )
    .await?;
    let checked = async {
        // auto-upgrade rolls onto the new image: proof the new operator reconciled.
        let rolled = wait_for(T, "the auto-upgrade model runs the new image", || async {
            let ps = model_pods(&pods, "follows").await?;
            let live: Vec<Pod> = ps
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            Ok((live.len() == 2
                && live
                    .iter()
                    .all(|p| image(p).ends_with(":0.2.0") && is_running_ready(p)))
            .then_some(live))
        })
        .await?;
        ensure!(uids(&rolled).is_disjoint(&uids(&follows_before)));
        // Scale the steady model: the new operator has reconciled it once this is done.
        steady.spec.replicas = Some(2);
        apply_model(&models, &steady).await?;
        let after = wait_groups(&pods, "steady", 2, 2, T).await?;
        let kept = uids(&before).intersection(&uids(&after)).count();
        ensure!(
            kept == before.len(),
            "the upgrade recreated {} pod(s)",
            before.len() - kept
        );
        let hashes: BTreeSet<String> = after.iter().map(|p| label(p, HASH)).collect();
        ensure!(hashes.len() == 1, "groups at different hashes: {hashes:?}");
        ensure!(after.iter().all(|p| image(p).ends_with(":0.1.0")));
        anyhow::Ok(())
    }
    .await;
    checked.with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    record(&[(
        "operator upgrade (default runtime image tag 0.1.0 -> 0.2.0), operator restarted",
        "0 pods recreated; a later scale-up joins the recorded hash and image; `image: auto-upgrade` rolls onto 0.2.0".to_string(),
    )]);
    drop(nodes);
    ns.finish().await
}

//! The operator from its own image, installed with the chart onto the real nodes
//! (`e2e/cluster up --real-nodes 2`, `scripts/images`), with the chart's defaults: 2
//! replicas, leader election on a 15 s Lease. The pods reach the API server through the
//! bridge's forwarder (`real_api_forward_up` in e2e/lib/real-nodes.sh) under the name
//! `kubernetes` (a host alias and `KUBERNETES_SERVICE_HOST`/`_PORT` from the chart's
//! `hostAliases` and `extraEnv`), and turn Ready through the kubelet's own probes of the
//! metrics port. The models they manage live on the simulated nodes.
//!
//! Then the leader is taken away, twice, with a model serving:
//! - its process is killed while its node's kubelet runs: the kubelet restarts the
//!   container and the same pod takes its lease back at once (the identity is the pod's
//!   name), with no lease transition;
//! - its node's kubelet is frozen (SIGSTOP) and its process killed, so nothing restarts
//!   it: the standby takes the lease within a lease duration plus two retry periods (it
//!   sees the last renewal up to one retry late, and polls once per retry), and carries
//!   out a scale-up made after the kill. When the kubelet wakes and restarts the old
//!   leader, it stands by.
//!
//! Neither takeover recreates the model's pods.
//!
//! `cargo test -p deepseek-operator --features real-nodes --test e2e_real_operator`.

mod common;
mod real_nodes;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::helm::{chart_dir, run, wait_rolled_out};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(120);
const IMAGE: &str = "ghcr.io/deepseek-operator/deepseek-operator";
/// The chart's defaults: `leaderElection.leaseDurationSeconds`, and the retry period the
/// operator derives from it (controller/leader.rs: a sixth).
const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_millis(2500);
/// Room for the API calls and this test's own polling on a busy 2-core machine.
const MARGIN: Duration = Duration::from_secs(3);

#[tokio::test]
async fn the_operator_image_runs_on_a_real_node_and_its_standby_takes_over() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    for node in ["real-0", "real-1"] {
        real_nodes::real_node_with_image(&cluster, node, IMAGE).await?;
    }
    install_crd(&cluster).await?;
    let ns = cluster.namespace("real-operator").await?;
    let models_ns = cluster.namespace("real-operator-models").await?;
    let release = ns.name().to_string();
    let fullname = format!("{release}-deepseek-operator");

    let values = install_values(&cluster, models_ns.name())?;
    let values_file = cluster.state_dir().join(format!("{release}-values.yaml"));
    std::fs::write(&values_file, values)?;
    let mut cmd = cluster.helm();
    cmd.args(["install", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name(), "--values"])
        .arg(&values_file);
    run(cmd, "helm install")?;

    let deps: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();
    let leases: Api<Lease> = ns.api();
    let rolled = wait_rolled_out(&deps, &fullname, 2).await;
    with_logs(rolled, &cluster, &pods).await?;
    let ops = operator_pods(&pods).await?;
    for p in &ops {
        let node = node_of(p)?;
        ensure!(
            node.starts_with("real-"),
            "{} runs on {node}, not a real node",
            p.name_any()
        );
        real_nodes::bridge_ip(p)?;
    }
    let (leader, transitions) = wait_leader(&leases, &ops).await?;
    eprintln!(
        "operator pods Ready on {:?}; {leader} leads",
        ops.iter()
            .map(|p| node_of(p).unwrap_or_default())
            .collect::<Vec<_>>()
    );

    // A model it manages, on the simulated nodes.
    let models: Api<DeepSeekModel> = models_ns.api();
    let model_pods_api: Api<Pod> = models_ns.api();
    apply_model(&models, &example("r1-distill-qwen-1.5b-l4.yaml")?).await?;
    let serving = wait_groups(&model_pods_api, MODEL, 1, 1, T).await;
    let serving = with_logs(serving, &cluster, &pods).await?;
    wait_condition(&models, MODEL, "Available", "True", T).await?;
    let before = uids(&serving);

    // 1. The leader's process killed, its kubelet running.
    let restarts = restart_count(&pods.get(&leader).await?);
    let pid = operator_pid(&leader).await?;
    real_nodes::kill_hard(pid)?;
    let killed = Instant::now();
    restarted(&pods, &leader, restarts).await?;
    let lease = leases.get(LEASE_NAME).await?;
    let spec = lease.spec.unwrap_or_default();
    ensure!(
        spec.holder_identity.as_deref() == Some(leader.as_str())
            && spec.lease_transitions == transitions,
        "after its restart {leader} should hold the lease again with no transition: holder {:?}, transitions {:?} (before {transitions:?})",
        spec.holder_identity,
        spec.lease_transitions
    );
    eprintln!(
        "killed {leader}'s operator (pid {pid}) with its kubelet running: restarted and leading again after {:.1}s",
        killed.elapsed().as_secs_f64()
    );
    ensure!(
        uids(&model_pods(&model_pods_api, MODEL).await?) == before,
        "the model's pods were recreated"
    );

    // 2. Its kubelet frozen, then its process killed: nothing restarts it.
    let leader_pod = pods.get(&leader).await?;
    let node = node_of(&leader_pod)?;
    let standby = ops
        .iter()
        .map(|p| p.name_any())
        .find(|n| *n != leader)
        .ok_or_else(|| anyhow!("no standby pod"))?;
    let restarts = restart_count(&leader_pod);
    let pid = operator_pid(&leader).await?;
    let frozen = FrozenKubelet::freeze(cluster.state_dir(), &node)?;
    real_nodes::kill_hard(pid)?;
    let killed = Instant::now();
    wait_for(T, &format!("{standby} takes the lease"), || async {
        let holder = leases
            .get(LEASE_NAME)
            .await?
            .spec
            .and_then(|s| s.holder_identity);
        Ok((holder.as_deref() == Some(standby.as_str())).then_some(()))
    })
    .await?;
    let took = killed.elapsed();
    let bound = LEASE + RETRY * 2 + MARGIN;
    ensure!(
        took <= bound,
        "{standby} took the lease {:.1}s after the leader died; the bound is {:.1}s",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    eprintln!(
        "froze {node}'s kubelet and killed {leader}'s operator (pid {pid}): {standby} leads after {:.1}s (bound {:.1}s)",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    models
        .patch_scale(
            MODEL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await?;
    let scaled = wait_groups(&model_pods_api, MODEL, 2, 1, T).await;
    let scaled = with_logs(scaled, &cluster, &pods).await?;
    ensure!(
        before.is_subset(&uids(&scaled)),
        "the serving group was recreated by the new leader"
    );
    eprintln!("{standby} scaled the model to 2 groups; the first group's pod is the same");

    // The kubelet wakes, restarts the old leader, which stands by.
    drop(frozen);
    restarted(&pods, &leader, restarts).await?;
    // Two renewals later the lease is still the new leader's.
    let mut seen = leases.get(LEASE_NAME).await?.spec.unwrap_or_default();
    for _ in 0..2 {
        let last = seen.renew_time.clone();
        seen = wait_for(T, "the lease is renewed", || async {
            let s = leases.get(LEASE_NAME).await?.spec.unwrap_or_default();
            Ok((s.renew_time != last).then_some(s))
        })
        .await?;
        ensure!(
            seen.holder_identity.as_deref() == Some(standby.as_str()),
            "the restarted {leader} took the lease back from {standby}: holder {:?}",
            seen.holder_identity
        );
    }
    eprintln!("{leader} restarted and stands by");

    let mut cmd = cluster.helm();
    cmd.args(["uninstall", &release, "--namespace", ns.name(), "--wait"]);
    run(cmd, "helm uninstall")?;
    Ok(())
}

const LEASE_NAME: &str = "deepseek-operator";
/// `examples/r1-distill-qwen-1.5b-l4.yaml`'s name.
const MODEL: &str = "r1-distill-1-5b";

/// The chart's values for the real nodes: their label, the API server's forwarder on the
/// bridge, a namespaced operator (other suites' models are not its business), small
/// requests (2 cores are shared by everything).
fn install_values(cluster: &Cluster, models_ns: &str) -> Result<String> {
    let file = cluster.state_dir().join("real").join("api-address");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{}: start the real nodes first", file.display()))?;
    let (ip, port) = text
        .trim()
        .split_once(' ')
        .with_context(|| format!("{}: {text:?} is not 'IP PORT'", file.display()))?;
    Ok(serde_yaml::to_string(&json!({
        "watchNamespaces": [models_ns],
        "nodeSelector": {real_nodes::REAL_LABEL: "true"},
        "hostAliases": [{"ip": ip, "hostnames": ["kubernetes"]}],
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "kubernetes"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    }))?)
}

async fn operator_pods(pods: &Api<Pod>) -> Result<Vec<Pod>> {
    let lp = ListParams::default().labels("app.kubernetes.io/name=deepseek-operator");
    let list: Vec<Pod> = pods
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    ensure!(list.len() == 2, "{} operator pods, not 2", list.len());
    Ok(list)
}

/// The lease holder, one of the operator's pods, and the lease's transitions.
async fn wait_leader(leases: &Api<Lease>, ops: &[Pod]) -> Result<(String, Option<i32>)> {
    let names: Vec<String> = ops.iter().map(|p| p.name_any()).collect();
    wait_for(T, "an operator pod holds the lease", || async {
        let Some(lease) = leases.get_opt(LEASE_NAME).await? else {
            return Ok(None);
        };
        let spec = lease.spec.unwrap_or_default();
        Ok(spec
            .holder_identity
            .filter(|h| names.contains(h))
            .map(|h| (h, spec.lease_transitions)))
    })
    .await
}

async fn operator_pid(pod: &str) -> Result<u32> {
    wait_for(T, &format!("the operator process of {pod}"), || async {
        Ok(real_nodes::pod_process(pod, "deepseek-operator", "run"))
    })
    .await
}

fn node_of(p: &Pod) -> Result<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .with_context(|| format!("{} is not scheduled", p.name_any()))
}

/// Waits until the kubelet restarted the pod's operator container (more than `restarts`
/// restarts) and the pod is Ready again.
async fn restarted(pods: &Api<Pod>, pod: &str, restarts: i32) -> Result<()> {
    wait_for(
        T,
        &format!("the kubelet restarts {pod}'s operator"),
        || async {
            let p = pods.get(pod).await?;
            Ok((restart_count(&p) > restarts && is_running_ready(&p)).then_some(()))
        },
    )
    .await
}

fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "operator"))
        .map_or(0, |c| c.restart_count)
}

/// A failure with the operator containers' logs (read from the nodes) added.
async fn with_logs<V>(r: Result<V>, cluster: &Cluster, pods: &Api<Pod>) -> Result<V> {
    let Err(e) = r else { return r };
    let list = pods.list(&ListParams::default()).await.map(|l| l.items);
    let logs: Vec<String> = list
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let node = node_of(p).unwrap_or_default();
            format!(
                "--- {} on {node}:\n{}",
                p.name_any(),
                real_nodes::container_log(cluster, &node, p, "operator")
            )
        })
        .collect();
    Err(e.context(logs.join("\n")))
}

/// A real node's kubelet stopped with SIGSTOP: it neither restarts containers nor reports
/// them. Woken with SIGCONT when dropped, also when the test fails.
struct FrozenKubelet(u32);

impl FrozenKubelet {
    fn freeze(state_dir: &Path, node: &str) -> Result<FrozenKubelet> {
        let file = state_dir.join("pids").join(format!("{node}-kubelet.pid"));
        let pid: u32 = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{}", file.display()))?;
        signal(pid, "-STOP")?;
        Ok(FrozenKubelet(pid))
    }
}

impl Drop for FrozenKubelet {
    fn drop(&mut self) {
        if let Err(e) = signal(self.0, "-CONT") {
            eprintln!("could not wake the kubelet (pid {}): {e}", self.0);
        }
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    ensure!(ok.success(), "kill {sig} {pid} failed");
    Ok(())
}

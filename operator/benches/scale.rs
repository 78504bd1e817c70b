//! The operator at cluster scale (issue 12): the `large` topology raised to 5,000 KWOK
//! nodes, 1,000 DeepSeekModels of mixed sizes and vendors applied at once, every one on
//! the built-in autoscaler at its default interval (5 s). Reports
//!
//! - time until every placeable group is Running and Ready (per model p50/p95, total),
//! - the operator's peak and steady RSS and CPU seconds (from /proc),
//! - API requests by verb, the operator's identity only, from the API server's audit log
//!   (the operator runs as its own ServiceAccount, so its requests are told apart),
//! - a steady state (default 10 minutes) and the writes in it, from the audit log, with
//!   the leader Lease's renewals counted apart,
//! - an autoscaling storm: 100 models' load stepped at once; per model the time from the
//!   step until `spec.replicas` changes (the decision), p50/p99.
//!
//! The operator runs as the chart installs it (issue 26): `replicaCount` processes with
//! leader election on and the chart's lease name and duration, read from
//! `charts/deepseek-operator/values.yaml` (2 replicas, a 15 s lease: the leader renews
//! every 2.5 s, `Timing::retry`, so about 120 Lease writes per 5 minutes). Each replica's
//! identity is a pod-like name in `POD_NAME`, as the chart's Deployment sets it. RSS and
//! CPU are the leader's; requests are both replicas' (one ServiceAccount, as in the chart).
//! The operator has no client-side rate limit (kube-rs sets none).
//!
//! The goals of issue 12 are judged at the end, one PASS or FAIL line each: converge in
//! 60 s or less, peak RSS 64 MiB or less, 0 steady-state writes besides the Lease's
//! renewals (and those no more than the renew period allows), storm p99 decision 5 s or
//! less with every model decided. `--check` (after `--`: `cargo bench ... -- --check`) or
//! `DSO_BENCH_CHECK=1` makes a missed goal exit non-zero. Each run appends one JSON line
//! (date, commit, machine load, parameters, figures, verdicts) to
//! `docs/benchmarks/scale-results.jsonl` (`DSO_BENCH_RESULTS` names another file).
//!
//! The leaders' `/metrics` are served by this process on the pods' 127.x IPs (a few lines
//! of normalised text per model, load set by the bench): a thousand simulated engines
//! would not fit the machine, and the autoscaler reads only that text.
//!
//! The simulated nodes' lease is 600 s here, not the kubelet's 40 s
//! (`DSO_NODE_LEASE_SECONDS`): KWOK renews each node lease at a quarter of its duration,
//! so 5,000 nodes at 40 s are 500 writes a second, which on 2 cores crowd out the API
//! server work under test. The operator never reads node leases, so this changes only the
//! control plane's load (and makes the node lifecycle controller's grace period 610 s).
//!
//! Run (expensive; the cluster must be free to restart with the full audit log):
//! `DSO_AUDIT=all cargo bench -p deepseek-operator --bench scale`. Environment:
//! `DSO_TOPOLOGY_SCALE` (default 1.624: 5,000 nodes), `DSO_BENCH_MODELS` (1000),
//! `DSO_BENCH_STEADY_SECONDS` (600), `DSO_BENCH_STORM` (100),
//! `DSO_BENCH_CONVERGE_SECONDS` (deadline of the first phase, 1800),
//! `DSO_RECONCILE_CONCURRENCY` (passed to the operator, whose flag it sets), and the
//! e2e/cluster variables (`DSO_NODE_LEASE_SECONDS` defaults to 600 here). The cluster is
//! left running; `e2e/cluster down` stops it.

#[path = "scale/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "scale/goals.rs"]
mod goals;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chart::ChartLeader;
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::{AcceleratorSelector, Autoscaling, DeepSeekModel};
use deepseek_operator::autoscale::decide::DEFAULT_INTERVAL;
use deepseek_operator::controller::leader::Timing;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STATE_DIR: &str = "/tmp/deepseek-operator-scale";
const OPERATOR_NS: &str = "dso-scale-operator";
const OPERATOR_SA: &str = "deepseek-operator";
const T: Duration = Duration::from_secs(1800);

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn set_default(key: &str, value: &str) {
    if std::env::var_os(key).is_none() {
        std::env::set_var(key, value);
    }
}

/// (accelerator product or None for the example's own, example file): ten kinds, each a
/// tenth of the models, sized so that every kind can take a second group on its pool.
const KINDS: &[(Option<&str>, &str)] = &[
    (Some("h100-80gb"), "r1-fp8-h100-multinode.yaml"),
    (Some("h200"), "r1-autoscaled-h200.yaml"),
    (Some("mi300x"), "v3-fp8-mi300x.yaml"),
    (Some("ascend-910b"), "r1-int8-ascend.yaml"),
    (Some("l4"), "r1-distill-qwen-1.5b-l4.yaml"),
    (Some("l40s"), "r1-distill-qwen-7b-l4.yaml"),
    (Some("a100-80gb"), "r1-distill-llama-70b-nvidia.yaml"),
    (Some("h20"), "r1-distill-qwen-32b-h100.yaml"),
    (Some("a100-40gb"), "r1-distill-qwen-7b-l4.yaml"),
    (None, "r1-distill-7b-cpu-gguf.yaml"),
];

/// One process's resident and peak memory (MiB) and CPU seconds, from /proc.
struct ProcStat {
    rss: f64,
    hwm: f64,
    cpu: f64,
}

fn proc_stat(pid: u32, clk_tck: f64) -> Option<ProcStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ProcStat {
        rss: kib("VmRSS:")? / 1024.0,
        hwm: kib("VmHWM:")? / 1024.0,
        cpu: ticks / clk_tck,
    })
}

/// CPU seconds so far of the operator, of each cluster component (from the cluster's pid files), of this
/// process (the bench: model watch, leaders' metrics) and of the whole machine (busy, all
/// cores): the deltas over a phase say whose CPU bounds it on a shared 2-core machine.
fn cpu_breakdown(state_dir: &Path, operator: u32, clk_tck: f64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(s) = proc_stat(operator, clk_tck) {
        out.insert("operator".into(), s.cpu);
    }
    if let Ok(dir) = std::fs::read_dir(state_dir.join("pids")) {
        for entry in dir.flatten() {
            let path = entry.path();
            let Some(comp) = path.file_stem().and_then(|s| s.to_str()).map(String::from) else {
                continue;
            };
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(s) = pid.and_then(|p| proc_stat(p, clk_tck)) {
                out.insert(comp, s.cpu);
            }
        }
    }
    if let Some(s) = proc_stat(std::process::id(), clk_tck) {
        out.insert("bench".into(), s.cpu);
    }
    // First line of /proc/stat: user nice system idle iowait irq softirq steal, in ticks.
    let busy = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
        let f: Vec<f64> = t
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        (f.len() == 8).then(|| (f.iter().sum::<f64>() - f[3] - f[4]) / clk_tck)
    });
    if let Some(b) = busy {
        out.insert("machine (busy, all cores)".into(), b);
    }
    out
}

/// `after - before` per key, rounded to 0.1 s, for printing.
fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    after
        .iter()
        .map(|(k, v)| format!("{k} {:.1}", v - before.get(k).copied().unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Requests of `user` in the audit logs of `dir` received in `[from, to)`, by verb and by
/// verb + resource (each request once, whatever stages were logged).
fn audit_counts(
    dir: &Path,
    user: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<(BTreeMap<String, u64>, BTreeMap<String, u64>)> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut by_verb = BTreeMap::new();
    let mut by_resource = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("audit") && name.ends_with(".log")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["user"]["username"].as_str() != Some(user) {
                continue;
            }
            let Some(at) = v["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
            else {
                continue;
            };
            if at < from || at >= to {
                continue;
            }
            let id = v["auditID"].as_str().unwrap_or_default().to_string();
            if !seen.insert(id) {
                continue;
            }
            let verb = v["verb"].as_str().unwrap_or("?").to_string();
            let mut resource = v["objectRef"]["resource"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            if let Some(sub) = v["objectRef"]["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            *by_resource
                .entry(format!("{verb} {resource}"))
                .or_insert(0u64) += 1;
            *by_verb.entry(verb).or_insert(0u64) += 1;
        }
    }
    Ok((by_verb, by_resource))
}

const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// Writes to Leases in `by_resource` (keys "verb resource"): the leader's renewals.
fn lease_writes(by_resource: &BTreeMap<String, u64>) -> u64 {
    by_resource
        .iter()
        .filter(|(k, _)| {
            k.split_once(' ')
                .is_some_and(|(verb, res)| res == "leases" && WRITE_VERBS.contains(&verb))
        })
        .map(|(_, n)| n)
        .sum()
}

/// Serves a leader's `/metrics` on `ip`:8080 with the load of `model` in `loads`.
async fn serve_leader(ip: Ipv4Addr, model: String, loads: Arc<Mutex<HashMap<String, u32>>>) {
    let addr = SocketAddr::from((ip, deepseek_engine::LAUNCHER_PORT));
    let Ok(listener) = tokio::net::TcpListener::bind(addr).await else {
        eprintln!("could not bind {addr}");
        return;
    };
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let load = loads
            .lock()
            .ok()
            .and_then(|l| l.get(&model).copied())
            .unwrap_or(0);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let body = format!(
                "dso_queue_depth {load}\ndso_requests_running 0\ndso_ready 1\ndso_engine_up 1\ndso_metrics_age_seconds 0.1\n"
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// The operator's own ServiceAccount (cluster-admin: the bench measures load, not RBAC)
/// and a kubeconfig for it, so the audit log tells its requests from the bench's.
async fn operator_identity(cluster: &Cluster) -> Result<std::path::PathBuf> {
    let client = cluster.client();
    let pp = PostParams::default();
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": OPERATOR_NS}
    }))?;
    let _ = Api::<Namespace>::all(client.clone()).create(&pp, &ns).await;
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": OPERATOR_SA}
    }))?;
    let _ = Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NS)
        .create(&pp, &sa)
        .await;
    let crb = ClusterRoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("dso-scale-operator".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: OPERATOR_SA.into(),
            namespace: Some(OPERATOR_NS.into()),
            ..Default::default()
        }]),
    };
    let _ = Api::<ClusterRoleBinding>::all(client)
        .create(&pp, &crb)
        .await;
    let path = cluster.state_dir().join("scale-operator.kubeconfig");
    helm::service_account_kubeconfig(cluster, OPERATOR_NS, OPERATOR_SA, &path).await?;
    Ok(path)
}

fn model(i: usize) -> Result<DeepSeekModel> {
    let (product, file) = KINDS[i % KINDS.len()];
    let mut m = example(file)?;
    m.metadata.name = Some(
        format!("s{i:04}-{}", file.split('.').next().unwrap_or("m"))
            .chars()
            .take(40)
            .collect(),
    );
    if let Some(p) = product {
        m.spec.accelerator = Some(AcceleratorSelector {
            product: Some(p.into()),
            ..Default::default()
        });
    }
    m.spec.replicas = Some(1);
    let a: Autoscaling = serde_json::from_value(serde_json::json!({
        "minReplicas": 1, "maxReplicas": 2, "targetQueueDepth": 4
    }))?;
    m.spec.autoscaling = Some(a);
    Ok(m)
}

/// Runs the scenario; returns whether every goal was met.
async fn bench() -> Result<bool> {
    set_default("DSO_CLUSTER_DIR", STATE_DIR);
    set_default("DSO_TOPOLOGY", "large");
    set_default("DSO_TOPOLOGY_SCALE", "1.624");
    set_default("DSO_AUDIT", "all");
    // KWOK renews node leases at a quarter of their duration: at the kubelet's 40 s,
    // 5,000 nodes are 500 lease writes a second, which on 2 cores crowd out the API server
    // work under test (the first run got 70 nodes Ready a minute). The operator never
    // reads node leases, so a longer lease changes only the control plane's load.
    set_default("DSO_NODE_LEASE_SECONDS", "600");
    for (k, v) in [
        ("DSO_ETCD_PORT", "43379"),
        ("DSO_ETCD_PEER_PORT", "43380"),
        ("DSO_API_PORT", "47443"),
        ("DSO_KCM_PORT", "47257"),
        ("DSO_SCHEDULER_PORT", "47259"),
        ("DSO_KWOK_PORT", "47247"),
    ] {
        set_default(k, v);
    }
    let n_models: usize = env_or("DSO_BENCH_MODELS", 1000);
    let steady_s: u64 = env_or("DSO_BENCH_STEADY_SECONDS", 600);
    let storm: usize = env_or("DSO_BENCH_STORM", 100);
    let clk = clk_tck();
    println!(
        "scale bench, {}; operator reconcile concurrency {}",
        Timestamp::now(),
        std::env::var("DSO_RECONCILE_CONCURRENCY").unwrap_or_else(|_| "8 (default)".into())
    );

    let started = Instant::now();
    let bench_from = Timestamp::now();
    let load_start = goals::loadavg();
    let cluster = Cluster::ensure().await?;
    let audit_dir = cluster.state_dir().join("logs");
    anyhow::ensure!(
        audit_dir.join("audit.log").exists(),
        "no audit log: stop the cluster and run the bench with DSO_AUDIT=all"
    );
    let nodes: Api<Node> = Api::all(cluster.client());
    let node_count = nodes
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    println!(
        "cluster: {node_count} nodes, up in {:.0?}",
        started.elapsed()
    );
    install_crd(&cluster).await?;
    let kubeconfig = operator_identity(&cluster).await?;
    let user = format!("system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}");

    // The operator as the chart runs it: its replicas, leader election and lease.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository root")?
        .to_path_buf();
    let chart = ChartLeader::read(&root.join("charts/deepseek-operator/values.yaml"))?;
    let renew = Timing::from_seconds(chart.lease_seconds)
        .map_err(anyhow::Error::msg)?
        .retry;
    println!(
        "operator as the chart's defaults run it: {} replica(s), leader election {}, lease {} of {} s (renewed every {:.1} s: {:.0} Lease writes per 5 minutes, computed)",
        chart.replicas,
        if chart.enabled { "on" } else { "off" },
        chart.lease_name,
        chart.lease_seconds,
        renew.as_secs_f64(),
        if chart.enabled { 300.0 / renew.as_secs_f64() } else { 0.0 },
    );
    // The operator reads these from its environment (`deepseek-operator run --help`); a
    // child inherits this process's environment. POD_NAME is set per replica below.
    if chart.enabled {
        std::env::set_var("DSO_LEADER_ELECTION", "true");
        std::env::set_var("DSO_LEASE_NAMESPACE", OPERATOR_NS);
        std::env::set_var("DSO_LEASE_NAME", &chart.lease_name);
        std::env::set_var(
            "DSO_LEASE_DURATION_SECONDS",
            chart.lease_seconds.to_string(),
        );
    }
    let identity = |i: u32| format!("deepseek-operator-bench-{i}");
    let t0 = Instant::now();
    std::env::set_var("POD_NAME", identity(0));
    let mut op = Operator::start(
        &cluster,
        OperatorOptions {
            kubeconfig: Some(&kubeconfig),
            ..Default::default()
        },
    )
    .await?;
    // With leader election a replica is ready at once (a standby is healthy); the leader
    // has listed nodes, pods and children once it logs that it watches models.
    wait_for(
        Duration::from_secs(120),
        "the first replica leads and has listed the cluster",
        || {
            let log = op.log.clone();
            async move {
                Ok(std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("watching models")
                    .then_some(()))
            }
        },
    )
    .await?;
    println!(
        "operator ready (lease held, nodes and pods listed) in {:.2?}",
        t0.elapsed()
    );
    let mut standbys = Vec::new();
    for i in 1..chart.replicas.max(1) {
        std::env::set_var("POD_NAME", identity(i));
        standbys.push(
            Operator::start(
                &cluster,
                OperatorOptions {
                    kubeconfig: Some(&kubeconfig),
                    ..Default::default()
                },
            )
            .await?,
        );
    }
    if !standbys.is_empty() {
        println!("{} standby replica(s) started", standbys.len());
    }
    let pid = op.pid();
    // Peak RSS is the kernel's high-water mark (VmHWM); samples are for the steady figure.
    let s = proc_stat(pid, clk).context("operator /proc")?;
    println!(
        "operator at start: RSS {:.1} MiB, CPU {:.2} s",
        s.rss, s.cpu
    );

    let ns = cluster.namespace("scale").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();

    // Leaders' metrics, served here as their pods get IPs.
    let loads: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    {
        let pods = pods.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            let mut served: HashSet<Ipv4Addr> = HashSet::new();
            let cfg = watcher::Config::default().labels(&format!(
                "{SELECTOR_MANAGED},inference.deepseek-operator.dev/role=leader"
            ));
            let mut stream = std::pin::pin!(watcher(pods, cfg).default_backoff().applied_objects());
            while let Some(ev) = stream.next().await {
                let Ok(p) = ev else { continue };
                let ip = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|s| s.parse::<Ipv4Addr>().ok());
                let model = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/instance"))
                    .cloned();
                if let (Some(ip), Some(model)) = (ip, model) {
                    if ip.is_loopback() && served.insert(ip) {
                        tokio::spawn(serve_leader(ip, model, loads.clone()));
                    }
                }
            }
        });
    }

    // Per model: when its status first showed every group ready, or that it cannot be
    // planned; and when spec.replicas first exceeded 1 (the storm's decision).
    #[derive(Default)]
    struct Seen {
        ready_at: HashMap<String, Instant>,
        unplaceable: HashSet<String>,
        scaled_at: HashMap<String, Instant>,
    }
    let seen: Arc<Mutex<Seen>> = Arc::default();
    {
        let models = models.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(models, watcher::Config::default())
                .default_backoff()
                .applied_objects());
            while let Some(ev) = stream.next().await {
                let Ok(m) = ev else { continue };
                let Some(name) = m.metadata.name.clone() else {
                    continue;
                };
                let now = Instant::now();
                let st = m.status.clone().unwrap_or_default();
                let Ok(mut s) = seen.lock() else { return };
                let planned = condition(&m, "Planned").map(|c| c.0);
                if planned.as_deref() == Some("False") {
                    s.unplaceable.insert(name.clone());
                } else if planned.as_deref() == Some("True") {
                    s.unplaceable.remove(&name);
                }
                let want = m.spec.replicas.unwrap_or(1);
                if st.ready_replicas >= want && want > 0 {
                    s.ready_at.entry(name.clone()).or_insert(now);
                }
                if want > 1 {
                    s.scaled_at.entry(name).or_insert(now);
                }
            }
        });
    }

    // Phase 1: every model at once.
    let cpu_before = cpu_breakdown(cluster.state_dir(), pid, clk);
    let apply_from = Timestamp::now();
    let t1 = Instant::now();
    let all: Vec<DeepSeekModel> = (0..n_models).map(model).collect::<Result<_>>()?;
    let names: Vec<String> = all.iter().filter_map(|m| m.metadata.name.clone()).collect();
    let mut set = tokio::task::JoinSet::new();
    for m in all {
        let api = models.clone();
        set.spawn(async move { apply_model(&api, &m).await.map(|_| ()) });
        if set.len() >= 32 {
            if let Some(r) = set.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    println!("{n_models} models applied in {:.1?}", t1.elapsed());
    let converge_limit = Duration::from_secs(env_or("DSO_BENCH_CONVERGE_SECONDS", T.as_secs()));
    let settled = wait_for(converge_limit, "every placeable model ready", || {
        let seen = seen.clone();
        let names = names.clone();
        async move {
            let s = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            let open = names
                .iter()
                .filter(|n| !s.ready_at.contains_key(*n) && !s.unplaceable.contains(*n))
                .count();
            Ok((open == 0).then_some(()))
        }
    })
    .await;
    let converge = t1.elapsed();
    let converged_to = Timestamp::now();
    let (ready_times, unplaceable): (Vec<f64>, usize) = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let mut v: Vec<f64> = s
            .ready_at
            .values()
            .map(|t| t.duration_since(t1).as_secs_f64())
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        (v, s.unplaceable.len())
    };
    let pod_count = pods
        .list_metadata(&ListParams::default().labels(SELECTOR_MANAGED))
        .await?
        .items
        .len();
    println!(
        "converged: {} ready models ({} unplaceable), {pod_count} pods, total {:.1?}{}; per model p50 {:.1} s, p95 {:.1} s",
        ready_times.len(),
        unplaceable,
        converge,
        if settled.is_err() { " (DEADLINE PASSED)" } else { "" },
        pct(&ready_times, 50.0),
        pct(&ready_times, 95.0),
    );
    let s = proc_stat(pid, clk).context("operator /proc")?;
    println!(
        "operator after convergence: RSS {:.1} MiB, peak {:.1} MiB, CPU {:.1} s",
        s.rss, s.hwm, s.cpu
    );
    println!(
        "CPU seconds while converging ({:.1} s wall, {} cores): {}",
        converge.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_delta(&cpu_before, &cpu_breakdown(cluster.state_dir(), pid, clk))
    );
    let (converge_verbs, converge_resources) =
        audit_counts(&audit_dir, &user, apply_from, converged_to)?;
    println!("operator API requests while converging, by verb: {converge_verbs:?}");
    println!("  by verb and resource: {converge_resources:?}");
    let converge_rss = (s.rss, s.hwm);

    // Phase 2: steady state. Let in-flight work finish first (the autoscaler's first
    // complete readings flip MetricsAvailable), then count.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let cpu0 = proc_stat(pid, clk).map(|s| s.cpu).unwrap_or(0.0);
    let steady_from = Timestamp::now();
    let mut rss_samples = Vec::new();
    let steady_end = Instant::now() + Duration::from_secs(steady_s);
    while Instant::now() < steady_end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if let Some(s) = proc_stat(pid, clk) {
            rss_samples.push(s.rss);
        }
    }
    let steady_to = Timestamp::now();
    let s = proc_stat(pid, clk).context("operator /proc")?;
    rss_samples.sort_by(|a, b| a.total_cmp(b));
    let (verbs, resources) = audit_counts(&audit_dir, &user, steady_from, steady_to)?;
    let writes: u64 = verbs
        .iter()
        .filter(|(v, _)| WRITE_VERBS.contains(&v.as_str()))
        .map(|(_, n)| n)
        .sum();
    let lease_writes = lease_writes(&resources);
    let window_s = (steady_to.as_millisecond() - steady_from.as_millisecond()) as f64 / 1000.0;
    // One renewal per period, plus one for a window that starts just after a renewal.
    let lease_allowed = if chart.enabled {
        (window_s / renew.as_secs_f64()).ceil() as u64 + 1
    } else {
        0
    };
    println!(
        "steady state {window_s:.0} s: {writes} writes, of them {lease_writes} to the leader Lease ({:.0} per 5 minutes; {:.0} computed from the renew period); requests by verb {verbs:?}; {resources:?}",
        lease_writes as f64 * 300.0 / window_s.max(1.0),
        if chart.enabled { 300.0 / renew.as_secs_f64() } else { 0.0 },
    );
    println!(
        "steady RSS median {:.1} MiB (max {:.1}), peak so far {:.1} MiB; CPU {:.1} s in the window",
        pct(&rss_samples, 50.0),
        pct(&rss_samples, 100.0),
        s.hwm,
        s.cpu - cpu0
    );

    // Phase 3: the storm. Models whose group is ready, spread over the kinds.
    let candidates: Vec<String> = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        names
            .iter()
            .filter(|n| s.ready_at.contains_key(*n))
            .take(storm)
            .cloned()
            .collect()
    };
    let storm_from = Timestamp::now();
    let t3 = Instant::now();
    if let Ok(mut l) = loads.lock() {
        for n in &candidates {
            l.insert(n.clone(), 40);
        }
    }
    let decided = wait_for(
        Duration::from_secs(300),
        "every stormed model scaled",
        || {
            let seen = seen.clone();
            let candidates = candidates.clone();
            async move {
                let s = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                Ok(candidates
                    .iter()
                    .all(|n| s.scaled_at.contains_key(n))
                    .then_some(()))
            }
        },
    )
    .await;
    let mut lat: Vec<f64> = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        candidates
            .iter()
            .filter_map(|n| s.scaled_at.get(n))
            .map(|t| t.saturating_duration_since(t3).as_secs_f64())
            .collect()
    };
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "storm (autoscaling interval {} s, the default): {} of {} models decided{}; decision latency p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        DEFAULT_INTERVAL.as_secs(),
        lat.len(),
        candidates.len(),
        if decided.is_err() {
            " (DEADLINE PASSED)"
        } else {
            ""
        },
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        pct(&lat, 100.0),
    );
    let end = proc_stat(pid, clk).context("operator /proc")?;
    let (storm_verbs, _) = audit_counts(&audit_dir, &user, storm_from, Timestamp::now())?;
    println!("storm requests by verb: {storm_verbs:?}");
    println!(
        "operator at the end: RSS {:.1} MiB, peak {:.1} MiB, CPU {:.1} s in all",
        end.rss, end.hwm, end.cpu
    );
    let mut running = op.running();
    for sb in &mut standbys {
        running &= sb.running();
    }
    println!(
        "every replica still running (none lost its lease): {}",
        if running { "yes" } else { "NO" }
    );
    println!("total bench time {:.0?}", started.elapsed());

    let figures = goals::Figures {
        converge_s: converge.as_secs_f64(),
        converged: settled.is_ok(),
        peak_rss_mib: end.hwm,
        steady_writes: writes,
        steady_lease_writes: lease_writes,
        lease_writes_allowed: lease_allowed,
        storm_decided: lat.len(),
        storm_models: candidates.len(),
        storm_p99_s: pct(&lat, 99.0),
    };
    let verdicts = goals::judge(&figures);
    let all_pass = goals::print(&verdicts);
    let results = std::env::var_os("DSO_BENCH_RESULTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("docs/benchmarks/scale-results.jsonl"));
    // NaN (no samples) is not JSON: such a figure is written as null.
    let num = |v: f64| (v.is_finite()).then(|| (v * 100.0).round() / 100.0);
    let line = serde_json::json!({
        "date": bench_from.to_string(),
        "commit": goals::commit(&root),
        "loadavg_start": load_start,
        "loadavg_end": goals::loadavg(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "params": {
            "nodes": node_count,
            "topology_scale": std::env::var("DSO_TOPOLOGY_SCALE").ok(),
            "models": n_models,
            "steady_seconds": steady_s,
            "storm": storm,
            "autoscaling_interval_s": DEFAULT_INTERVAL.as_secs(),
            "node_lease_seconds": std::env::var("DSO_NODE_LEASE_SECONDS").ok(),
            "reconcile_concurrency": std::env::var("DSO_RECONCILE_CONCURRENCY").ok(),
            "replicas": chart.replicas,
            "leader_election": chart.enabled,
            "lease_seconds": chart.lease_seconds,
            "lease_renew_s": renew.as_secs_f64(),
            "release_build": !cfg!(debug_assertions),
        },
        "converge": {
            "total_s": num(converge.as_secs_f64()),
            "complete": settled.is_ok(),
            "ready_models": ready_times.len(),
            "unplaceable": unplaceable,
            "pods": pod_count,
            "p50_s": num(pct(&ready_times, 50.0)),
            "p95_s": num(pct(&ready_times, 95.0)),
            "requests_by_verb": converge_verbs,
            "requests_by_resource": converge_resources,
            "rss_mib": num(converge_rss.0),
            "peak_rss_mib": num(converge_rss.1),
        },
        "steady": {
            "window_s": num(window_s),
            "writes": writes,
            "lease_writes": lease_writes,
            "lease_writes_allowed": lease_allowed,
            "lease_writes_per_5min": num(lease_writes as f64 * 300.0 / window_s.max(1.0)),
            "requests_by_resource": resources,
            "rss_median_mib": num(pct(&rss_samples, 50.0)),
            "rss_max_mib": num(pct(&rss_samples, 100.0)),
        },
        "storm": {
            "models": candidates.len(),
            "decided": lat.len(),
            "p50_s": num(pct(&lat, 50.0)),
            "p99_s": num(pct(&lat, 99.0)),
            "max_s": num(pct(&lat, 100.0)),
            "requests_by_verb": storm_verbs,
        },
        "operator_end": {"rss_mib": num(end.rss), "peak_rss_mib": num(end.hwm), "cpu_s": num(end.cpu)},
        "replicas_running_at_end": running,
        "goals": verdicts.iter().map(|v| serde_json::json!({
            "goal": v.goal, "value": v.value, "pass": v.pass
        })).collect::<Vec<_>>(),
        "all_goals_met": all_pass,
    });
    goals::append(&results, &line)?;
    println!("results appended to {}", results.display());
    drop(standbys);
    drop(op);
    Ok(all_pass)
}

fn main() -> Result<()> {
    // `cargo test --benches` passes test-harness flags; only `cargo bench` runs the scenario.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("scale: run with `cargo bench -p deepseek-operator --bench scale`");
        return Ok(());
    }
    let check = args.iter().any(|a| a == "--check")
        || std::env::var("DSO_BENCH_CHECK").is_ok_and(|v| v == "1");
    let all_pass = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())?;
    if check && !all_pass {
        anyhow::bail!("a goal was missed (see the FAIL lines above)");
    }
    Ok(())
}

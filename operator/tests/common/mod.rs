//! Shared by the operator's end-to-end suites: the operator as a real child process
//! against the local control plane, its metrics, and manifests from examples/.
#![allow(dead_code)] // each suite uses a different part

pub mod crash_loop;
pub mod front_client;
pub mod helm;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use std::net::Ipv4Addr;

/// One test at a time per binary: the suites share the cluster's accelerator nodes.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const SELECTOR_MANAGED: &str = "app.kubernetes.io/managed-by=deepseek-operator";

/// `DSO_REAL_POD_CIDR` (e2e/lib/real-nodes.sh's default when unset): the real nodes' bridge.
pub fn real_pod_range() -> Result<(Ipv4Addr, u32)> {
    let cidr = std::env::var("DSO_REAL_POD_CIDR").unwrap_or_else(|_| "198.18.0.0/16".into());
    let (net, len) = cidr
        .split_once('/')
        .with_context(|| format!("DSO_REAL_POD_CIDR={cidr} is not a CIDR"))?;
    let net: Ipv4Addr = net
        .parse()
        .with_context(|| format!("DSO_REAL_POD_CIDR={cidr}"))?;
    let len: u32 = len
        .parse()
        .with_context(|| format!("DSO_REAL_POD_CIDR={cidr}"))?;
    ensure!(
        (8..=24).contains(&len),
        "DSO_REAL_POD_CIDR={cidr}: prefix out of range"
    );
    Ok((net, len))
}

/// Refuses an address a test must not dial: anything but loopback and the real nodes'
/// bridge, whose addresses exist only on this machine (e2e/README.md, "Real nodes").
pub fn ensure_dialable(ip: std::net::Ipv4Addr) -> Result<()> {
    if ip.is_loopback() {
        return Ok(());
    }
    let (net, len) = real_pod_range()?;
    let mask = u32::MAX << (32 - len);
    anyhow::ensure!(
        u32::from(ip) & mask == u32::from(net) & mask,
        "refusing to dial {ip}: neither loopback nor the real nodes' bridge {net}/{len}"
    );
    Ok(())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs (or updates) the CRD with server-side apply, and waits until it is served.
pub async fn install_crd(cluster: &Cluster) -> Result<()> {
    let crd = repo_root().join("crds");
    let out = cluster
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&crd)
        .output()
        .context("running kubectl apply")?;
    if !out.status.success() {
        return Err(anyhow!(
            "kubectl apply of crds/ failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let api: Api<DeepSeekModel> = Api::all(cluster.client());
    wait_served(
        &api,
        Duration::from_secs(30),
        "the DeepSeekModel CRD is served",
    )
    .await
}

/// Waits until a freshly installed CRD's API answers a list.
async fn wait_served<K>(api: &Api<K>, timeout: Duration, what: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(timeout, what, || async {
        Ok(api
            .list(&ListParams::default().limit(1))
            .await
            .ok()
            .map(|_| ()))
    })
    .await
}

/// The operator binary running as a child process.
pub struct Operator {
    child: Child,
    pub metrics_addr: String,
    pub log: PathBuf,
}

#[derive(Default)]
pub struct OperatorOptions<'a> {
    pub leader_election: Option<(&'a str, &'a str)>, // (lease namespace, identity)
    pub kubeconfig: Option<&'a Path>,
    pub config_file: Option<&'a Path>,
    /// `--namespaces` (namespaced mode), comma-separated.
    pub namespaces: Option<&'a str>,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Operator {
    pub async fn start(cluster: &Cluster, opts: OperatorOptions<'_>) -> Result<Operator> {
        let port = free_port()?;
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = cluster
            .state_dir()
            .join("logs")
            .join(format!("operator-{port}.log"));
        std::fs::create_dir_all(log.parent().unwrap_or(Path::new("/tmp")))?;
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deepseek-operator"));
        cmd.args(["run", "--metrics-bind", &metrics_addr])
            .env(
                "KUBECONFIG",
                opts.kubeconfig.unwrap_or(cluster.kubeconfig()),
            )
            .env(
                "RUST_LOG",
                std::env::var("DSO_OPERATOR_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if let Some((ns, id)) = opts.leader_election {
            cmd.args([
                "--leader-election",
                "--lease-namespace",
                ns,
                "--identity",
                id,
                "--lease-duration-seconds",
                "6",
            ]);
        }
        match opts.config_file {
            Some(cfg) => {
                cmd.arg("--config").arg(cfg);
            }
            // AMD examples run as root (no amdRenderGroups on simulated nodes) with the
            // node cache, which the operator refuses unless the administrator opts in:
            // the suites opt in, as they ran before; the refusal has its own tests
            // (placement and validate unit tests).
            None => {
                let cfg = log.with_extension("config.yaml");
                std::fs::write(&cfg, "allowRootHostPathCache: true\n")?;
                cmd.arg("--config").arg(cfg);
            }
        }
        if let Some(ns) = opts.namespaces {
            cmd.arg("--namespaces").arg(ns);
        }
        let child = cmd.spawn().context("starting deepseek-operator")?;
        let op = Operator {
            child,
            metrics_addr,
            log,
        };
        let url = format!("http://{}/readyz", op.metrics_addr);
        let log_path = op.log.clone();
        wait_for(
            Duration::from_secs(60),
            &format!("the operator is ready (log {})", log_path.display()),
            || {
                let url = url.clone();
                async move {
                    Ok(reqwest::get(&url)
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ()))
                }
            },
        )
        .await?;
        Ok(op)
    }

    pub async fn metrics(&self) -> Result<String> {
        Ok(
            reqwest::get(format!("http://{}/metrics", self.metrics_addr))
                .await?
                .text()
                .await?,
        )
    }

    /// Sum of a counter family in the operator's metrics.
    pub async fn counter(&self, name: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Whether the process is still running (not exited, not restarted).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status once the process has ended by itself.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up, as in a node failure.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the operator with `config` (YAML text) as its configuration file, written under
/// the cluster's state dir as `<run>-operator.yaml`.
pub async fn operator_with_config(
    cluster: &Cluster,
    run: &str,
    config: &str,
    leader_election: Option<(&str, &str)>,
) -> Result<Operator> {
    let path = cluster.state_dir().join(format!("{run}-operator.yaml"));
    std::fs::write(&path, config)?;
    Operator::start(
        cluster,
        OperatorOptions {
            config_file: Some(&path),
            leader_election,
            ..Default::default()
        },
    )
    .await
}

/// The uids of some pods: a recreated pod has a new one.
pub fn uids(pods: &[Pod]) -> std::collections::BTreeSet<String> {
    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect()
}

/// Reads an example manifest.
pub fn example(file: &str) -> Result<DeepSeekModel> {
    let text = std::fs::read_to_string(repo_root().join("examples").join(file))?;
    Ok(serde_yaml::from_str(&text)?)
}

/// Applies a model into `ns` with server-side apply, as a user would.
pub async fn apply_model(api: &Api<DeepSeekModel>, model: &DeepSeekModel) -> Result<DeepSeekModel> {
    let name = model
        .metadata
        .name
        .clone()
        .ok_or_else(|| anyhow!("model has no name"))?;
    let mut m = model.clone();
    m.metadata.namespace = None;
    m.metadata.managed_fields = None;
    m.metadata.resource_version = None;
    Ok(api
        .patch(
            &name,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&m),
        )
        .await?)
}

/// Pods of a model.
pub async fn model_pods(api: &Api<Pod>, model: &str) -> Result<Vec<Pod>> {
    Ok(api
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={model},{SELECTOR_MANAGED}"
        )))
        .await?
        .items)
}

pub fn is_running_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    st.and_then(|s| s.phase.as_deref()) == Some("Running")
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the model has `groups` ready groups of `per_group` Running pods, all at one
/// template hash, and returns them.
pub async fn wait_groups(
    api: &Api<Pod>,
    model: &str,
    groups: usize,
    per_group: usize,
    timeout: Duration,
) -> Result<Vec<Pod>> {
    wait_for(
        timeout,
        &format!("{model} has {groups} ready group(s) of {per_group} pod(s)"),
        || async {
            let pods = model_pods(api, model).await?;
            let live: Vec<Pod> = pods
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ids = group_ids(&live);
            let ok = ids.len() == groups
                && live.len() == groups * per_group
                && live.iter().all(is_running_ready);
            Ok(ok.then_some(live))
        },
    )
    .await
}

pub fn condition(m: &DeepSeekModel, type_: &str) -> Option<(String, String, String)> {
    m.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until condition `type_` of the model has `status`, returning its (reason, message).
pub async fn wait_condition(
    api: &Api<DeepSeekModel>,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> Result<(String, String)> {
    wait_for(timeout, &format!("{name} has {type_}={status}"), || async {
        let m = api.get(name).await?;
        Ok(condition(&m, type_)
            .filter(|(s, _, _)| s == status)
            .map(|(_, r, msg)| (r, msg)))
    })
    .await
}

/// IPs of the Running+Ready pods a Service selects, resolved by hand (KWOK's loopback pod
/// IPs never reach EndpointSlices). Only loopback addresses are returned.
pub async fn service_pod_ips(
    client: &kube::Client,
    ns: &str,
    service: &str,
) -> Result<Vec<std::net::Ipv4Addr>> {
    let svc: k8s_openapi::api::core::v1::Service =
        Api::namespaced(client.clone(), ns).get(service).await?;
    let selector = svc
        .spec
        .and_then(|s| s.selector)
        .ok_or_else(|| anyhow!("service {service} has no selector"))?;
    let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&sel.join(",")))
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_running_ready(p))
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        .filter(|ip: &std::net::Ipv4Addr| ip.is_loopback())
        .collect())
}

/// A metric of a launcher's normalised `/metrics` (port 8080) at a loopback pod IP.
pub async fn launcher_metric(ip: std::net::Ipv4Addr, name: &str) -> Result<Option<f64>> {
    anyhow::ensure!(ip.is_loopback(), "refusing to dial {ip}: not loopback");
    let text = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()?
        .get(format!("http://{ip}:8080/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok()))
}

/// Builds (once) and returns the launcher binary, off the async runtime.
pub async fn launcher() -> Result<PathBuf> {
    tokio::task::spawn_blocking(deepseek_e2e::sim::launcher_binary).await?
}

/// `e2e/keda-crds install scaledobjects` against the cluster: KEDA's ScaledObject CRD,
/// Established.
pub async fn install_keda_crds(cluster: &Cluster) -> Result<()> {
    let mut cmd = std::process::Command::new(repo_root().join("e2e").join("keda-crds"));
    cmd.args(["install", "scaledobjects"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("PATH", cluster.path_env());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("running e2e/keda-crds")?;
    anyhow::ensure!(
        out.status.success(),
        "e2e/keda-crds install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        cluster.client(),
        &deepseek_operator::desired::keda::api_resource(),
    );
    wait_served(
        &api,
        Duration::from_secs(120),
        "KEDA's ScaledObject API is served",
    )
    .await
}

/// The distinct groups (group-id labels) the pods belong to.
pub fn group_ids(pods: &[Pod]) -> std::collections::BTreeSet<String> {
    pods.iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get(deepseek_operator::desired::labels::GROUP_ID)
                .cloned()
        })
        .collect()
}

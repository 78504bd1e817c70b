//! Router pods of prefill/decode models: with [`SimOptions::router`] the [`SimFleet`]
//! also runs the real `sglang-router` for every pod of its namespace whose container
//! [`ROUTER_CONTAINER`] runs [`ROUTER_PROGRAM`], so a test exercises the whole path the
//! controller builds (router -> prefill leader -> decode leader) without GPUs.
//!
//! The router gets the pod's own argv (`command` + `args`; `command` may hold the whole
//! argv), with every `0.0.0.0` replaced by the pod's 127.x IP, since on this machine all
//! simulated pods share one network namespace. Its Kubernetes service discovery talks to
//! the local API server as the pod's ServiceAccount would: the fleet asks the TokenRequest
//! API for a token of `spec.serviceAccountName` bound to the pod (as a kubelet does for a
//! projected token) and writes a kubeconfig with that token and the local API server's
//! address and CA, taken from the cluster kubeconfig given to [`SimOptions::router`]. So
//! the Role the controller binds to that ServiceAccount is what lets the router list and
//! watch pods; a missing permission fails the test as it would fail a real cluster. Only a
//! loopback API server is accepted.
//!
//! Readiness (with [`SimOptions::probe_readiness`], like launcher pods): the router pod is
//! Ready when the router answers the path of the container's `readinessProbe.httpGet` on
//! its `--port`, or [`ROUTER_DEFAULT_PROBE_PATH`] when the pod declares no probe. The
//! pinned router (0.3.2) answers `/liveness` and `/health` with 200 as soon as it listens,
//! and `/readiness` with 503 until it has a healthy worker of each role.
//!
//! The token is requested once per router start and lives an hour (a kubelet renews it;
//! no test runs that long). A router stops when its pod goes away or changes IP; one that exits by itself is
//! started again after a second. Its log and kubeconfig are written to the options'
//! `log_dir` (`router-<pod>.log`, `router-<pod>.kubeconfig`).
//!
//! [`SimFleet`]: crate::sim::SimFleet

use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use deepseek_engine::pd::ROUTER_PORT;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, Client, ResourceExt};

use crate::sim::{eligible, Proc, Shared, SimOptions, RESTART_BACKOFF};

/// Name of the container that runs the router in a router pod.
pub const ROUTER_CONTAINER: &str = "router";
/// The program a router container runs (its argv's first element, or that file's name).
pub const ROUTER_PROGRAM: &str = "sglang-router";
/// What the fleet probes when a router pod declares no `readinessProbe.httpGet`.
pub const ROUTER_DEFAULT_PROBE_PATH: &str = "/liveness";
/// Lifetime of the tokens the fleet requests (a kubelet asks for about an hour too).
const TOKEN_SECONDS: i64 = 3600;

/// How the fleet runs router pods.
#[derive(Clone, Debug)]
pub struct RouterOptions {
    /// The pinned `sglang-router` (see [`router_binary`]).
    pub binary: PathBuf,
    /// A kubeconfig whose current context names the local API server and its CA.
    pub cluster_kubeconfig: PathBuf,
}

/// The pinned router that `engine/conformance/run` installs: `$DSO_SGLANG_ROUTER`
/// (`scripts/test` sets it).
pub fn router_binary() -> Result<PathBuf> {
    let path = std::env::var_os("DSO_SGLANG_ROUTER").map(PathBuf::from).ok_or_else(|| {
        anyhow!("DSO_SGLANG_ROUTER must name the pinned sglang-router (engine/conformance/run installs it; scripts/test sets it)")
    })?;
    if !path.exists() {
        bail!(
            "DSO_SGLANG_ROUTER names {}, which does not exist",
            path.display()
        );
    }
    Ok(path)
}

/// The router's arguments (its argv after the program) if `pod` is a router pod.
pub fn router_args(pod: &Pod) -> Option<Vec<String>> {
    let c = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == ROUTER_CONTAINER)?;
    let mut argv = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    let program = argv.first()?;
    let name = Path::new(program).file_name()?.to_str()?;
    (name == ROUTER_PROGRAM).then(|| argv.split_off(1))
}

/// The arguments with every all-interfaces address replaced by the pod's own IP.
fn bound_to(args: &[String], ip: Ipv4Addr) -> Vec<String> {
    args.iter()
        .map(|a| match a.as_str() {
            "0.0.0.0" | "::" => ip.to_string(),
            _ => a.clone(),
        })
        .collect()
}

/// The port the router serves on (`--port`), the pinned default's port otherwise.
fn listen_port(args: &[String]) -> u16 {
    args.iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(ROUTER_PORT)
}

/// The path a kubelet would probe for the router's readiness.
fn probe_path(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == ROUTER_CONTAINER))
        .and_then(|c| c.readiness_probe.as_ref()?.http_get.as_ref()?.path.clone())
        .unwrap_or_else(|| ROUTER_DEFAULT_PROBE_PATH.to_string())
}

/// The URL the fleet probes for a router pod served at `ip`.
pub(crate) fn probe_url(pod: &Pod, ip: Ipv4Addr) -> String {
    let port = router_args(pod).map_or(ROUTER_PORT, |a| listen_port(&a));
    format!("http://{ip}:{port}{}", probe_path(pod))
}

/// A router to start: which pod, where, and as whom.
struct RouterLaunch {
    uid: String,
    pod: String,
    ip: Ipv4Addr,
    args: Vec<String>,
    service_account: String,
}

fn plan(pod: &Pod) -> Option<RouterLaunch> {
    let ip = eligible(pod)?;
    let args = router_args(pod)?;
    let uid = pod.uid()?;
    Some(RouterLaunch {
        uid,
        pod: pod.name_any(),
        ip,
        args: bound_to(&args, ip),
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
    })
}

/// A token of the pod's ServiceAccount, bound to the pod (invalid once it is deleted).
async fn pod_token(client: &Client, namespace: &str, l: &RouterLaunch) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(l.pod.clone()),
                uid: Some(l.uid.clone()),
            }),
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(&l.service_account, &PostParams::default(), &request)
        .await
        .with_context(|| {
            format!(
                "requesting a token of ServiceAccount {namespace}/{} for router pod {}",
                l.service_account, l.pod
            )
        })?;
    issued
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("the API server issued no token for {}", l.service_account))
}

/// A kubeconfig naming the cluster of `cluster_kubeconfig`'s current context, with
/// `token` as the only credential.
pub fn token_kubeconfig(
    cluster_kubeconfig: &Path,
    token: &str,
    namespace: &str,
) -> Result<serde_json::Value> {
    let kc = Kubeconfig::read_from(cluster_kubeconfig)
        .with_context(|| format!("reading {}", cluster_kubeconfig.display()))?;
    let context = kc
        .current_context
        .as_deref()
        .and_then(|name| kc.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| anyhow!("{} has no current context", cluster_kubeconfig.display()))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            anyhow!(
                "{} names no cluster {}",
                cluster_kubeconfig.display(),
                context.cluster
            )
        })?;
    let server = cluster.server.clone().unwrap_or_default();
    let host = server
        .strip_prefix("https://")
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap_or_default();
    if !host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback()) {
        bail!("the API server {server:?} is not on loopback: routers may only dial 127.0.0.0/8");
    }
    let mut entry = serde_json::json!({"server": server});
    match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => entry["certificate-authority-data"] = data.clone().into(),
        (None, Some(file)) => entry["certificate-authority"] = file.clone().into(),
        (None, None) => bail!("{} gives no CA for {server}", cluster_kubeconfig.display()),
    }
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": entry}],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod", "namespace": namespace}}],
        "current-context": "pod",
    }))
}

/// Writes the router's kubeconfig (owner-only: it holds a token) and starts the router.
fn spawn(
    opts: &SimOptions,
    router: &RouterOptions,
    l: &RouterLaunch,
    kubeconfig: &serde_json::Value,
) -> Result<Child> {
    std::fs::create_dir_all(&opts.log_dir)?;
    let kc_path = opts.log_dir.join(format!("router-{}.kubeconfig", l.pod));
    let mut kc_file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&kc_path)
        .with_context(|| format!("writing {}", kc_path.display()))?;
    kc_file.write_all(kubeconfig.to_string().as_bytes())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.log_dir.join(format!("router-{}.log", l.pod)))?;
    let mut cmd = Command::new(&router.binary);
    cmd.args(&l.args)
        .env("KUBECONFIG", &kc_path)
        // The in-cluster configuration must not be what the router's client finds.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    // A proxy from the test's environment would take the router's requests off loopback.
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {}", router.binary.display()))
}

/// Starts a router for every router pod that runs, and stops those whose pod went.
pub(crate) async fn sync(
    client: &Client,
    namespace: &str,
    shared: &Mutex<Shared>,
    opts: &SimOptions,
    router: &RouterOptions,
    pods: &[Pod],
) {
    let wanted: HashMap<String, RouterLaunch> = pods
        .iter()
        .filter_map(plan)
        .map(|l| (l.uid.clone(), l))
        .collect();
    let to_start: Vec<&RouterLaunch> = {
        let Ok(mut s) = shared.lock() else { return };
        if s.paused {
            return;
        }
        let uids: Vec<String> = s.routers.keys().cloned().collect();
        for uid in uids {
            let gone = wanted
                .get(&uid)
                .is_none_or(|l| s.routers.get(&uid).is_some_and(|p| p.ip != l.ip));
            let exited = s
                .routers
                .get_mut(&uid)
                .is_some_and(|p| matches!(p.child.try_wait(), Ok(Some(_))));
            if gone || exited {
                if let Some(mut p) = s.routers.remove(&uid) {
                    if exited {
                        eprintln!("deepseek-e2e sim: router of pod {} exited", p.pod);
                        s.router_exited.insert(uid.clone(), Instant::now());
                    }
                    p.kill();
                }
            }
        }
        s.router_exited.retain(|uid, _| wanted.contains_key(uid));
        wanted
            .values()
            .filter(|l| !s.routers.contains_key(&l.uid))
            .filter(|l| {
                s.router_exited
                    .get(&l.uid)
                    .is_none_or(|t| t.elapsed() >= RESTART_BACKOFF)
            })
            .collect()
    };
    for l in to_start {
        let started = async {
            let token = pod_token(client, namespace, l).await?;
            let kubeconfig = token_kubeconfig(&router.cluster_kubeconfig, &token, namespace)?;
            spawn(opts, router, l, &kubeconfig)
        }
        .await;
        let Ok(mut s) = shared.lock() else { return };
        match started {
            Ok(child) if !s.paused => {
                s.routers_started_total += 1;
                s.routers.insert(
                    l.uid.clone(),
                    Proc {
                        child,
                        pod: l.pod.clone(),
                        ip: l.ip,
                    },
                );
            }
            Ok(child) => Proc {
                child,
                pod: l.pod.clone(),
                ip: l.ip,
            }
            .kill(),
            Err(e) => {
                eprintln!("deepseek-e2e sim: {e:#}");
                s.router_exited.insert(l.uid.clone(), Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router_pod(command: &[&str], args: &[&str], probe: Option<&str>) -> Pod {
        let probe = probe.map(|p| serde_json::json!({"httpGet": {"path": p, "port": 8000}}));
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m--router-abc", "uid": "uid-r"},
            "spec": {"serviceAccountName": "m-router", "containers": [
                {"name": "router", "command": command, "args": args, "readinessProbe": probe}]},
            "status": {"phase": "Running", "podIP": "127.1.0.9"}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn router_pods_are_found_by_container_and_program_and_bound_to_their_ip() {
        let split = router_pod(
            &["sglang-router"],
            &["launch", "--host", "0.0.0.0", "--port", "8100"],
            None,
        );
        let whole = router_pod(
            &[
                "/usr/local/bin/sglang-router",
                "launch",
                "--host",
                "0.0.0.0",
            ],
            &[],
            Some("/readiness"),
        );
        let other = router_pod(&["python3"], &["-m", "http.server"], None);
        assert_eq!(
            router_args(&whole),
            Some(vec!["launch".into(), "--host".into(), "0.0.0.0".into()])
        );
        assert_eq!(router_args(&other), None);
        let l = plan(&split).unwrap_or_else(|| panic!("a running router pod is planned"));
        assert_eq!(l.args, ["launch", "--host", "127.1.0.9", "--port", "8100"]);
        assert_eq!(l.service_account, "m-router");
        let ip = Ipv4Addr::new(127, 1, 0, 9);
        assert_eq!(probe_url(&split, ip), "http://127.1.0.9:8100/liveness");
        assert_eq!(probe_url(&whole, ip), "http://127.1.0.9:8000/readiness");
    }

    #[test]
    fn the_kubeconfig_carries_only_the_token_and_refuses_a_remote_server() {
        let dir = std::env::temp_dir().join(format!("sim-router-kc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let write = |name: &str, server: &str| {
            let path = dir.join(name);
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: Q0E=\nusers:\n- name: admin\n  user:\n    client-certificate-data: Y2VydA==\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: admin\ncurrent-context: x\n"
            );
            let _ = std::fs::write(&path, text);
            path
        };
        let local = write("local", "https://127.0.0.1:6443");
        let kc = token_kubeconfig(&local, "tok", "ns").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(kc["users"][0]["user"], serde_json::json!({"token": "tok"}));
        assert_eq!(
            kc["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(kc["contexts"][0]["context"]["namespace"], "ns");
        // A documentation address: never dialled, only refused.
        let remote = write("remote", "https://192.0.2.1:6443");
        assert!(token_kubeconfig(&remote, "tok", "ns").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The helpers `scripts/demo` needs beyond `kubectl`: simulated engines for the demo's
//! namespaces, a streamed chat printed as it arrives, a load step, and extra KWOK nodes.
//!
//! KWOK pods run nothing and loopback pod IPs never reach a Service's endpoints, so the
//! demo cannot use `kubectl port-forward` or a ClusterIP: `fleet` runs the real launcher
//! with the sim engine for every operator pod (crate::sim::SimFleet), and `chat`/`load`
//! take the operator's Service path by hand: the Service's selector, its ready pods, their
//! IPs and the Service's target port. Pod IPs are dialled only on loopback (KWOK's 127.x)
//! or in the pod range of the real nodes' own bridge, read from the cluster's state dir
//! (`e2e/cluster up --real-nodes N`, e2e/README.md "Pod addresses"); any other address is
//! skipped. Every wait has a deadline.
//!
//! ```text
//! deepseek-demo fleet NAMESPACE... [--time-scale X] [--load-seconds S]
//!                                                       until SIGTERM/SIGINT
//! deepseek-demo chat NAMESPACE SERVICE PROMPT [--model M] [--max-tokens N] [--timeout S]
//!                                               [--grammar GBNF]   (llama.cpp engines)
//! deepseek-demo load NAMESPACE SERVICE --in-flight N --seconds S
//! deepseek-demo nodes POOL COUNT PRODUCT GPUS           KWOK nodes labelled node-pool=POOL
//! ```
//!
//! `--load-seconds S`: each engine takes S seconds to "load its weights", and the fleet is
//! the pods' readiness prober (a pod is Ready once its launcher answers ready, as a
//! kubelet's probe would say), so a cold start shows its real phases. Only namespaces
//! named `probed-*` are probed (KWOK marks the others Ready at once; crate::sim).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use deepseek_e2e::fixtures::kwok_node;
use deepseek_e2e::sim::{launcher_binary, SimFleet, SimOptions};
use deepseek_e2e::sim_router::router_binary;
use deepseek_e2e::Cluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use std::io::Write;

const USAGE: &str = "usage: deepseek-demo fleet NS... [--time-scale X] [--load-seconds S] | chat NS SERVICE PROMPT [--model M] [--max-tokens N] [--timeout S] [--grammar GBNF] | load NS SERVICE --in-flight N --seconds S | nodes POOL COUNT PRODUCT GPUS";

/// `--flag value` pairs, in order.
type Flags = Vec<(String, String)>;

/// Splits `args` into positionals and `--flag value` pairs.
fn parse(args: &[String]) -> Result<(Vec<String>, Flags)> {
    let mut pos = Vec::new();
    let mut flags = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
            flags.push((name.to_string(), v.clone()));
        } else {
            pos.push(a.clone());
        }
    }
    Ok((pos, flags))
}

fn flag<T: std::str::FromStr>(flags: &[(String, String)], name: &str, default: T) -> Result<T> {
    match flags.iter().find(|(k, _)| k == name) {
        Some((_, v)) => v
            .parse()
            .map_err(|_| anyhow!("--{name}: cannot parse {v:?}")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args.split_first().ok_or_else(|| anyhow!(USAGE))?;
    let (pos, flags) = parse(rest)?;
    let client = Client::try_default()
        .await
        .context("no cluster: source the output of `e2e/cluster up` (KUBECONFIG)")?;
    match (cmd.as_str(), pos.as_slice()) {
        ("fleet", namespaces) if !namespaces.is_empty() => {
            let time_scale = flag(&flags, "time-scale", 1.0f64)?;
            let load_seconds = flag(&flags, "load-seconds", 0u64)?;
            fleet(client, namespaces, time_scale, load_seconds).await
        }
        ("chat", [ns, svc, prompt]) => {
            let max_tokens = flag(&flags, "max-tokens", 24u32)?;
            let timeout = Duration::from_secs(flag(&flags, "timeout", 60u64)?);
            let model = flag(&flags, "model", svc.clone())?;
            let mut body = json!({
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "stream": true,
                "max_tokens": max_tokens,
            });
            // llama.cpp's own request field: a grammar the sampled tokens must follow.
            if let Some((_, g)) = flags.iter().find(|(k, _)| k == "grammar") {
                body["grammar"] = json!(g);
            }
            chat(&client, ns, svc, &body, timeout).await
        }
        ("load", [ns, svc]) => {
            let n = flag(&flags, "in-flight", 8usize)?;
            let secs = flag(&flags, "seconds", 60u64)?;
            load(&client, ns, svc, n, Duration::from_secs(secs)).await
        }
        ("nodes", [pool, count, product, gpus]) => {
            let count: usize = count.parse().context("COUNT")?;
            nodes(&client, pool, count, product, gpus).await
        }
        _ => bail!(USAGE),
    }
}

/// Runs the sim engines (and, when the pinned `sglang-router` is installed, router pods)
/// of `namespaces` until SIGTERM or SIGINT; dropping the fleets kills every process.
async fn fleet(
    client: Client,
    namespaces: &[String],
    time_scale: f64,
    load_seconds: u64,
) -> Result<()> {
    let launcher = tokio::task::spawn_blocking(launcher_binary).await??;
    let log_dir = std::env::var_os("DSO_DEMO_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("deepseek-sim-logs"));
    let mut opts = SimOptions::new(launcher).env("DSO_SIM_TIME_SCALE", &time_scale.to_string());
    opts.log_dir = log_dir.clone();
    if load_seconds > 0 {
        opts = opts
            .probe_readiness()
            .env("DSO_SIM_LOAD_SECONDS", &load_seconds.to_string());
    }
    match (router_binary(), std::env::var_os("KUBECONFIG")) {
        (Ok(router), Some(kc)) => {
            eprintln!("[fleet] router pods run {}", router.display());
            opts = opts.router(router, &PathBuf::from(kc));
        }
        (Err(e), _) => eprintln!("[fleet] router pods are not run: {e:#}"),
        (_, None) => eprintln!("[fleet] router pods are not run: KUBECONFIG is unset"),
    }
    let fleets: Vec<SimFleet> = namespaces
        .iter()
        .map(|ns| SimFleet::start(client.clone(), ns, opts.clone()))
        .collect();
    eprintln!(
        "[fleet] serving the operator's pods of {} (process logs: {})",
        namespaces.join(", "),
        log_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(fleets);
    Ok(())
}

/// A ready pod behind a Service, at an address the demo may dial.
struct Backend {
    ip: Ipv4Addr,
    pod: String,
    node: String,
}

/// Where the demo may send traffic: loopback, and the pod range of the real nodes' bridge
/// when real nodes run. Anything else is never dialled.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dialable {
    bridge: Option<(Ipv4Addr, u32)>,
}

impl Dialable {
    /// Loopback, plus the real nodes' range of the cluster in `$DSO_CLUSTER_DIR`.
    fn of_cluster() -> Result<Self> {
        Ok(Self {
            bridge: real_bridge_range(&Cluster::default_state_dir())?,
        })
    }

    fn allows(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback()
            || self.bridge.is_some_and(|(net, len)| {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net) & mask
            })
    }
}

/// The pod range of the real nodes' bridge, from the CNI configuration `e2e/cluster`
/// wrote for each running real node (`<state>/real/real-<i>/cni-conf/*.conflist`): the
/// range of this run's own bridge, whatever the environment says. None without real
/// nodes; an error if two nodes disagree or a range is not an IPv4 /8../24.
fn real_bridge_range(state: &Path) -> Result<Option<(Ipv4Addr, u32)>> {
    let Ok(nodes) = std::fs::read_dir(state.join("real")) else {
        return Ok(None);
    };
    let mut found: Option<(Ipv4Addr, u32)> = None;
    for node in nodes.flatten() {
        if !node.file_name().to_string_lossy().starts_with("real-") {
            continue;
        }
        let Ok(confs) = std::fs::read_dir(node.path().join("cni-conf")) else {
            continue;
        };
        for conf in confs.flatten() {
            let path = conf.path();
            if path.extension().and_then(|e| e.to_str()) != Some("conflist") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let range = bridge_subnet(&text).with_context(|| format!("in {}", path.display()))?;
            match found {
                Some(f) if f != range => bail!(
                    "real nodes disagree on their pod range: {}/{} and {}/{} ({})",
                    f.0,
                    f.1,
                    range.0,
                    range.1,
                    path.display()
                ),
                _ => found = Some(range),
            }
        }
    }
    Ok(found)
}

/// The subnet of the bridge plugin's IPAM range in a CNI conflist.
fn bridge_subnet(conflist: &str) -> Result<(Ipv4Addr, u32)> {
    let v: serde_json::Value = serde_json::from_str(conflist)?;
    let subnet = v["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["type"] == "bridge")
        .and_then(|p| p["ipam"]["ranges"][0][0]["subnet"].as_str())
        .context("no bridge plugin with an IPAM range")?;
    let (net, len) = subnet
        .split_once('/')
        .with_context(|| format!("subnet {subnet:?} is not a CIDR"))?;
    let net: Ipv4Addr = net.parse().with_context(|| format!("subnet {subnet:?}"))?;
    let len: u32 = len.parse().with_context(|| format!("subnet {subnet:?}"))?;
    ensure!(
        (8..=24).contains(&len),
        "subnet {subnet}: prefix out of range"
    );
    ensure!(
        !net.is_unspecified() && !net.is_loopback(),
        "subnet {subnet} is not a pod range"
    );
    Ok((net, len))
}

/// The Service's ready pods at dialable addresses, and the port its first port targets.
async fn service_backends(
    client: &Client,
    ns: &str,
    svc: &str,
    dialable: Dialable,
) -> Result<(Vec<Backend>, u16)> {
    let s: Service = Api::namespaced(client.clone(), ns).get(svc).await?;
    let spec = s.spec.ok_or_else(|| anyhow!("service {svc} has no spec"))?;
    let selector = spec
        .selector
        .ok_or_else(|| anyhow!("service {svc} has no selector"))?;
    let port = spec
        .ports
        .and_then(|p| p.into_iter().next())
        .ok_or_else(|| anyhow!("service {svc} has no port"))?;
    let target = match port.target_port {
        Some(IntOrString::Int(p)) => u16::try_from(p).context("target port")?,
        _ => u16::try_from(port.port).context("port")?,
    };
    let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&sel.join(",")))
        .await?;
    let backends = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && running_ready(p))
        .filter_map(|p| {
            let ip: Ipv4Addr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            dialable.allows(ip).then(|| Backend {
                ip,
                pod: p.metadata.name.clone().unwrap_or_default(),
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok((backends, target))
}

fn running_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    st.and_then(|s| s.phase.as_deref()) == Some("Running")
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn http(timeout: Duration) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()?)
}

/// Sends one streamed chat completion through the Service path and prints each delta as
/// it arrives; retries (until `timeout`) while no pod is ready or its engine is starting.
async fn chat(
    client: &Client,
    ns: &str,
    svc: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let http = http(timeout)?;
    let dialable = Dialable::of_cluster()?;
    let mut last = String::from("no ready pod behind the Service yet");
    while Instant::now() < deadline {
        let (backends, port) = service_backends(client, ns, svc, dialable).await?;
        if let Some(b) = backends.first() {
            let url = format!("http://{}:{port}/v1/chat/completions", b.ip);
            match http.post(&url).json(body).send().await {
                Ok(resp) if resp.status().is_success() => {
                    eprintln!(
                        "[chat] POST {url} (pod {} on node {}, a ready pod of Service {ns}/{svc})",
                        b.pod, b.node
                    );
                    return print_stream(resp).await;
                }
                Ok(resp) => last = format!("{url}: HTTP {}", resp.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("no answer from Service {ns}/{svc} within {timeout:?}: {last}")
}

async fn print_stream(resp: reqwest::Response) -> Result<()> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let (mut done, mut content) = (false, 0usize);
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(nl) = buf.find('\n') {
            let line: String = buf.drain(..=nl).collect();
            let Some(data) = line.trim().strip_prefix("data: ").map(str::to_string) else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(&data).with_context(|| format!("event {data:?}"))?;
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                content += c.len();
                write!(out, "{c}")?;
                out.flush()?;
            }
        }
    }
    writeln!(out)?;
    ensure!(done, "the stream ended without [DONE]");
    ensure!(content > 0, "the stream carried no content");
    Ok(())
}

/// Holds `n` requests in flight against the Service's ready pods for `length` (each worker
/// sends completions back to back, re-resolving the pods), then prints what was sent.
async fn load(client: &Client, ns: &str, svc: &str, n: usize, length: Duration) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let http = http(Duration::from_secs(60))?;
    let dialable = Dialable::of_cluster()?;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, ns, svc, http) = (
            client.clone(),
            ns.to_string(),
            svc.to_string(),
            http.clone(),
        );
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = match service_backends(&client, &ns, &svc, dialable).await {
                    Ok((backends, port)) if !backends.is_empty() => {
                        let ip = backends[i % backends.len()].ip;
                        let body = json!({"model": svc, "prompt": "load", "max_tokens": 64});
                        http.post(format!("http://{ip}:{port}/v1/completions"))
                            .json(&body)
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success())
                    }
                    _ => false,
                };
                if ok {
                    sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    tokio::select! {
        _ = tokio::time::sleep(length) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    eprintln!(
        "[load] {n} in flight: {} completions answered, {} failed",
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// KWOK nodes `demo-POOL-i` labelled `node-pool=POOL` with `gpus` NVIDIA GPUs of `product`
/// (a node group as a cloud names it); existing ones are kept.
async fn nodes(client: &Client, pool: &str, count: usize, product: &str, gpus: &str) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for i in 0..count {
        let name = format!("demo-{pool}-{i}");
        if api.get_opt(&name).await?.is_some() {
            continue;
        }
        kwok_node(
            &api,
            &name,
            json!({"node-pool": pool, "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": gpus}),
            json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
            json!({"nvidia.com/gpu": gpus}),
            "127.0.0.1",
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFLIST: &str = r#"{"cniVersion": "1.0.0", "name": "dso-real", "plugins": [
        {"type": "bridge", "bridge": "dsodev2", "ipam": {"type": "host-local",
         "ranges": [[{"subnet": "198.20.0.0/16", "rangeStart": "198.20.0.2", "rangeEnd": "198.20.0.254"}]],
         "routes": []}}]}"#;

    #[test]
    fn only_loopback_and_the_real_bridge_range_are_dialled() {
        let bridge = bridge_subnet(CONFLIST).expect("a bridge range");
        assert_eq!(bridge, (Ipv4Addr::new(198, 20, 0, 0), 16));
        let with = Dialable {
            bridge: Some(bridge),
        };
        let without = Dialable { bridge: None };
        for ip in ["127.13.0.7", "127.0.0.1"] {
            let ip: Ipv4Addr = ip.parse().expect("ip");
            assert!(with.allows(ip) && without.allows(ip), "{ip}");
        }
        let real: Ipv4Addr = "198.20.0.2".parse().expect("ip");
        assert!(with.allows(real) && !without.allows(real));
        for ip in [
            "198.19.0.2",
            "198.18.0.2",
            "10.0.0.1",
            "192.0.2.10",
            "8.8.8.8",
        ] {
            let ip: Ipv4Addr = ip.parse().expect("ip");
            assert!(!with.allows(ip), "{ip} must not be dialled");
        }
    }

    #[test]
    fn a_range_that_is_not_a_pod_range_is_refused() {
        for subnet in [
            "0.0.0.0/0",
            "198.20.0.0/4",
            "127.0.0.0/8",
            "198.20.0.0/28",
            "nope",
        ] {
            let conf = CONFLIST.replace("198.20.0.0/16", subnet);
            assert!(bridge_subnet(&conf).is_err(), "{subnet}");
        }
        assert!(bridge_subnet(r#"{"plugins": [{"type": "loopback"}]}"#).is_err());
    }

    #[test]
    fn the_range_is_read_from_the_real_nodes_of_the_state_dir() -> Result<()> {
        let state = std::env::temp_dir().join(format!("dso-demo-test-{}", std::process::id()));
        assert_eq!(real_bridge_range(&state)?, None, "no real node, no range");
        for node in ["real-0", "real-1"] {
            let dir = state.join("real").join(node).join("cni-conf");
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("10-dso-real.conflist"), CONFLIST)?;
        }
        let found = real_bridge_range(&state);
        let conf = state.join("real/real-1/cni-conf/10-dso-real.conflist");
        std::fs::write(&conf, CONFLIST.replace("198.20.0.0/16", "198.21.0.0/16"))?;
        let disagree = real_bridge_range(&state);
        std::fs::remove_dir_all(&state)?;
        assert_eq!(found?, Some((Ipv4Addr::new(198, 20, 0, 0), 16)));
        assert!(disagree.is_err(), "two ranges: {disagree:?}");
        Ok(())
    }
}

//! The helpers `scripts/demo` needs beyond `kubectl`: simulated engines for the demo's
//! namespaces, a streamed chat printed as it arrives, a load step, and extra KWOK nodes.
//!
//! KWOK pods run nothing and loopback pod IPs never reach a Service's endpoints, so the
//! demo cannot use `kubectl port-forward` or a ClusterIP: `fleet` runs the real launcher
//! with the sim engine for every operator pod (crate::sim::SimFleet), and `chat`/`load`
//! take the operator's Service path by hand: the Service's selector, its ready pods, their
//! 127.x IPs and the Service's target port. Every wait has a deadline.
//!
//! ```text
//! deepseek-demo fleet NAMESPACE... [--time-scale X] [--load-seconds S]
//!                                                       until SIGTERM/SIGINT
//! deepseek-demo chat NAMESPACE SERVICE PROMPT [--model M] [--max-tokens N] [--timeout S]
//! deepseek-demo load NAMESPACE SERVICE --in-flight N --seconds S
//! deepseek-demo nodes POOL COUNT PRODUCT GPUS           KWOK nodes labelled node-pool=POOL
//! ```
//!
//! `--load-seconds S`: each engine takes S seconds to "load its weights", and the fleet is
//! the pods' readiness prober (a pod is Ready once its launcher answers ready, as a
//! kubelet's probe would say), so a cold start shows its real phases. Only namespaces
//! named `probed-*` are probed (KWOK marks the others Ready at once; crate::sim).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use deepseek_e2e::fixtures::kwok_node;
use deepseek_e2e::sim::{launcher_binary, SimFleet, SimOptions};
use deepseek_e2e::sim_router::router_binary;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use std::io::Write;

const USAGE: &str = "usage: deepseek-demo fleet NS... [--time-scale X] [--load-seconds S] | chat NS SERVICE PROMPT [--model M] [--max-tokens N] [--timeout S] | load NS SERVICE --in-flight N --seconds S | nodes POOL COUNT PRODUCT GPUS";

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
            chat(&client, ns, svc, &model, prompt, max_tokens, timeout).await
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

/// The Service's ready pods (127.x IPs only) and the port its first port targets.
async fn service_backends(client: &Client, ns: &str, svc: &str) -> Result<(Vec<Ipv4Addr>, u16)> {
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
    let ips = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && running_ready(p))
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        .filter(|ip: &Ipv4Addr| ip.is_loopback())
        .collect();
    Ok((ips, target))
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
    model: &str,
    prompt: &str,
    max_tokens: u32,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": true,
        "max_tokens": max_tokens,
    });
    let http = http(timeout)?;
    let mut last = String::from("no ready pod behind the Service yet");
    while Instant::now() < deadline {
        let (ips, port) = service_backends(client, ns, svc).await?;
        if let Some(ip) = ips.first() {
            let url = format!("http://{ip}:{port}/v1/chat/completions");
            match http.post(&url).json(&body).send().await {
                Ok(resp) if resp.status().is_success() => {
                    eprintln!("[chat] POST {url} (a ready pod of Service {ns}/{svc})");
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
                let ok = match service_backends(&client, &ns, &svc).await {
                    Ok((ips, port)) if !ips.is_empty() => {
                        let ip = ips[i % ips.len()];
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

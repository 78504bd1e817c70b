//! What the real-node suites share (`e2e/cluster up --real-nodes 2`, `scripts/images`):
//! the pod range of the real nodes' bridge (the only non-loopback addresses a test may
//! dial), the images `scripts/images` imported, the tiny checkpoint placed on the node
//! beforehand, a streamed chat, and the container logs the kubelet wrote on the node.

#![allow(dead_code)] // each suite uses a part

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use deepseek_e2e::{wait, Cluster};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

pub const REAL_LABEL: &str = "e2e.deepseek-operator/real-node";

pub use crate::common::real_pod_range as pod_range;

/// A pod IP on the real nodes' bridge; anything else is refused (tests dial nothing else).
pub fn bridge_ip(pod: &Pod) -> Result<Ipv4Addr> {
    let ip: Ipv4Addr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .context("pod has no IP yet")?
        .parse()?;
    let (net, len) = pod_range()?;
    let mask = u32::MAX << (32 - len);
    ensure!(
        u32::from(ip) & mask == u32::from(net) & mask,
        "refusing to dial {ip}: not on the real nodes' bridge {net}/{len}"
    );
    Ok(ip)
}

/// The node, Ready, with the image `prefix:<version>` that `scripts/images` imported.
/// The kubelet lists a node's images in its status a while after an import: waited for.
pub async fn real_node_with_image(cluster: &Cluster, name: &str, prefix: &str) -> Result<String> {
    let nodes: Api<Node> = Api::all(cluster.client());
    let image_of = |node: &Node| {
        node.status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| i.names.iter().flatten())
            .find(|n| n.starts_with(&format!("{prefix}:")))
            .cloned()
    };
    wait::wait_for(
        Duration::from_secs(180),
        &format!("node {name} is Ready and lists the {prefix} image"),
        || async {
            Ok(nodes
                .get_opt(name)
                .await?
                .filter(wait::node_is_ready)
                .and_then(|n| image_of(&n)))
        },
    )
    .await
    .context(
        "start the real nodes (`e2e/cluster up --real-nodes 2`) and run scripts/images, or e2e/real-nodes-suite",
    )
}

/// The tiny GGUF checkpoint that runtime-image/real-engines/run writes
/// (`$DSO_REAL_MODELS`, else the newest `tiny-models-*` of the build cache).
pub fn tiny_gguf() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DSO_REAL_MODELS") {
        let p = Path::new(&dir).join("tiny-q8_0.gguf");
        ensure!(p.is_file(), "{} is missing", p.display());
        return Ok(p);
    }
    let cache = std::env::var_os("DSO_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/deepseek-operator"))
        })
        .context("neither DSO_CACHE nor HOME is set")?;
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&cache)
        .with_context(|| format!("reading {}", cache.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tiny-models-"))
        .map(|e| e.path().join("tiny-q8_0.gguf"))
        .filter(|p| p.is_file())
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .context("no tiny-q8_0.gguf in the build cache: run runtime-image/real-engines/run once")
}

/// What one streamed chat completion returned.
#[derive(Debug)]
pub struct Streamed {
    /// `data:` events carrying a content delta.
    pub deltas: usize,
    pub text: String,
    pub done: bool,
}

/// A streamed chat completion against `ip:port` (an address on the bridge only).
pub async fn stream_chat(
    ip: Ipv4Addr,
    port: u16,
    model: &str,
    max_tokens: u32,
) -> Result<Streamed> {
    stream(ip, port, model, "Say hello.", max_tokens, None).await
}

/// A streamed chat that reports its first content delta on `first` (so a caller knows it
/// is in flight), then reads to the end.
pub async fn stream_chat_in_flight(
    ip: Ipv4Addr,
    port: u16,
    model: &str,
    max_tokens: u32,
    first: tokio::sync::mpsc::Sender<()>,
) -> Result<Streamed> {
    stream(
        ip,
        port,
        model,
        "Tell a long story.",
        max_tokens,
        Some(first),
    )
    .await
}

async fn stream(
    ip: Ipv4Addr,
    port: u16,
    model: &str,
    prompt: &str,
    max_tokens: u32,
    first: Option<tokio::sync::mpsc::Sender<()>>,
) -> Result<Streamed> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(180))
        .build()?;
    let mut r = http
        .post(format!("http://{ip}:{port}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": true,
        }))
        .send()
        .await?;
    let status = r.status();
    if !status.is_success() {
        bail!(
            "chat answered {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let mut body = String::new();
    let mut first = first;
    while let Some(chunk) = r.chunk().await? {
        body.push_str(&String::from_utf8_lossy(&chunk));
        if body.contains("\"content\"") {
            if let Some(tx) = first.take() {
                let _ = tx.send(()).await;
            }
        }
    }
    let mut out = Streamed {
        deltas: 0,
        text: String::new(),
        done: false,
    };
    for data in body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
    {
        if data == "[DONE]" {
            out.done = true;
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(data).with_context(|| format!("event {data}"))?;
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            out.deltas += 1;
            out.text.push_str(c);
        }
    }
    Ok(out)
}

/// The last lines of a container's log, read from the node's pod log directory
/// (`$DSO_CLUSTER_DIR/real/<node>/pod-logs`), where the kubelet writes it.
pub fn container_log(cluster: &Cluster, node: &str, pod: &Pod, container: &str) -> String {
    let (Some(ns), Some(name), Some(uid)) = (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref(),
        pod.metadata.uid.as_deref(),
    ) else {
        return String::new();
    };
    let dir = cluster
        .state_dir()
        .join("real")
        .join(node)
        .join("pod-logs")
        .join(format!("{ns}_{name}_{uid}"))
        .join(container);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let text: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The last termination of a pod's first container: "exit code N (reason)".
pub fn last_exit(pod: &Pod, container: &str) -> Option<String> {
    let s = pod.status.as_ref()?;
    let cs = s
        .container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == container)?;
    let t = cs
        .last_state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .or_else(|| cs.state.as_ref()?.terminated.as_ref())?;
    (t.exit_code != 0).then(|| {
        format!(
            "exit code {} ({})",
            t.exit_code,
            t.reason.as_deref().unwrap_or("-")
        )
    })
}

/// One non-streamed chat request: its HTTP status, or the connection error.
pub async fn chat_status(ip: Ipv4Addr, port: u16, model: &str) -> Result<u16> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let r = http
        .post(format!("http://{ip}:{port}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        }))
        .send()
        .await?;
    Ok(r.status().as_u16())
}

/// Removes a namespace's default node cache directory: every real node is this machine,
/// so the kubelet created it here (`DirectoryOrCreate`), and nothing else removes it.
pub fn remove_node_cache(namespace: &str) {
    let dir = Path::new(deepseek_operator::config::DEFAULT_CACHE_HOST_PATH).join(namespace);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("could not remove {}: {e}", dir.display());
        }
    }
}

/// The host PID of a process in a pod's container on a real node (every real node is this
/// machine): `program` (the file name of its argv[0]) run with `subcommand`, whose
/// environment names the pod as its hostname.
pub fn pod_process(pod: &str, program: &str, subcommand: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_it = Path::new(std::str::from_utf8(args.first()?).ok()?)
            .file_name()
            .is_some_and(|f| f == program)
            && args.get(1)? == &subcommand.as_bytes();
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let host = format!("HOSTNAME={pod}");
        (is_it && env.split(|b| *b == 0).any(|v| v == host.as_bytes())).then_some(pid)
    })
}

/// SIGKILL to a host process.
pub fn kill_hard(pid: u32) -> Result<()> {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(killed.success(), "kill -KILL {pid} failed");
    Ok(())
}

const H100_LABELS: [(&str, &str); 4] = [
    ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
    ("nvidia.com/gpu.memory", "81559"),
    ("nvidia.com/gpu.count", "8"),
    ("nvidia.com/gpu.family", "hopper"),
];

/// Labels and extended resources of an 8-GPU H100 node on `name`, or (`on` false) none.
pub async fn make_h100(nodes: &Api<Node>, name: &str, on: bool) -> Result<()> {
    let labels: serde_json::Map<String, serde_json::Value> = H100_LABELS
        .iter()
        .map(|(k, v)| (k.to_string(), if on { json!(v) } else { json!(null) }))
        .collect();
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    let gpus = if on { json!("8") } else { json!(null) };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "capacity": {"nvidia.com/gpu": gpus},
                "allocatable": {"nvidia.com/gpu": gpus},
            }})),
        )
        .await?;
    if on {
        wait::wait_for(
            Duration::from_secs(60),
            &format!("{name} advertises 8 nvidia.com/gpu"),
            || async {
                let n = nodes.get(name).await?;
                let gpus = n
                    .status
                    .and_then(|s| s.allocatable)
                    .and_then(|a| a.get("nvidia.com/gpu").map(|q| q.0.clone()));
                Ok((gpus.as_deref() == Some("8")).then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

/// The real nodes, in index order.
pub const NODES: [&str; 2] = ["real-0", "real-1"];

/// Makes real-0 and real-1 8-GPU H100 nodes once they list every image named by `images`
/// (prefixes), runs `body` with the first image's reference, and makes them plain nodes
/// again, whether `body` passed or not.
pub async fn on_h100_nodes<F, Fut>(cluster: &Cluster, images: &[&str], body: F) -> Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut first = None;
    for node in NODES {
        for prefix in images {
            let image = real_node_with_image(cluster, node, prefix).await?;
            first.get_or_insert(image);
        }
    }
    let image = first.context("no image named")?;
    let nodes: Api<Node> = Api::all(cluster.client());
    for node in NODES {
        make_h100(&nodes, node, true).await?;
    }
    let result = body(image).await;
    for node in NODES {
        make_h100(&nodes, node, false).await?;
    }
    result
}

/// DeepSeek-R1 FP8 as one group of two 8-GPU H100 pods, pinned to the real nodes (made H100
/// nodes by [`on_h100_nodes`]), running `image` with little CPU and memory (the nodes
/// share this machine); `spec` fields are added or replaced.
pub fn r1_on_real_nodes(
    namespace: &str,
    name: &str,
    image: &str,
    spec: serde_json::Value,
) -> Result<deepseek_operator::api::DeepSeekModel> {
    let mut m = json!({
        "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
        "kind": "DeepSeekModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": "deepseek-r1",
            "quantization": "fp8",
            "accelerator": {"product": "h100-80gb", "nodeSelector": {REAL_LABEL: "true"}},
            "image": image,
            "serving": {"maxModelLen": 16384},
            "resources": {"cpu": "100m", "memory": "256Mi"},
        },
    });
    if let (Some(base), Some(extra)) = (m["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    Ok(serde_json::from_value(m)?)
}

//! Real kubelet nodes beside the KWOK ones (`e2e/cluster up --real-nodes 2`): both
//! `real-0` and `real-1` are Ready, KWOK leaves them alone, and a pod placed on each
//! runs as a real container in that node's own containerd, which `crictl` shows, with
//! a pod IP on the real nodes' bridge. The image is the pause image built by
//! `e2e/build --real-nodes` and imported, never pulled.
//!
//! Not part of `cargo test --workspace` (it needs root and the real-node components):
//! `DSO_REAL_NODES=2 cargo test -p deepseek-e2e --features real-nodes --test real_nodes`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use deepseek_e2e::{wait, Cluster};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const NODES: [&str; 2] = ["real-0", "real-1"];
const TIMEOUT: Duration = Duration::from_secs(120);

/// The pause image a node reports among its images (`status.images`), imported by
/// `e2e/cluster` into its containerd.
fn pause_image(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .images
        .as_ref()?
        .iter()
        .flat_map(|i| i.names.iter().flatten())
        .find(|n| n.starts_with("localhost/dso/pause:"))
        .cloned()
}

/// The pod range of the real nodes, as `e2e/cluster` reads it.
fn real_pod_cidr() -> Result<(Ipv4Addr, u32)> {
    let cidr = std::env::var("DSO_REAL_POD_CIDR").unwrap_or_else(|_| "198.18.0.0/16".into());
    let (addr, len) = cidr
        .split_once('/')
        .with_context(|| format!("DSO_REAL_POD_CIDR={cidr} is not a CIDR"))?;
    Ok((addr.parse()?, len.parse()?))
}

fn in_cidr(ip: Ipv4Addr, (net, len): (Ipv4Addr, u32)) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// `crictl ps` on one node's containerd, as JSON.
fn crictl_ps(state: &Path, node: &str, bin: &Path) -> Result<Value> {
    let out = Command::new(bin.join("crictl"))
        .arg("--config")
        .arg(state.join("real").join(node).join("crictl.yaml"))
        .args(["ps", "-o", "json"])
        .output()
        .context("running crictl")?;
    ensure!(
        out.status.success(),
        "crictl ps on {node} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The running containers of pod `ns/name` that `crictl ps` lists.
fn running_containers_of(ps: &Value, ns: &str, name: &str) -> usize {
    ps["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["labels"]["io.kubernetes.pod.namespace"] == ns
                && c["labels"]["io.kubernetes.pod.name"] == name
                && c["state"] == "CONTAINER_RUNNING"
        })
        .count()
}

#[tokio::test]
async fn pods_on_real_nodes_run_in_their_own_containerd() -> Result<()> {
    let cluster = Cluster::ensure().await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    let mut image = None;
    for name in NODES {
        let node = wait::wait_for(TIMEOUT, &format!("node {name} is Ready"), || async {
            let Some(n) = nodes.get_opt(name).await? else {
                return Ok(None);
            };
            Ok(wait::node_is_ready(&n).then_some(n))
        })
        .await
        .context("start the cluster with `e2e/cluster up --real-nodes 2`")?;
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        ensure!(
            !annotations.contains_key("kwok.x-k8s.io/node"),
            "{name} carries KWOK's annotation: KWOK would manage it"
        );
        let labels = node.metadata.labels.clone().unwrap_or_default();
        ensure!(
            labels
                .get("e2e.deepseek-operator/real-node")
                .map(String::as_str)
                == Some("true"),
            "{name} lacks the real-node label: {labels:?}"
        );
        let version = node.status.as_ref().and_then(|s| s.node_info.as_ref());
        ensure!(
            version.is_some_and(|v| !v.kubelet_version.ends_with("-kwok")
                && v.container_runtime_version.starts_with("containerd://")),
            "{name} is not a real kubelet on containerd: {version:?}"
        );
        image = image.or_else(|| pause_image(&node));
    }
    let Some(image) = image else {
        bail!("no real node reports the pause image localhost/dso/pause:* among its images")
    };

    let ns = cluster.namespace("real-nodes").await?;
    let pods: Api<Pod> = ns.api();
    for node in NODES {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("pause-{node}")},
            "spec": {
                "nodeName": node,
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "pause",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false}
                }]
            }
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    let cidr = real_pod_cidr()?;
    for node in NODES {
        let name = format!("pause-{node}");
        let pod = wait::pod_running(&pods, &name, TIMEOUT).await?;
        let ip: Ipv4Addr = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .context("no pod IP")?
            .parse()?;
        ensure!(
            in_cidr(ip, cidr),
            "pod {name} got {ip}, outside the real nodes' range {cidr:?}"
        );
        let ps = crictl_ps(cluster.state_dir(), node, cluster.bin_dir())?;
        ensure!(
            running_containers_of(&ps, ns.name(), &name) == 1,
            "crictl on {node} does not show {name} running: {ps}"
        );
        for other in NODES.iter().filter(|o| **o != node) {
            let ps = crictl_ps(cluster.state_dir(), other, cluster.bin_dir())?;
            ensure!(
                running_containers_of(&ps, ns.name(), &name) == 0,
                "{name} (on {node}) also runs in {other}'s containerd"
            );
        }
    }
    for node in NODES {
        let name = format!("pause-{node}");
        pods.delete(&name, &DeleteParams::default()).await?;
        wait::deleted(&pods, &name, TIMEOUT).await?;
        let ps = crictl_ps(cluster.state_dir(), node, cluster.bin_dir())?;
        ensure!(
            running_containers_of(&ps, ns.name(), &name) == 0,
            "{name} still runs on {node} after its pod was deleted: {ps}"
        );
    }
    ns.finish().await
}

#[test]
fn cidr_membership() {
    let net = ("198.18.0.0".parse().unwrap(), 16);
    assert!(in_cidr("198.18.1.7".parse().unwrap(), net));
    assert!(!in_cidr("198.19.0.7".parse().unwrap(), net));
    assert!(!in_cidr("127.0.0.1".parse().unwrap(), net));
    assert!(in_cidr(
        "203.0.113.1".parse().unwrap(),
        ("0.0.0.0".parse().unwrap(), 0)
    ));
}

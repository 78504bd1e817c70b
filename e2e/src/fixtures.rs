//! Builders for test objects and checks of the loopback-only network rule.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client};

/// The taint GPU node pools carry (GKE and our topologies): tolerate it to land on them.
pub fn gpu_toleration() -> Toleration {
    Toleration {
        key: Some("nvidia.com/gpu".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }
}

/// A pod with one container requesting (and limiting) `count` of the extended
/// resource `resource`, with `node_selector`, tolerating the GPU taint. No image is
/// pulled or run: KWOK only simulates its status.
pub fn accelerator_pod(
    name: &str,
    resource: &str,
    count: u32,
    node_selector: &[(&str, &str)],
) -> Pod {
    let mut limits = BTreeMap::new();
    limits.insert(resource.to_string(), Quantity(count.to_string()));
    let selector: BTreeMap<String, String> = node_selector
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "engine".into(),
                image: Some("registry.invalid/simulated:latest".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(limits.clone()),
                    limits: Some(limits),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            node_selector: (!selector.is_empty()).then_some(selector),
            tolerations: Some(vec![gpu_toleration()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The value of the environment variable `name` of the pod's first container (the
/// engine's, in the operator's pods).
pub fn env_value(pod: &Pod, name: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// Whether `ip` parses as an IPv4 address in 127.0.0.0/8.
pub fn is_loopback(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Fails if any pod IP or node InternalIP in the cluster is outside 127.0.0.0/8;
/// returns how many addresses were checked.
pub async fn assert_loopback_addresses(client: &Client) -> Result<usize> {
    let mut bad = Vec::new();
    let mut checked = 0;
    let pods: Api<Pod> = Api::all(client.clone());
    for pod in pods.list(&ListParams::default()).await?.items {
        let status = pod.status.unwrap_or_default();
        let ips = status
            .pod_ips
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.ip)
            .chain(status.pod_ip);
        for ip in ips {
            checked += 1;
            if !is_loopback(&ip) {
                bad.push(format!(
                    "pod {}/{}: {ip}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(&ListParams::default()).await?.items {
        let addrs = node.status.and_then(|s| s.addresses).unwrap_or_default();
        for a in addrs.into_iter().filter(|a| a.type_ == "InternalIP") {
            checked += 1;
            if !is_loopback(&a.address) {
                bad.push(format!(
                    "node {}: {}",
                    node.metadata.name.as_deref().unwrap_or_default(),
                    a.address
                ));
            }
        }
    }
    if !bad.is_empty() {
        bail!("addresses outside 127.0.0.0/8: {}", bad.join(", "));
    }
    Ok(checked)
}

/// A Ready Node object as the operator's Node cache sees it, for pure tests and benches
/// (no API server): the hostname label added to `labels`, `taints`, and `allocatable`
/// (a JSON map of resource names to quantities). Panics on a malformed fixture: the
/// arguments come from the test itself.
pub fn ready_node(
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
    allocatable: serde_json::Value,
) -> Node {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = serde_json::json!(name);
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
    .unwrap_or_else(|e| panic!("node fixture {name}: {e}"))
}

/// Creates a KWOK node (KWOK's `fake` annotation, so KWOK keeps it Ready) with the given
/// labels, taints and extended resources on top of 96 CPUs and 1000Gi, and its InternalIP
/// (a 127.x address: the API server never dials it, nothing else does either).
pub async fn kwok_node(
    nodes: &Api<Node>,
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
    resources: serde_json::Value,
    ip: &str,
) -> Result<()> {
    use kube::api::{Patch, PatchParams, PostParams};
    use serde_json::json;
    if !is_loopback(ip) {
        bail!("node {name}: {ip} is not a loopback address");
    }
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    labels["type"] = json!("kwok");
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": labels},
        "spec": {"taints": taints},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let mut capacity = json!({"cpu": "96", "memory": "1000Gi", "pods": "110"});
    if let Some(extra) = resources.as_object() {
        for (k, v) in extra {
            capacity[k] = v.clone();
        }
    }
    let status = json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": ip}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

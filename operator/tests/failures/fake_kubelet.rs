//! A stand-in kubelet for a few simulated accelerator nodes that a test can kill.
//!
//! KWOK keeps renewing the Lease of every node it ever managed, so a KWOK node cannot die
//! without restarting the shared KWOK controller (see the reference on the test cluster).
//! These nodes carry no `kwok.x-k8s.io/node` annotation; this loop does a kubelet's part
//! for them instead: it renews their Leases, marks their pods Running and Ready, and
//! confirms graceful deletions. Killing a node stops all of that for it, and marks it as
//! the node-lifecycle controller would after the grace period: Ready `Unknown` and the
//! `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints. Its pods then stay
//! as they were, and once deleted stay Terminating: a dead node, as seen from the API.
//!
//! Every node carries a per-test label and taint, so the nodes form their own pool that
//! only the test's models select, and the test deletes them when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use deepseek_e2e::Cluster;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

pub const NODE_LABEL: &str = "e2e.deepseek.ai/failures";
const MANAGER: &str = "e2e-fake-kubelet";

pub struct FakeNodes {
    client: Client,
    pub names: Vec<String>,
    run: String,
    alive: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
    /// kubectl and the kubeconfig, for the synchronous cleanup on drop.
    kubectl: (PathBuf, PathBuf),
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The status a kubelet reports for a running pod, with `restarts` container restarts.
pub fn running_status(pod: &Pod, ready: bool, restarts: i32) -> Value {
    let t = serde_json::to_value(now()).unwrap_or(Value::Null);
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "ready": ready, "started": true, "restartCount": restarts,
                "state": {"running": {"startedAt": t}},
            })
        })
        .collect();
    let flag = if ready { "True" } else { "False" };
    json!({"status": {
        "phase": "Running",
        "startTime": t,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": t},
            {"type": "Ready", "status": flag, "lastTransitionTime": t},
        ],
        "containerStatuses": containers,
    }})
}

/// One round of kubelet work for one live node.
async fn tend(client: &Client, node: &str) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    leases
        .patch(
            node,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await?;
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in on_node.items {
        let (Some(ns), name) = (pod.namespace(), pod.name_any()) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            // The containers stopped: confirm the deletion, as a kubelet does.
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        } else if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(running_status(&pod, true, 0)),
            )
            .await?;
        }
    }
    Ok(())
}

impl FakeNodes {
    /// Creates `count` Ascend 910B nodes (8 NPUs each) labelled and tainted for `run`.
    pub async fn start(cluster: &Cluster, run: &str, count: usize) -> Result<FakeNodes> {
        let client = cluster.client();
        let nodes: Api<Node> = Api::all(client.clone());
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("{run}-{i}");
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "arm64",
                    "accelerator": "huawei-Ascend910",
                    "accelerator-type": "module-910b-8",
                    "node.kubernetes.io/npu.chip.name": "910B",
                    NODE_LABEL: run,
                }},
                "spec": {"taints": [{"key": NODE_LABEL, "value": run, "effect": "NoSchedule"}]},
            }))?;
            nodes
                .create(&PostParams::default(), &node)
                .await
                .with_context(|| format!("creating node {name}"))?;
            let capacity = json!({
                "cpu": "192", "memory": "1536Gi", "pods": "110", "huawei.com/Ascend910": "8"
            });
            let t = serde_json::to_value(now())?;
            let status = json!({"status": {
                "capacity": capacity, "allocatable": capacity,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "lastHeartbeatTime": t, "lastTransitionTime": t}],
                "addresses": [{"type": "InternalIP", "address": format!("127.3.251.{}", i + 1)}],
                "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                    "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "v1.35.4-fake",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "arm64"},
            }});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await?;
            names.push(name);
        }
        let alive = Arc::new(Mutex::new(names.iter().cloned().collect::<BTreeSet<_>>()));
        let task = {
            let (client, alive) = (client.clone(), alive.clone());
            tokio::spawn(async move {
                loop {
                    let live: Vec<String> = alive
                        .lock()
                        .map(|a| a.iter().cloned().collect())
                        .unwrap_or_default();
                    for n in live {
                        if let Err(e) = tend(&client, &n).await {
                            eprintln!("fake kubelet of {n}: {e:#}");
                        }
                    }
                    // A kubelet's own loop period, not a wait for a condition.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        };
        Ok(FakeNodes {
            client,
            names,
            run: run.into(),
            alive,
            task,
            kubectl: (
                cluster.bin_dir().join("kubectl"),
                cluster.kubeconfig().to_path_buf(),
            ),
        })
    }

    /// The toleration a model needs for these nodes' per-test taint (pods tolerate only
    /// accelerator taints on their own).
    pub fn toleration(&self) -> k8s_openapi::api::core::v1::Toleration {
        k8s_openapi::api::core::v1::Toleration {
            key: Some(NODE_LABEL.into()),
            operator: Some("Equal".into()),
            value: Some(self.run.clone()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }
    }

    /// R1 INT8 on these Ascend 910B nodes only: groups of two 8-NPU pods.
    pub fn model(&self, name: &str) -> Result<deepseek_operator::api::DeepSeekModel> {
        let mut m = crate::common::example("r1-int8-ascend.yaml")?;
        m.metadata.name = Some(name.into());
        m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
            vendor: m.spec.accelerator.and_then(|a| a.vendor),
            node_selector: Some(self.selector()),
            tolerations: Some(vec![self.toleration()]),
            ..Default::default()
        });
        Ok(m)
    }

    /// The node selector that puts a model on these nodes only.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(NODE_LABEL.to_string(), self.run.clone())])
    }

    /// The node stops: no Lease renewal, no pod handled; Ready turns Unknown and the
    /// unreachable taints appear, as the node-lifecycle controller would set them.
    pub async fn kill(&self, node: &str) -> Result<()> {
        if let Ok(mut a) = self.alive.lock() {
            a.remove(node);
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let t = serde_json::to_value(now())?;
        let status = json!({"status": {"conditions": [{
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
            "lastHeartbeatTime": t, "lastTransitionTime": t}]}});
        nodes
            .patch_status(node, &PatchParams::default(), &Patch::Merge(status))
            .await?;
        let taint = |key: &str, value: Option<&str>, effect: &str, added: bool| Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: added.then(now),
        };
        let taints = vec![
            taint(NODE_LABEL, Some(&self.run), "NoSchedule", false),
            taint("node.kubernetes.io/unreachable", None, "NoSchedule", true),
            taint("node.kubernetes.io/unreachable", None, "NoExecute", true),
        ];
        nodes
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints}})),
            )
            .await?;
        Ok(())
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.task.abort();
        // Synchronous: Drop cannot await, and the nodes must not outlive the test.
        let _ = std::process::Command::new(&self.kubectl.0)
            .env("KUBECONFIG", &self.kubectl.1)
            .args(["delete", "node", "--wait=false", "-l"])
            .arg(format!("{NODE_LABEL}={}", self.run))
            .output();
        let _ = std::process::Command::new(&self.kubectl.0)
            .env("KUBECONFIG", &self.kubectl.1)
            .args(["-n", "kube-node-lease", "delete", "lease", "--wait=false"])
            .args(&self.names)
            .output();
    }
}

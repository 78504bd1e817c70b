//! Readiness is real (issue 11, item 4): a 2-node group is Available only when every rank
//! has joined and its engine is healthy, not when its pods merely run.
//!
//! KWOK runs no readiness probes, so the SimFleet is the prober here, as a kubelet would
//! be: it reads each pod's launcher `/readyz` and writes the pods' Ready/ContainersReady
//! conditions through the status subresource. The namespace is named `probed-*`, so KWOK
//! starts these pods not ready (e2e/kwok/pod-ready-probed.yaml) and never marks them
//! Ready itself. The fleet holds rank 1 back: the leader runs but its group never
//! completes. From the model's creation until rank 1 is released, no pod of the group is
//! Ready and the model is not Available (reported as Available=False, ReplicasNotReady);
//! once rank 1 starts and joins, the group becomes Ready as a whole and the model
//! Available.
//!
//! The group runs on two H800 nodes this test adds (labelled with its namespace, removed
//! at the end): the shared H100 nodes are often busy with other suites, and no suite uses
//! H800s.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::fixtures::kwok_node;
use deepseek_e2e::sim::{ready_condition, SimFleet, SimOptions, PROBED_NAMESPACE_PREFIX};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::Api;

/// Accelerator nodes are shared with other suites: wait generously for them.
const T: Duration = Duration::from_secs(300);

fn rank_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get("inference.deepseek-operator.dev/rank")
        .map(String::as_str)
}

const OWNER: &str = "e2e.deepseek.ai/owner";

/// Adds a simulated 8 x H800 node owned by namespace `ns` (KWOK heartbeats it).
async fn add_h800_node(nodes: &Api<Node>, name: &str, ns: &str, ip: &str) -> Result<()> {
    kwok_node(
        nodes,
        name,
        serde_json::json!({"nvidia.com/gpu.product": "NVIDIA-H800-80GB-HBM3", OWNER: ns}),
        serde_json::json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
        serde_json::json!({"nvidia.com/gpu": "8", "cpu": "192", "memory": "2Ti"}),
        ip,
    )
    .await
}

#[tokio::test]
async fn a_group_with_a_rank_that_never_joins_is_not_available_until_it_joins() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let launcher = launcher().await?;
    let ns = cluster
        .namespace(&format!("{PROBED_NAMESPACE_PREFIX}readiness"))
        .await?;
    ensure!(
        ns.name().starts_with(PROBED_NAMESPACE_PREFIX),
        "{}",
        ns.name()
    );
    let nodes: Api<Node> = Api::all(cluster.client());
    let node_names = [
        format!("h800-{}-0", ns.name()),
        format!("h800-{}-1", ns.name()),
    ];
    let mut result = Ok(());
    for (name, ip) in node_names.iter().zip(["127.0.9.21", "127.0.9.22"]) {
        if result.is_ok() {
            result = add_h800_node(&nodes, name, ns.name(), ip).await;
        }
    }
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    if result.is_ok() {
        result = scenario(&ns, launcher).await;
    }
    for name in &node_names {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
    result.with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    ns.finish().await
}

async fn scenario(ns: &deepseek_e2e::TestNamespace, launcher: std::path::PathBuf) -> Result<()> {
    let opts = SimOptions::new(launcher).probe_readiness().hold_rank(1);
    let fleet = SimFleet::start(ns.client(), ns.name(), opts);

    let mut model = example("r1-fp8-h100-multinode.yaml")?;
    model.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("h800".into()),
        node_selector: Some([(OWNER.to_string(), ns.name().to_string())].into()),
        ..Default::default()
    });
    let name = model.metadata.name.clone().context("name")?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();

    // Samples the whole time rank 1 is held: any Ready pod or Available model is a failure.
    let held = Arc::new(AtomicBool::new(true));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let sampler = {
        let (held, violations) = (held.clone(), violations.clone());
        let (pods, models, name) = (pods.clone(), models.clone(), name.clone());
        tokio::spawn(async move {
            while held.load(Ordering::SeqCst) {
                let mut found = Vec::new();
                if let Ok(list) = model_pods(&pods, &name).await {
                    for p in list.iter().filter(|p| is_running_ready(p)) {
                        found.push(format!(
                            "pod {:?} Ready: {:?}",
                            p.metadata.name,
                            ready_condition(p)
                        ));
                    }
                }
                if let Ok(m) = models.get(&name).await {
                    if let Some((s, r, msg)) =
                        condition(&m, "Available").filter(|(s, _, _)| s == "True")
                    {
                        found.push(format!("model Available={s} ({r}: {msg})"));
                    }
                }
                if let Ok(mut v) = violations.lock() {
                    v.extend(found);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    apply_model(&models, &model).await?;

    // Both pods run; only the leader's launcher does, and the fleet has reported what it
    // says: the rendezvous is incomplete. The model reports the group not ready.
    let leader_message = wait_for(
        T,
        "the fleet reports the leader not ready, missing rank 1",
        || async {
            let list = model_pods(&pods, &name).await?;
            let running = list
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            let leader = list.iter().find(|p| rank_of(p) == Some("0"));
            let msg = leader
                .and_then(ready_condition)
                .filter(|(ready, m)| !ready && m.contains("missing ranks [1]"));
            Ok((running == 2 && fleet.running().len() == 1)
                .then_some(msg)
                .flatten())
        },
    )
    .await?;
    let (reason, message) = wait_condition(&models, &name, "Available", "False", T).await?;
    ensure!(reason == "ReplicasNotReady", "{reason}: {message}");
    ensure!(message.starts_with("0 of 1"), "{message}");

    held.store(false, Ordering::SeqCst);
    sampler.await?;
    let seen = violations.lock().map(|v| v.clone()).unwrap_or_default();
    ensure!(
        seen.is_empty(),
        "while rank 1 was held (leader: {leader_message:?}): {seen:#?}"
    );

    // Rank 1 starts and joins: the whole group becomes Ready, the model Available.
    fleet.release_rank(1);
    let ready = wait_groups(&pods, &name, 1, 2, T).await?;
    for p in &ready {
        let (ready, message) = ready_condition(p).context("a Ready condition")?;
        ensure!(ready && message.contains("ready"), "{message}");
    }
    let (reason, _) = wait_condition(&models, &name, "Available", "True", T).await?;
    ensure!(reason == "ReplicasReady", "{reason}");
    ensure!(fleet.running().len() == 2, "{:?}", fleet.running());
    Ok(())
}

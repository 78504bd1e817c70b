//! End to end with a real node autoscaler (issue 16): Karpenter's KWOK cloud provider on the
//! `cloud` topology (`e2e/cluster up --topology cloud`), which starts with no accelerator
//! node. The R1 FP8 example (one group = 2 pods of 8 x H100 on distinct nodes) autoscales
//! 1..2 against the `h100` NodePool (limit 32 GPUs = 4 nodes) read as a pool:
//!
//! - applied, its first group's 2 nodes are created by Karpenter and the group runs;
//! - a load step adds a second group and Karpenter adds 2 more nodes;
//! - the load stops, the second group goes, and Karpenter removes its 2 empty nodes
//!   (WhenEmpty consolidation) without evicting a rank of the group still serving;
//! - the NodePool's template edited (its nodes drift), Karpenter declines to replace the
//!   serving group's nodes because its pods carry `karpenter.sh/do-not-disrupt`;
//! - the model deleted, every node Karpenter made is gone: no GPU held at zero;
//! - scale from zero with no GPU node (issue 27): the same model at zero replicas with
//!   `holdRequests`; 20 streamed chats held at its front, the 21st refused with 503 and
//!   Retry-After; Karpenter creates the group's 2 nodes, every chat is answered in full
//!   exactly once, and the cold-start timeline includes "nodes created";
//! - a NodePool whose limit holds 3 nodes, for a model of 2 groups of 2: Karpenter makes 3
//!   nodes and stops at the limit, one group is whole and the other has one rank on a node.
//!   The model reports `CapacityPending` with the NodeClaims' state and Karpenter's limit
//!   message; after `capacityPendingTimeoutSeconds` the partial group is removed whole,
//!   Karpenter removes the node it held, and after `capacityRetrySeconds` the group is
//!   created again;
//! - nodes that boot for longer than `capacityPendingTimeoutSeconds` (held back by a
//!   startup taint, as a GPU node's driver setup holds a real one) cost nothing: the bound
//!   counts from the moment one rank is bound while the other is not, so the group,
//!   created long before its nodes could take it, stays and runs whole;
//! - a NodePool whose limit allows 1 of the 2 nodes a group needs is refused at planning
//!   (`Planned=False`, naming the NodePool, saying no group can ever fit): no pod, no node.
//!
//! Groups are whole at every step (wait_groups counts pods per group). Reaction times are
//! printed for docs/autoscaling.md, never asserted. The test switches the cluster to the
//! cloud topology and puts back the topology it found.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::front_client::*;
use common::load::LoadGen;
use common::*;
use deepseek_e2e::sim::{SimFleet, SimOptions};
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, ResourceExt};

const T: Duration = Duration::from_secs(300);
const NODEPOOL: &str = "h100";
const WINDOW_S: u64 = 10;
/// A NodePool the test adds, with room for one H100 node (8 GPUs) only.
const SMALL: &str = "h100-one";
/// A NodePool the test adds, with room for three H100 nodes (24 GPUs).
const LIMITED: &str = "h100-three";
/// A NodePool the test adds, whose nodes come up with a startup taint the test lifts.
const SLOW: &str = "h100-slow";
/// The startup taint of SLOW's nodes: pods need not tolerate it (Karpenter expects another
/// component to remove it when the node is ready), and they cannot be bound until it goes.
const BOOTING: &str = "e2e.deepseek.ai/booting";
/// How long a group stays partial (under the bound) before its second node is released.
const HOLD: Duration = Duration::from_secs(5);
/// The operator's bounds for a partly placed group (short, so the test is quick): removed
/// after PENDING_S, created again RETRY_S (to 1.25 x) later. RETRY_S is well above the
/// time Karpenter takes to remove an empty node here (20-60 s).
const PENDING_S: u64 = 20;
const RETRY_S: u64 = 120;

fn nodepool_api(cluster: &Cluster) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"),
        "nodepools",
    );
    Api::all_with(cluster.client(), &ar)
}

/// `e2e/cluster up --topology NAME` (with this process's DSO_* environment): starts or
/// reuses the cluster and applies the topology (for `cloud`, also Karpenter).
async fn cluster_up(topology: &str) -> Result<()> {
    let mut cmd = std::process::Command::new(Cluster::script());
    cmd.args(["up", "--topology", topology]);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    ensure!(
        out.status.success(),
        "e2e/cluster up --topology {topology} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The topology the running cluster was started with, if any (to put it back).
fn current_topology() -> Option<PathBuf> {
    let f = Cluster::default_state_dir().join("topology");
    let t = std::fs::read_to_string(f).ok()?;
    Some(PathBuf::from(t.trim())).filter(|p| p.is_file())
}

/// Nodes Karpenter created for `nodepool`, by name.
async fn nodepool_nodes(nodes: &Api<Node>, nodepool: &str) -> Result<BTreeSet<String>> {
    Ok(nodes
        .list(&ListParams::default().labels(&format!("karpenter.sh/nodepool={nodepool}")))
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect())
}

fn internal_ips(n: &Node) -> Vec<String> {
    n.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_node_count(nodes: &Api<Node>, want: usize) -> Result<BTreeSet<String>> {
    wait_pool_nodes(nodes, NODEPOOL, want).await
}

async fn wait_pool_nodes(nodes: &Api<Node>, pool: &str, want: usize) -> Result<BTreeSet<String>> {
    wait_for(
        T,
        &format!("NodePool {pool} has {want} node(s)"),
        || async {
            let n = nodepool_nodes(nodes, pool).await?;
            Ok((n.len() == want).then_some(n))
        },
    )
    .await
}

/// Every pod is on a node of the NodePool, the ranks of a group on distinct nodes.
fn on_nodepool_nodes(pods: &[Pod], karpenter: &BTreeSet<String>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for p in pods {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .context("a Running pod has a node")?;
        ensure!(
            karpenter.contains(&node),
            "{} runs on {node}, not a node of NodePool {NODEPOOL} {karpenter:?}",
            p.name_any()
        );
        ensure!(seen.insert(node.clone()), "two ranks share node {node}");
    }
    Ok(())
}

/// Sets (or with `None` removes) an annotation of the NodePool's node template: Karpenter
/// hashes the template, so a change makes its nodes drift. The operator reads no template
/// annotation, so its pool and pods do not change.
async fn set_template_annotation(cluster: &Cluster, value: Option<&str>) -> Result<()> {
    let api = nodepool_api(cluster);
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "e2e.deepseek.ai/drift": value
    }}}}});
    api.patch(NODEPOOL, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The NodeClaims of a NodePool.
async fn nodeclaims(cluster: &Cluster, pool: &str) -> Result<Vec<DynamicObject>> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"),
        "nodeclaims",
    );
    let api: Api<DynamicObject> = Api::all_with(cluster.client(), &ar);
    Ok(api
        .list(&ListParams::default().labels(&format!("karpenter.sh/nodepool={pool}")))
        .await?
        .items)
}

/// An H100 NodePool like e2e/karpenter/nodepools.yaml's, with its own name and GPU limit.
fn h100_nodepool(name: &str, gpus: u32) -> Result<DynamicObject> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"},
                    "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]}],
                    "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                    "expireAfter": "Never"
                }
            },
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5s"},
            "limits": {"nvidia.com/gpu": gpus.to_string()}
        }
    }))?)
}

async fn apply_nodepool(cluster: &Cluster, np: &DynamicObject) -> Result<()> {
    nodepool_api(cluster)
        .patch(
            &np.name_any(),
            &PatchParams::apply("e2e-cloud").force(),
            &Patch::Apply(np),
        )
        .await?;
    Ok(())
}

async fn delete_nodepool(cluster: &Cluster, name: &str) -> Result<()> {
    match nodepool_api(cluster)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The R1 FP8 example as `name`, pinned to NodePool `pool`.
fn r1_on(name: &str, pool: &str) -> Result<DeepSeekModel> {
    let mut m = example("r1-fp8-h100-multinode.yaml")?;
    m.metadata.name = Some(name.into());
    if let Some(a) = m.spec.accelerator.as_mut() {
        a.node_selector = Some([("karpenter.sh/nodepool".to_string(), pool.to_string())].into());
    }
    Ok(m)
}

/// NodeClaims of the NodePool whose `Drifted` condition is True, by node name.
async fn drifted_nodes(cluster: &Cluster) -> Result<BTreeSet<String>> {
    let claims = nodeclaims(cluster, NODEPOOL).await?;
    Ok(claims
        .iter()
        .filter(|c| {
            c.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Drifted" && c["status"] == "True")
            })
        })
        .filter_map(|c| c.data["status"]["nodeName"].as_str().map(str::to_string))
        .collect())
}

/// Nodes for which Karpenter published DisruptionBlocked naming the do-not-disrupt pod.
async fn blocked_by_annotation(cluster: &Cluster) -> Result<BTreeSet<String>> {
    let events: Api<Event> = Api::all(cluster.client());
    Ok(events
        .list(&ListParams::default().fields("reason=DisruptionBlocked,involvedObject.kind=Node"))
        .await?
        .items
        .iter()
        .filter(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("karpenter.sh/do-not-disrupt"))
        })
        .filter_map(|e| e.involved_object.name.clone())
        .collect())
}

#[tokio::test]
async fn karpenter_adds_whole_groups_of_nodes_and_removes_them_after_scale_down() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let previous = current_topology();
    cluster_up("cloud").await?;
    let cluster = Cluster::ensure().await?;
    let result = scenario(&cluster).await;
    // The NodePool as e2e/karpenter/nodepools.yaml has it (no drift for later runs).
    let restored = set_template_annotation(&cluster, None).await;
    let small_gone = delete_nodepool(&cluster, SMALL).await;
    let limited_gone = delete_nodepool(&cluster, LIMITED).await;
    let slow_gone = delete_nodepool(&cluster, SLOW).await;
    // Put back what other suites expect (this also stops Karpenter).
    if let Some(t) = previous.filter(|t| !t.ends_with("cloud.yaml")) {
        cluster_up(&t.display().to_string()).await?;
    }
    result
        .and(restored)
        .and(small_gone)
        .and(limited_gone)
        .and(slow_gone)
}

async fn scenario(cluster: &Cluster) -> Result<()> {
    install_crd(cluster).await?;
    let nodes: Api<Node> = Api::all(cluster.client());
    // A cloud cluster with no accelerator node (the system node is CPU only).
    let all = nodes.list(&ListParams::default()).await?.items;
    let gpus: Vec<String> = all
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .is_some_and(|a| a.contains_key("nvidia.com/gpu"))
        })
        .map(|n| n.name_any())
        .collect();
    ensure!(
        gpus.is_empty(),
        "the cloud topology starts with GPU nodes: {gpus:?}"
    );

    let launcher = launcher().await?;
    let ns = cluster.namespace("karpenter").await?;
    let _op = operator_with_config(
        cluster,
        "cloud",
        &format!("capacityPendingTimeoutSeconds: {PENDING_S}\ncapacityRetrySeconds: {RETRY_S}\n"),
        None,
    )
    .await?;
    let fleet = SimFleet::start(
        ns.client(),
        ns.name(),
        SimOptions::new(launcher.clone()).env("DSO_SIM_TIME_SCALE", "10"),
    );

    let mut model = example("r1-fp8-h100-multinode.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    model.spec.replicas = None;
    model.spec.autoscaling = Some(serde_json::from_value(serde_json::json!({
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetQueueDepth": 4,
        "intervalSeconds": 1,
        "scaleDownStabilizationSeconds": WINDOW_S,
        "maxScaleUpStep": 1,
        // The NodePool's nodes do not exist until the group's pods are pending.
        "allowNodeProvisioning": true,
    }))?);
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();

    // Applied on a cluster with no GPU node: planned on the NodePool, nodes created.
    let applied = Instant::now();
    apply_model(&models, &model).await?;
    let (_, planned) = wait_condition(&models, &name, "Planned", "True", T).await?;
    ensure!(
        planned.contains(&format!("Karpenter NodePool {NODEPOOL}")),
        "Planned names the NodePool: {planned}"
    );
    let plan = models.get(&name).await?.status.and_then(|s| s.plan);
    ensure!(
        plan.as_ref().and_then(|p| p.pool.as_deref()) == Some("karpenter-h100"),
        "status.plan.pool: {plan:?}"
    );
    let created = wait_node_count(&nodes, 2).await?;
    let nodes_at = applied.elapsed();
    let first = wait_groups(&pods, &name, 1, 2, T).await?;
    let running_at = applied.elapsed();
    on_nodepool_nodes(&first, &created)?;
    for p in &first {
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        ensure!(
            ann.get("karpenter.sh/do-not-disrupt").map(String::as_str) == Some("true"),
            "{} has no do-not-disrupt annotation",
            p.name_any()
        );
    }
    for n in &created {
        let ips = internal_ips(&nodes.get(n).await?);
        ensure!(
            !ips.is_empty() && ips.iter().all(|ip| ip.starts_with("127.")),
            "node {n} has InternalIPs {ips:?}, not loopback"
        );
    }
    eprintln!(
        "model applied -> 2 nodes created {:.1}s -> group Running {:.1}s",
        nodes_at.as_secs_f64(),
        running_at.as_secs_f64()
    );

    // Load step: a second group, and 2 more nodes for it.
    wait_condition(&models, &name, "MetricsAvailable", "True", T).await?;
    let load = LoadGen::start(ns.client(), ns.name().to_string(), name.clone(), 12);
    let step = Instant::now();
    load.set(10);
    let grown = wait_node_count(&nodes, 4).await?;
    let grown_at = step.elapsed();
    let both = wait_groups(&pods, &name, 2, 2, T).await?;
    let second_at = step.elapsed();
    on_nodepool_nodes(&both, &grown)?;
    let first_uids = uids(&first);
    ensure!(
        uids(&both).is_superset(&first_uids),
        "the first group's ranks were replaced while scaling up"
    );
    eprintln!(
        "load step -> 2 nodes added {:.1}s -> new group Running {:.1}s",
        grown_at.as_secs_f64(),
        second_at.as_secs_f64()
    );

    // Idle: back to one group; its 2 empty nodes go, the serving group's ranks stay.
    load.set(0);
    let idle = Instant::now();
    let one = wait_groups(&pods, &name, 1, 2, T).await?;
    let removed_group_at = idle.elapsed();
    let left = wait_node_count(&nodes, 2).await?;
    let removed_nodes_at = idle.elapsed();
    on_nodepool_nodes(&one, &left)?;
    let serving = uids(&one);
    ensure!(
        uids(&both).is_superset(&serving),
        "a serving rank was evicted and recreated during consolidation"
    );
    eprintln!(
        "idle -> group removed {:.1}s -> its nodes removed {:.1}s (window {WINDOW_S}s)",
        removed_group_at.as_secs_f64(),
        removed_nodes_at.as_secs_f64()
    );
    // Consolidation had its chance (the empty nodes are gone): the serving group is intact.
    wait_groups(&pods, &name, 1, 2, Duration::from_secs(5)).await?;
    ensure!(uids(&model_pods(&pods, &name).await?) == serving);

    // Drift while the group serves: Karpenter would replace the nodes, but the ranks'
    // do-not-disrupt annotation blocks it (it says so in a DisruptionBlocked Event).
    set_template_annotation(cluster, Some("1")).await?;
    wait_for(T, "the serving group's nodes drifted", || async {
        let d = drifted_nodes(cluster).await?;
        Ok(left.is_subset(&d).then_some(()))
    })
    .await?;
    wait_for(
        T,
        "Karpenter reports the drifted nodes blocked by do-not-disrupt",
        || async {
            let b = blocked_by_annotation(cluster).await?;
            Ok(left.is_subset(&b).then_some(()))
        },
    )
    .await?;
    wait_groups(&pods, &name, 1, 2, Duration::from_secs(5)).await?;
    ensure!(
        uids(&model_pods(&pods, &name).await?) == serving,
        "a rank was evicted on drift"
    );
    ensure!(
        nodepool_nodes(&nodes, NODEPOOL).await? == left,
        "a drifted node was replaced"
    );

    // The model deleted: no pod, and every node Karpenter made for it is gone.
    drop(load);
    models.delete(&name, &DeleteParams::default()).await?;
    wait_for(T, "the model's pods are gone", || async {
        Ok(model_pods(&pods, &name).await?.is_empty().then_some(()))
    })
    .await?;
    wait_node_count(&nodes, 0).await?;

    wakes_from_no_node(cluster, &launcher, &nodes).await?;
    limit_reached_while_creating(cluster, &models, &pods, &nodes).await?;
    nodes_boot_past_the_bound(cluster, &models, &pods, &nodes).await?;

    // A NodePool whose limit fits one of the group's two nodes: refused at planning.
    apply_nodepool(cluster, &h100_nodepool(SMALL, 8)?).await?;
    let tight = r1_on("r1-one", SMALL)?;
    apply_model(&models, &tight).await?;
    let (reason, message) = wait_for(
        T,
        "r1-one is refused at planning on the small NodePool",
        || async {
            let m = models.get("r1-one").await?;
            Ok(condition(&m, "Planned")
                .filter(|(s, _, msg)| {
                    s == "False" && msg.contains(&format!("Karpenter NodePool {SMALL}"))
                })
                .map(|(_, r, msg)| (r, msg)))
        },
    )
    .await?;
    ensure!(reason == "InsufficientAccelerators", "{reason}: {message}");
    ensure!(
        message.contains("no group can ever fit"),
        "the refusal says why it is final: {message}"
    );
    ensure!(
        model_pods(&pods, "r1-one").await?.is_empty(),
        "pods of a group the NodePool cannot hold"
    );
    ensure!(
        nodepool_nodes(&nodes, SMALL).await?.is_empty(),
        "Karpenter made a node for a group that cannot be whole"
    );
    eprintln!("limit below one group: {reason}: {message}");
    models.delete("r1-one", &DeleteParams::default()).await?;
    drop(fleet);
    ns.finish().await
}

/// Scale from zero on the cloud topology: no GPU node, a model at zero replicas behind its
/// front, 20 held chats; Karpenter makes the nodes and every chat is answered once.
async fn wakes_from_no_node(cluster: &Cluster, launcher: &Path, nodes: &Api<Node>) -> Result<()> {
    const HELD: usize = 20;
    // The engines "load weights" for 5 s, and the fleet probes readiness (a probed-*
    // namespace), so a group is Ready only once its launchers are.
    let ns = cluster.namespace("probed-cloud-wake").await?;
    let fleet = SimFleet::start(
        ns.client(),
        ns.name(),
        SimOptions::new(launcher.to_path_buf())
            .probe_readiness()
            .env("DSO_SIM_LOAD_SECONDS", "5")
            .env("DSO_SIM_TIME_SCALE", "0.05"),
    );
    let mut model = example("r1-fp8-h100-multinode.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    model.spec.replicas = Some(0);
    model.spec.autoscaling = Some(serde_json::from_value(held_at_zero(HELD))?);
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &model).await?;
    let c = client()?;
    let at = ready_fronts(&c, &pods, &name, T).await?[0];
    ensure!(
        nodepool_nodes(nodes, NODEPOOL).await?.is_empty(),
        "GPU nodes before the first request"
    );
    let wake = wake_for_held_chats(&c, at, &models, &pods, &ns.api(), &name, 2, HELD).await?;
    let group = model_pods(&pods, &name).await?;
    let made = nodepool_nodes(nodes, NODEPOOL).await?;
    on_nodepool_nodes(&group, &made)?;
    ensure!(
        wake.timeline
            .0
            .iter()
            .any(|(phase, _)| *phase == "nodes created"),
        "no nodesCreated phase though Karpenter made the nodes"
    );
    wake.timeline
        .print("R1 FP8, 2 nodes of 8 x H100 made by Karpenter");
    eprintln!(
        "  all {HELD} held chats answered in full {:.1}s after they were sent; 21st: 503, Retry-After {}",
        wake.answered_after.as_secs_f64(),
        wake.retry_after
    );

    // Its nodes go by consolidation (shown above); the steps after this use other NodePools.
    models.delete(&name, &DeleteParams::default()).await?;
    wait_for(T, "the woken model's pods are gone", || async {
        Ok(model_pods(&pods, &name).await?.is_empty().then_some(()))
    })
    .await?;
    drop(fleet);
    ns.finish().await
}

/// Nodes that take longer than the bound to boot: the group's pods wait unbound for more
/// than `capacityPendingTimeoutSeconds`, then one node comes up, and the other HOLD later.
/// The group is never removed (the bound counts from the first binding, not from pod
/// creation) and runs whole on the two nodes it waited for.
async fn nodes_boot_past_the_bound(
    cluster: &Cluster,
    models: &Api<DeepSeekModel>,
    pods: &Api<Pod>,
    nodes: &Api<Node>,
) -> Result<()> {
    const NAME: &str = "r1-slow";
    let mut pool = h100_nodepool(SLOW, 16)?;
    pool.data["spec"]["template"]["spec"]["startupTaints"] =
        serde_json::json!([{"key": BOOTING, "value": "true", "effect": "NoSchedule"}]);
    apply_nodepool(cluster, &pool).await?;
    let mut model = r1_on(NAME, SLOW)?;
    model.spec.replicas = Some(1);
    model.spec.autoscaling = None;
    apply_model(models, &model).await?;
    let created = wait_for(T, "r1-slow's 2 ranks exist", || async {
        let p = model_pods(pods, NAME).await?;
        Ok((p.len() == 2).then(|| uids(&p)))
    })
    .await?;
    let seen = Instant::now();
    let booting = wait_pool_nodes(nodes, SLOW, 2).await?;
    let mut order = booting.iter();
    let (Some(first), Some(second)) = (order.next(), order.next()) else {
        anyhow::bail!("NodePool {SLOW} has nodes {booting:?}");
    };

    // The nodes boot for longer than the bound: both ranks wait unbound.
    let bound = Duration::from_secs(PENDING_S + 2);
    watch_group(pods, NAME, &created, "both nodes boot", |placed| {
        anyhow::ensure!(placed == 0, "a rank was bound to a booting node");
        Ok(seen.elapsed() >= bound)
    })
    .await?;
    // One node is up: the group is partial, older than the bound, and stays.
    lift_taint(nodes, first).await?;
    watch_group(pods, NAME, &created, "one rank bound", |placed| {
        Ok(placed == 1)
    })
    .await?;
    let partial = Instant::now();
    watch_group(pods, NAME, &created, "partial for HOLD", |placed| {
        anyhow::ensure!(
            placed == 1,
            "{placed} ranks bound while one node is tainted"
        );
        Ok(partial.elapsed() >= HOLD)
    })
    .await?;
    lift_taint(nodes, second).await?;
    let running = wait_groups(pods, NAME, 1, 2, T).await?;
    ensure!(
        uids(&running) == created,
        "the group that waited for its nodes was replaced"
    );
    on_nodepool_nodes(&running, &booting)?;
    eprintln!(
        "nodes booting {:.1}s (bound {PENDING_S}s) -> group kept and Running",
        seen.elapsed().as_secs_f64()
    );

    models.delete(NAME, &DeleteParams::default()).await?;
    wait_for(T, "r1-slow's pods are gone", || async {
        Ok(model_pods(pods, NAME).await?.is_empty().then_some(()))
    })
    .await?;
    // Karpenter removes a deleted NodePool's nodes itself.
    delete_nodepool(cluster, SLOW).await
}

/// Polls a group's pods until `done(bound ranks)` says so, failing at once when the group
/// is no longer the one created (`created` uids) or `done` fails.
async fn watch_group(
    pods: &Api<Pod>,
    name: &str,
    created: &BTreeSet<String>,
    what: &str,
    mut done: impl FnMut(usize) -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + T;
    loop {
        let live = model_pods(pods, name).await?;
        ensure!(
            uids(&live) == *created,
            "{name}'s group was removed or replaced while waiting until {what}"
        );
        let placed = live
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
            .count();
        if done(placed).with_context(|| format!("while waiting until {what}"))? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes the BOOTING taint from a node (what a node's own setup would do when ready).
async fn lift_taint(nodes: &Api<Node>, name: &str) -> Result<()> {
    wait_for(
        T,
        &format!("{name}'s {BOOTING} taint is lifted"),
        || async {
            let mut node = nodes.get(name).await?;
            let taints = node.spec.as_mut().and_then(|s| s.taints.as_mut());
            let Some(taints) = taints.filter(|t| t.iter().any(|t| t.key == BOOTING)) else {
                anyhow::bail!("{name} has no {BOOTING} taint to lift");
            };
            taints.retain(|t| t.key != BOOTING);
            match nodes.replace(name, &PostParams::default(), &node).await {
                Ok(_) => Ok(Some(())),
                // Karpenter wrote the node meanwhile: read it again.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(e.into()),
            }
        },
    )
    .await
}

/// Karpenter reaches the NodePool's limit while creating a model's groups: one group whole,
/// one rank of the other on a node. CapacityPending says what Karpenter says; after the
/// bound the half group goes whole, its node goes, and the group is created again later.
async fn limit_reached_while_creating(
    cluster: &Cluster,
    models: &Api<DeepSeekModel>,
    pods: &Api<Pod>,
    nodes: &Api<Node>,
) -> Result<()> {
    const NAME: &str = "r1-limit";
    apply_nodepool(cluster, &h100_nodepool(LIMITED, 24)?).await?;
    let mut model = r1_on(NAME, LIMITED)?;
    model.spec.replicas = Some(2);
    model.spec.autoscaling = None;
    let applied = Instant::now();
    apply_model(models, &model).await?;
    let (_, planned) = wait_condition(models, NAME, "Planned", "True", T).await?;
    ensure!(planned.contains(LIMITED), "planned on {LIMITED}: {planned}");

    // Karpenter stops at 3 nodes; the model says so, naming every NodeClaim and its state.
    let karpenter_said = format!("exceed limits for nodepool (NodePool={LIMITED})");
    let (claims, message) = wait_for(
        T,
        "CapacityPending with the NodeClaims and Karpenter's limit message",
        || async {
            let m = models.get(NAME).await?;
            let Some((_, reason, msg)) = condition(&m, "Degraded") else {
                return Ok(None);
            };
            let claims: BTreeSet<String> = nodeclaims(cluster, LIMITED)
                .await?
                .iter()
                .map(|c| c.name_any())
                .collect();
            let ok = reason == "CapacityPending"
                && claims.len() == 3
                && claims
                    .iter()
                    .all(|c| msg.contains(&format!("{c} Initialized")))
                && msg.contains(&format!("Karpenter NodePool {LIMITED}: NodeClaims"))
                && msg.contains(&karpenter_said);
            Ok(ok.then_some((claims, msg)))
        },
    )
    .await?;
    let reported_at = applied.elapsed();
    let three = nodepool_nodes(nodes, LIMITED).await?;
    ensure!(three.len() == 3, "3 nodes at the limit: {three:?}");
    let m = models.get(NAME).await?;
    let scheduled = condition(&m, "Scheduled");
    ensure!(
        scheduled
            .as_ref()
            .is_some_and(|(s, r, _)| s == "False" && r == "CapacityPending"),
        "Scheduled: {scheduled:?}"
    );
    eprintln!(
        "limit reached while creating -> CapacityPending {:.1}s: {message}",
        reported_at.as_secs_f64()
    );

    // After the bound: the half group is gone whole (one whole group left), and Karpenter
    // removes the node its placed rank held.
    let whole = wait_groups(pods, NAME, 1, 2, T).await?;
    let removed_at = applied.elapsed();
    let left = wait_pool_nodes(nodes, LIMITED, 2).await?;
    let node_gone_at = applied.elapsed();
    on_nodepool_nodes(&whole, &left)?;
    ensure!(
        removed_at.as_secs() >= PENDING_S,
        "removed after {removed_at:?}, before the {PENDING_S}s bound"
    );
    let gone: Vec<&String> = three.difference(&left).collect();
    ensure!(gone.len() == 1, "one node removed: {gone:?}");
    let claims_left = nodeclaims(cluster, LIMITED).await?.len();
    ensure!(
        claims_left == 2,
        "{claims_left} NodeClaims left of {claims:?}"
    );
    // Creation waits for the retry, saying when.
    let m = models.get(NAME).await?;
    let degraded = condition(&m, "Degraded");
    ensure!(
        degraded.as_ref().is_some_and(|(s, r, msg)| s == "True"
            && r == "CapacityPending"
            && msg.contains("creating it again at")
            && msg.contains(&karpenter_said)),
        "while the retry waits: {degraded:?}"
    );
    let live = model_pods(pods, NAME).await?;
    ensure!(
        live.len() == 2,
        "pods while the retry waits: {}",
        live.len()
    );
    eprintln!(
        "partial group removed {:.1}s, its node gone {:.1}s after the model was applied",
        removed_at.as_secs_f64(),
        node_gone_at.as_secs_f64()
    );

    // The retry: the second group is created again (and waits as before).
    wait_for(T, "the removed group is created again", || async {
        Ok((model_pods(pods, NAME).await?.len() > 2).then_some(()))
    })
    .await?;
    let retried_at = applied.elapsed();
    ensure!(
        retried_at >= removed_at + Duration::from_secs(RETRY_S) - Duration::from_secs(PENDING_S),
        "retried {retried_at:?} after applying, removed at {removed_at:?}: sooner than the {RETRY_S}s backoff"
    );
    eprintln!(
        "created again {:.1}s after the model was applied",
        retried_at.as_secs_f64()
    );

    models.delete(NAME, &DeleteParams::default()).await?;
    wait_for(T, "r1-limit's pods are gone", || async {
        Ok(model_pods(pods, NAME).await?.is_empty().then_some(()))
    })
    .await?;
    wait_pool_nodes(nodes, LIMITED, 0).await?;
    delete_nodepool(cluster, LIMITED).await
}

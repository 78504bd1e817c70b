//! End to end on the real control plane: scaling adds and removes whole groups without
//! touching the others, an image change rolls out one group at a time while the rest keep
//! serving, an operator killed mid-rollout converges after restart with no duplicates,
//! and a second replica takes over when the leader dies.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;

const T: Duration = Duration::from_secs(120);
const HASH: &str = "inference.deepseek-operator.dev/template-hash";
const GROUP_ID: &str = "inference.deepseek-operator.dev/group-id";

fn label(p: &Pod, key: &str) -> String {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}

fn uids(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect()
}

/// Groups (by id) of live pods, with whether every pod of the group is ready.
fn groups(pods: &[Pod]) -> BTreeMap<String, (usize, bool)> {
    let mut out: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let e = out.entry(label(p, GROUP_ID)).or_insert((0, true));
        e.0 += 1;
        e.1 &= is_running_ready(p);
    }
    out
}

async fn scale(cluster: &Cluster, ns: &str, name: &str, replicas: u32) -> Result<()> {
    let out = cluster
        .kubectl()
        .args([
            "-n",
            ns,
            "scale",
            &format!("deepseekmodel/{name}"),
            &format!("--replicas={replicas}"),
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl scale failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_scale_adds_and_removes_whole_groups() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("scale").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    // R1 INT8 on Ascend 910B: each replica is a group of two 8-NPU pods.
    apply_model(&models, &example("r1-int8-ascend.yaml")?).await?;
    let first = wait_groups(&pods, "r1-ascend", 1, 2, T)
        .await
        .with_context(|| op.log_tail())?;

    scale(&cluster, ns.name(), "r1-ascend", 2).await?;
    let two = wait_groups(&pods, "r1-ascend", 2, 2, T)
        .await
        .with_context(|| op.log_tail())?;
    ensure!(
        uids(&first).is_subset(&uids(&two)),
        "scaling up restarted the existing group"
    );
    // Status follows the pods on the next reconcile.
    let st = wait_for(T, "status shows 2 of 2 replica groups", || async {
        let st = models.get("r1-ascend").await?.status.unwrap_or_default();
        let ok = st.replicas == 2 && st.ready_replicas == 2 && st.desired_replicas == 2;
        Ok(ok.then_some(st))
    })
    .await?;
    ensure!(
        st.selector.is_some_and(|s| s.contains("role=leader")),
        "the scale subresource selects the leaders"
    );

    scale(&cluster, ns.name(), "r1-ascend", 1).await?;
    let one = wait_groups(&pods, "r1-ascend", 1, 2, T).await?;
    ensure!(
        uids(&one) == uids(&first),
        "scaling down must keep slot 0 and remove slot 1 whole"
    );
    ns.finish().await
}

#[tokio::test]
async fn image_change_rolls_one_group_at_a_time_while_others_serve() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("rollout").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    // A 1-GPU model on the H100 pool: room to surge a group.
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("roll".into());
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("h100-80gb".into()),
        ..Default::default()
    });
    m.spec.replicas = Some(3);
    apply_model(&models, &m).await?;
    let before = wait_groups(&pods, "roll", 3, 1, T).await?;
    let old_hash = label(&before[0], HASH);

    m.spec.image = Some("registry.example/deepseek-runtime:canary".into());
    apply_model(&models, &m).await?;
    // Watch the rollout: never fewer than 3 ready groups, never more than one extra group.
    let deadline = Instant::now() + T;
    let (mut min_ready, mut max_groups, mut saw_mixed) = (usize::MAX, 0usize, false);
    loop {
        let live = model_pods(&pods, "roll").await?;
        let g = groups(&live);
        let ready = g.values().filter(|(_, r)| *r).count();
        min_ready = min_ready.min(ready);
        max_groups = max_groups.max(g.len());
        let hashes: BTreeSet<String> = live.iter().map(|p| label(p, HASH)).collect();
        saw_mixed |= hashes.len() > 1;
        let done = hashes.len() == 1 && !hashes.contains(&old_hash) && g.len() == 3 && ready == 3;
        if done {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "rollout did not finish: {g:?}\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        min_ready >= 3,
        "serving capacity dropped to {min_ready} ready groups during the rollout"
    );
    ensure!(
        max_groups <= 4,
        "more than one surge group at a time: {max_groups}"
    );
    let after = model_pods(&pods, "roll").await?;
    ensure!(
        uids(&after).is_disjoint(&uids(&before)),
        "every pod was replaced"
    );
    let _ = saw_mixed; // KWOK readies pods fast: mixed states may be too short to see.

    // A change that does not reach the pods restarts nothing.
    m.spec.autoscaling = None;
    let mut annotated = m.clone();
    annotated.metadata.annotations =
        Some(BTreeMap::from([("team".to_string(), "search".to_string())]));
    apply_model(&models, &annotated).await?;
    wait_condition(&models, "roll", "Progressing", "False", T).await?;
    ensure!(uids(&model_pods(&pods, "roll").await?) == uids(&after));
    ns.finish().await
}

#[tokio::test]
async fn operator_killed_mid_rollout_converges_without_duplicates() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let mut first = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("restart").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("crash".into());
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("h100-80gb".into()),
        ..Default::default()
    });
    m.spec.replicas = Some(4);
    apply_model(&models, &m).await?;
    let before = wait_groups(&pods, "crash", 4, 1, T).await?;
    let old_hash = label(&before[0], HASH);

    m.spec.image = Some("registry.example/deepseek-runtime:v2".into());
    apply_model(&models, &m).await?;
    wait_for(T, "the rollout has started", || async {
        let live = model_pods(&pods, "crash").await?;
        Ok(live
            .iter()
            .any(|p| label(p, HASH) != old_hash)
            .then_some(()))
    })
    .await?;
    first.kill();
    let second = Operator::start(&cluster, OperatorOptions::default()).await?;
    let done = wait_for(
        T,
        "the rollout converged under the new operator",
        || async {
            let live: Vec<Pod> = model_pods(&pods, "crash")
                .await?
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ok = live.len() == 4
                && live
                    .iter()
                    .all(|p| label(p, HASH) != old_hash && is_running_ready(p));
            Ok(ok.then_some(live))
        },
    )
    .await
    .with_context(|| second.log_tail())?;
    let slots: BTreeSet<String> = done
        .iter()
        .map(|p| label(p, "inference.deepseek-operator.dev/group"))
        .collect();
    ensure!(slots.len() == 4, "duplicate or missing slots: {slots:?}");
    ns.finish().await
}

#[tokio::test]
async fn leader_dies_and_the_standby_takes_over() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("leader").await?;
    let a = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "replica-a")),
            ..Default::default()
        },
    )
    .await?;
    let b = Operator::start(
        &cluster,
        OperatorOptions {
            leader_election: Some((ns.name(), "replica-b")),
            ..Default::default()
        },
    )
    .await?;
    let mut ops = [a, b];
    let leader = wait_for(T, "exactly one replica leads", || async {
        let la = ops[0].counter("deepseek_operator_leader").await?;
        let lb = ops[1].counter("deepseek_operator_leader").await?;
        Ok(match (la as u8, lb as u8) {
            (1, 0) => Some(0),
            (0, 1) => Some(1),
            _ => None,
        })
    })
    .await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("before".into());
    apply_model(&models, &m).await?;
    wait_groups(&pods, "before", 1, 1, T).await?;

    ops[leader].kill();
    let standby = 1 - leader;
    let killed_at = Instant::now();
    wait_for(T, "the standby acquired the lease", || async {
        Ok((ops[standby].counter("deepseek_operator_leader").await? == 1.0).then_some(()))
    })
    .await
    .with_context(|| ops[standby].log_tail())?;
    eprintln!(
        "leader handover took {:?} (lease duration 6 s)",
        killed_at.elapsed()
    );
    m.metadata.name = Some("after".into());
    m.spec.accelerator = Some(deepseek_operator::api::AcceleratorSelector {
        product: Some("h100-80gb".into()),
        ..Default::default()
    });
    apply_model(&models, &m).await?;
    wait_groups(&pods, "after", 1, 1, T)
        .await
        .with_context(|| ops[standby].log_tail())?;
    // The new leader also owns the first model: scaling it still works.
    models
        .patch_scale(
            "before",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await?;
    wait_groups(&pods, "before", 2, 1, T).await?;
    ns.finish().await
}

#[tokio::test]
async fn losing_a_rank_recreates_the_whole_group() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let ns = cluster.namespace("rank-loss").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    apply_model(&models, &example("r1-fp8-h100-multinode.yaml")?).await?;
    let before = wait_groups(&pods, "r1", 1, 2, T).await?;
    let worker = before
        .iter()
        .find(|p| label(p, "inference.deepseek-operator.dev/role") == "worker")
        .and_then(|p| p.metadata.name.clone())
        .context("worker pod")?;
    pods.delete(&worker, &Default::default()).await?;
    // A multi-node engine cannot lose a rank: both pods are replaced, not just the worker.
    let after = wait_for(
        T,
        "the group is recreated with new leader and worker",
        || async {
            let live: Vec<Pod> = model_pods(&pods, "r1").await?;
            let ok = live.len() == 2
                && live.iter().all(is_running_ready)
                && uids(&live).is_disjoint(&uids(&before));
            Ok(ok.then_some(live))
        },
    )
    .await
    .with_context(|| op.log_tail())?;
    ensure!(after.len() == 2);
    ns.finish().await
}

/// What the controller remembers of a model between passes (controller/memory.rs) goes
/// with the model: `deepseek_operator_remembered_models` counts it while it exists and
/// drops it once it is deleted.
#[tokio::test]
async fn a_deleted_models_memory_is_dropped() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("memory").await?;
    let op = Operator::start(
        &cluster,
        OperatorOptions {
            namespaces: Some(ns.name()),
            ..Default::default()
        },
    )
    .await?;
    let models: Api<DeepSeekModel> = ns.api();
    let model = example("r1-distill-qwen-1.5b-l4.yaml")?;
    let name = model.metadata.name.clone().context("name")?;
    apply_model(&models, &model).await?;
    let remembered = |want: f64| {
        let op = &op;
        move || async move {
            let n = op.counter("deepseek_operator_remembered_models").await?;
            Ok((n == want).then_some(()))
        }
    };
    wait_for(T, "the model is remembered", remembered(1.0))
        .await
        .with_context(|| op.log_tail())?;
    // Settled first, so no pass of the model is under way when it goes.
    let pods: Api<Pod> = ns.api();
    wait_groups(&pods, &name, 1, 1, T).await?;
    wait_condition(&models, &name, "Progressing", "False", T).await?;
    models
        .delete(&name, &kube::api::DeleteParams::default())
        .await?;
    // Within less than a sweep (memory::SWEEP, 60 s): the deletion event drops it.
    let prompt = Duration::from_secs(30);
    wait_for(
        prompt,
        "the deleted model's memory is dropped",
        remembered(0.0),
    )
    .await
    .with_context(|| op.log_tail())?;
    ns.finish().await
}

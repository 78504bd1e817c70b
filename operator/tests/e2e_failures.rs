//! End to end on the real control plane: replica groups survive real failures: scaling to
//! zero a model that cannot be placed, and a ResourceQuota that refuses part of a group.
//! (A lost node and a restarted rank are scenarios of the chaos suite, `chaos.rs`.)
//!
//! The groups run on nodes of a stand-in kubelet (`failures/fake_kubelet.rs`), not KWOK's,
//! so that a test can kill one node without disturbing the shared cluster.

mod common;
#[path = "failures/fake_kubelet.rs"]
#[allow(dead_code)] // shared with chaos.rs, which kills nodes; this suite does not
mod fake_kubelet;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use fake_kubelet::FakeNodes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;

const T: Duration = Duration::from_secs(120);

#[tokio::test]
async fn scaling_an_unplaceable_model_to_zero_deletes_its_groups() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("unplaceable").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 2).await?;
    let op = operator_with_config(&cluster, ns.name(), "{}\n", None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut m = nodes.model("idle")?;
    apply_model(&models, &m).await?;
    wait_groups(&pods, "idle", 1, 2, T)
        .await
        .with_context(|| op.log_tail())?;

    // Cordoned nodes are no capacity: the pool is gone and the model cannot be placed.
    let node_api: Api<Node> = Api::all(cluster.client());
    for n in &nodes.names {
        node_api
            .patch(
                n,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": true}})),
            )
            .await?;
    }
    wait_condition(&models, "idle", "Planned", "False", T)
        .await
        .with_context(|| op.log_tail())?;

    m.spec.replicas = Some(0);
    apply_model(&models, &m).await?;
    wait_for(T, "every pod of the unplaceable model is gone", || async {
        Ok(model_pods(&pods, "idle").await?.is_empty().then_some(()))
    })
    .await
    .with_context(|| op.log_tail())?;
    drop(nodes);
    ns.finish().await
}

/// Refusals of pod creation published as Events (counting an Event's repeats).
async fn refusals(events: &Api<Event>, model: &str) -> Result<Vec<String>> {
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CreateFailed"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(model))
        .flat_map(|e| {
            let n = e.series.as_ref().map_or(1, |s| s.count.max(1));
            std::iter::repeat_n(e.note.clone().unwrap_or_default(), n as usize)
        })
        .collect())
}

#[tokio::test]
async fn a_quota_short_of_a_group_is_reported_and_not_looped() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("quota").await?;
    let nodes = FakeNodes::start(&cluster, ns.name(), 2).await?;
    let op = operator_with_config(&cluster, ns.name(), "{}\n", None).await?;
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();
    let quotas: Api<ResourceQuota> = ns.api();
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    // Admission refuses every pod until the quota controller has filled in the status.
    wait_for(T, "the quota controller computed the quota", || async {
        let q = quotas.get("pods").await?;
        Ok(q.status.and_then(|s| s.hard).map(|_| ()))
    })
    .await?;

    // Every pod uid ever seen, and every deletion.
    let seen: Arc<Mutex<(BTreeSet<String>, usize)>> = Arc::default();
    let watch = {
        let (seen, pods) = (seen.clone(), pods.clone());
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = stream.next().await {
                let Ok(mut s) = seen.lock() else { break };
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        s.0.extend(p.metadata.uid);
                    }
                    watcher::Event::Delete(_) => s.1 += 1,
                    _ => {}
                }
            }
        })
    };

    apply_model(&models, &nodes.model("partial")?).await?;
    let events: Api<Event> = ns.api();
    let notes = wait_for(
        T,
        "two refused attempts were reported as Events",
        || async {
            let notes = refusals(&events, "partial").await?;
            Ok((notes.len() >= 2).then_some(notes))
        },
    )
    .await
    .with_context(|| op.log_tail())?;
    ensure!(
        notes.iter().all(|n| n.contains("exceeded quota")),
        "the Event carries the API server's answer: {notes:?}"
    );
    let (reason, message) = wait_condition(&models, "partial", "Degraded", "True", T).await?;
    ensure!(
        reason == "CreateFailed" && message.contains("exceeded quota"),
        "Degraded reports the refusal: {reason}: {message}"
    );
    let (created, deleted) = seen.lock().map(|s| (s.0.clone(), s.1)).unwrap_or_default();
    ensure!(
        created.len() == 1 && deleted == 0,
        "the rank that fit was kept, not recreated: {} pod(s) created, {deleted} deleted",
        created.len()
    );

    // Room for the whole group: the missing rank is added to the group already there.
    quotas
        .patch(
            "pods",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hard": {"pods": "2"}}})),
        )
        .await?;
    let group = wait_groups(&pods, "partial", 1, 2, T)
        .await
        .with_context(|| op.log_tail())?;
    wait_condition(&models, "partial", "Degraded", "False", T).await?;
    watch.abort();
    let (all, deleted) = seen.lock().map(|s| (s.0.clone(), s.1)).unwrap_or_default();
    ensure!(
        created.is_subset(&uids(&group)) && all.len() == 2 && deleted == 0,
        "completed in place: {} pod(s) ever created, {deleted} deleted",
        all.len()
    );
    drop(nodes);
    ns.finish().await
}

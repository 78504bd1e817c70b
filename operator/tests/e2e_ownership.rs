//! Never take over, on the real control plane: objects that already carry the names a
//! model's children would get, and that the model does not control, are left exactly as
//! they were. The model reports a `Conflict` condition and an Event naming them, creates
//! no pods, and deleting the model leaves them (the garbage collector removes only what
//! the model controls). Before this, the operator force-applied its own NetworkPolicy over
//! an administrator's `deny-all`, taking the namespace's default deny away, and deleting a
//! model named `deny-all` garbage-collected the administrator's policy.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

/// What must not change on an object the operator does not own.
fn fingerprint<K: Resource>(o: &K) -> (Option<String>, Option<String>, usize) {
    let m = o.meta();
    (
        m.uid.clone(),
        m.resource_version.clone(),
        m.owner_references.as_ref().map_or(0, Vec::len),
    )
}

#[tokio::test]
async fn objects_under_a_models_child_names_are_never_taken_over() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    let ns = cluster.namespace("takeover").await?;
    let policies: Api<NetworkPolicy> = ns.api();
    let services: Api<Service> = ns.api();
    let models: Api<DeepSeekModel> = ns.api();
    let pods: Api<Pod> = ns.api();

    // The administrator's default deny, and a Service of another team: both carry the
    // name a model called `deny-all` gives its NetworkPolicy and its API Service.
    let deny: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }))?;
    let deny = policies.create(&PostParams::default(), &deny).await?;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "deny-all", "labels": {"team": "other"}},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))?;
    let svc = services.create(&PostParams::default(), &svc).await?;

    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let mut m = example("r1-distill-qwen-1.5b-l4.yaml")?;
    m.metadata.name = Some("deny-all".into());
    let model = apply_model(&models, &m).await?;

    let (reason, message) = wait_condition(&models, "deny-all", "Conflict", "True", T)
        .await
        .with_context(|| op.log_tail())?;
    ensure!(reason == "ObjectNotOwned", "{reason}: {message}");
    ensure!(
        message.contains(&format!("NetworkPolicy {}/deny-all", ns.name()))
            && message.contains(&format!("Service {}/deny-all", ns.name())),
        "the condition names both objects: {message}"
    );
    let events: Api<Event> = ns.api();
    let event = wait_for(T, "a Conflict Event about the model", || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Conflict")
                    && e.regarding.as_ref().and_then(|r| r.uid.as_deref())
                        == model.metadata.uid.as_deref()
            }))
    })
    .await?;
    ensure!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains("deny-all")),
        "the Event names the object: {:?}",
        event.note
    );

    // Left as they were: not one write, no owner added, and nothing started behind them.
    ensure!(
        fingerprint(&policies.get("deny-all").await?) == fingerprint(&deny),
        "the administrator's NetworkPolicy was written to"
    );
    ensure!(
        fingerprint(&services.get("deny-all").await?) == fingerprint(&svc),
        "the other team's Service was written to"
    );
    ensure!(
        model_pods(&pods, "deny-all").await?.is_empty(),
        "pods were created without the model's own NetworkPolicy and Service"
    );

    // Deleting the model: the garbage collector removes what the model controls (a
    // ConfigMap owned by it shows when it has), and nothing else.
    let uid = model.uid().context("model uid")?;
    let owned: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "owned-by-deny-all"},
    }))?;
    let mut owned = owned;
    owned.metadata.owner_references = Some(vec![OwnerReference {
        api_version: DeepSeekModel::api_version(&()).into(),
        kind: DeepSeekModel::kind(&()).into(),
        name: "deny-all".into(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let cms: Api<ConfigMap> = ns.api();
    cms.create(&PostParams::default(), &owned).await?;
    models.delete("deny-all", &DeleteParams::default()).await?;
    wait_for(T, "the model's dependents are collected", || async {
        Ok(cms
            .get_opt("owned-by-deny-all")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let after = policies.get_opt("deny-all").await?;
    ensure!(
        after.as_ref().map(fingerprint) == Some(fingerprint(&deny)),
        "the administrator's NetworkPolicy went with the model: {after:?}"
    );
    let after = services.get_opt("deny-all").await?;
    ensure!(
        after.as_ref().map(fingerprint) == Some(fingerprint(&svc)),
        "the other team's Service went with the model: {after:?}"
    );
    drop(op);
    ns.finish().await
}

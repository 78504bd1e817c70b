//! `autoscaling.provider: keda` against KEDA's real CRDs (issue 6 item 4). KEDA's CRDs
//! come from KEDA's own Go module at the version pinned in e2e/versions.env
//! (`e2e/keda-crds install scaledobjects`, cached in ~/.cache/deepseek-operator/keda-<v>/);
//! no KEDA controller runs, so this proves the object is accepted by KEDA's schema (strict
//! field validation, CEL rules), not how KEDA acts on it.
//!
//! - the pure rendering (`build::keda::scaled_object`) passes a server-side dry-run apply
//!   with strict field validation, for the default form and for scale-to-zero with the
//!   annotation overrides, and the server keeps every field it was sent; two broken
//!   variants are refused, so the dry-run really validates;
//! - a running operator creates the ScaledObject of a `provider: keda` model, owned by
//!   the model and equal to the rendering;
//! - switching the provider back to `builtin` makes the operator delete it.

mod common;

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use deepseek_e2e::wait::wait_for;
use deepseek_e2e::Cluster;
use deepseek_operator::api::DeepSeekModel;
use deepseek_operator::config::OperatorConfig;
use deepseek_operator::desired::{keda, labels};
use k8s_openapi::api::core::v1::Event;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, ValidationDirective};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(120);

/// Every field of `sent` is in `got` with the same value (`got` may hold more: defaults,
/// server-set metadata).
fn missing_fields(sent: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, got) {
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in s {
                match g.get(k) {
                    Some(gv) => missing_fields(v, gv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k} dropped")),
                }
            }
        }
        (Value::Array(s), Value::Array(g)) if s.len() == g.len() => {
            for (i, (sv, gv)) in s.iter().zip(g).enumerate() {
                missing_fields(sv, gv, &format!("{path}[{i}]"), out);
            }
        }
        _ if sent == got => {}
        _ => out.push(format!("{path}: sent {sent}, got {got}")),
    }
}

/// Server-side dry-run apply with strict field validation: unknown or duplicate fields
/// are errors, not silently pruned.
async fn dry_run(api: &Api<DynamicObject>, so: &Value) -> Result<DynamicObject, kube::Error> {
    let name = so["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pp = PatchParams {
        dry_run: true,
        force: true,
        field_manager: Some("e2e-keda-dry-run".into()),
        field_validation: Some(ValidationDirective::Strict),
    };
    api.patch(&name, &pp, &Patch::Apply(so)).await
}

async fn accepted(api: &Api<DynamicObject>, so: &Value, what: &str) -> Result<()> {
    let got = dry_run(api, so)
        .await
        .map_err(|e| anyhow!("KEDA's CRD refused the rendered ScaledObject ({what}): {e}"))?;
    let got = serde_json::to_value(&got)?;
    let mut diff = Vec::new();
    missing_fields(&so["spec"], &got["spec"], "spec", &mut diff);
    missing_fields(
        &so["metadata"]["labels"],
        &got["metadata"]["labels"],
        "labels",
        &mut diff,
    );
    ensure!(
        diff.is_empty(),
        "the server changed the ScaledObject ({what}): {diff:?}"
    );
    Ok(())
}

/// The server's refusal of a broken object; `code` if it must be that one.
async fn refused(
    api: &Api<DynamicObject>,
    so: &Value,
    what: &str,
    code: Option<u16>,
) -> Result<String> {
    match dry_run(api, so).await {
        Ok(_) => bail!("KEDA's CRD accepted a broken ScaledObject ({what})"),
        Err(kube::Error::Api(s)) if code.is_none_or(|c| c == s.code) => Ok(s.message),
        Err(e) => bail!("unexpected error for a broken ScaledObject ({what}): {e}"),
    }
}

fn with_autoscaling(mut m: DeepSeekModel, a: Value) -> Result<DeepSeekModel> {
    m.spec.replicas = None;
    m.spec.autoscaling = Some(serde_json::from_value(a)?);
    Ok(m)
}

#[tokio::test]
async fn rendered_scaled_object_passes_kedas_crds_and_follows_the_provider() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::ensure().await?;
    install_crd(&cluster).await?;
    install_keda_crds(&cluster).await?;
    let ns = cluster.namespace("keda").await?;
    let models: Api<DeepSeekModel> = ns.api();
    let sos: Api<DynamicObject> =
        Api::namespaced_with(ns.client(), ns.name(), &keda::api_resource());

    let base = example("r1-autoscaled-h200.yaml")?;
    let name = base.metadata.name.clone().context("name")?;
    let keda_spec = json!({
        "minReplicas": 1, "maxReplicas": 2, "targetQueueDepth": 16, "provider": "keda",
        "intervalSeconds": 5, "scaleDownStabilizationSeconds": 120, "maxScaleUpStep": 1,
    });
    let model = with_autoscaling(base.clone(), keda_spec.clone())?;
    // The live object: namespace and uid, so the rendering carries the owner reference.
    let live = apply_model(&models, &model).await?;

    // 1. The pure rendering against KEDA's schema.
    let so = keda::scaled_object(&live, &OperatorConfig::default())
        .context("provider keda renders a ScaledObject")?;
    ensure!(so["metadata"]["ownerReferences"][0]["uid"].as_str() == live.uid().as_deref());
    accepted(&sos, &so, "default form").await?;

    let mut zero = with_autoscaling(
        live.clone(),
        json!({
            "minReplicas": 0, "maxReplicas": 8, "targetQueueDepth": 4, "provider": "keda",
            "intervalSeconds": 1, "scaleDownStabilizationSeconds": 30, "maxScaleUpStep": 3,
        }),
    )?;
    zero.annotations_mut().insert(
        keda::PROMETHEUS_QUERY_ANNOTATION.into(),
        "sum(dso_queue_depth)".into(),
    );
    let so_zero = keda::scaled_object(&zero, &OperatorConfig::default()).context("renders")?;
    ensure!(so_zero["spec"]["minReplicaCount"] == 0);
    accepted(&sos, &so_zero, "scale to zero, query annotation").await?;

    // The dry-run validates: a typo'd field and min > max are refused.
    let mut typo = so.clone();
    typo["spec"]["advanced"]["horizontalPodAutoscalerConfigs"] = json!({});
    // (Server-side apply refuses fields outside the schema while building the typed patch,
    // strict or not: 500 "field not declared in schema".)
    let msg = refused(&sos, &typo, "unknown field", None).await?;
    ensure!(msg.contains("horizontalPodAutoscalerConfigs"), "{msg}");
    let mut inverted = so.clone();
    inverted["spec"]["minReplicaCount"] = json!(3);
    let msg = refused(
        &sos,
        &inverted,
        "minReplicaCount > maxReplicaCount",
        Some(422),
    )
    .await?;
    ensure!(msg.contains("minReplicaCount"), "{msg}");
    eprintln!("KEDA CRDs accept the rendered ScaledObject; broken ones refused (e.g. {msg})");

    // 2. The operator creates it.
    let op = Operator::start(&cluster, OperatorOptions::default()).await?;
    let created = wait_for(T, "the operator created the ScaledObject", || async {
        Ok(sos.get_opt(&name).await?)
    })
    .await?;
    let created_json = serde_json::to_value(&created)?;
    // Digest-gated: the live one is this rendering (another suite's operator may have
    // applied the same rendering first, which is just as good).
    let want = keda::scaled_object(&models.get(&name).await?, &OperatorConfig::default())
        .context("renders")?;
    let mut diff = Vec::new();
    missing_fields(&want["spec"], &created_json["spec"], "spec", &mut diff);
    ensure!(diff.is_empty(), "live ScaledObject differs: {diff:?}");
    ensure!(
        created.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER),
        "managed-by label: {:?}",
        created.labels()
    );
    let owners = created.owner_references();
    ensure!(
        owners.len() == 1 && owners[0].uid == live.uid().unwrap_or_default(),
        "owned by the model: {owners:?}"
    );
    ensure!(
        created_json["spec"]["scaleTargetRef"]
            == json!({"apiVersion": "inference.deepseek-operator.dev/v1alpha1",
                      "kind": "DeepSeekModel", "name": name}),
        "{}",
        created_json["spec"]["scaleTargetRef"]
    );
    let events: Api<Event> = ns.api();
    let failed: Vec<String> = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ScaledObjectFailed"))
        .filter_map(|e| e.message)
        .collect();
    ensure!(failed.is_empty(), "ScaledObjectFailed events: {failed:?}");

    // 3. Back to the built-in autoscaler: the ScaledObject goes.
    let mut builtin = keda_spec;
    builtin["provider"] = json!("builtin");
    apply_model(&models, &with_autoscaling(base, builtin)?).await?;
    wait_for(T, "the operator deleted the ScaledObject", || async {
        Ok(sos.get_opt(&name).await?.is_none().then_some(()))
    })
    .await
    .map_err(|e| anyhow!("{e:#}; operator log:\n{}", op.log_tail()))?;
    drop(op);
    ns.finish().await
}

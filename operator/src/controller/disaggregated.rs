//! Reconcile of a disaggregated model (`serving.mode: disaggregated`): it owns no pods.
//! It keeps its two role models and its router (build/disaggregated.rs) as built, and
//! reports what they report. The role models are reconciled like any model; each status
//! change of one wakes this reconcile (`Context::wake`), and the router Deployment's
//! changes wake it through the owned-Deployment watch.
//!
//! Writes happen only when something differs from what is live (a digest annotation on
//! each object), so a model at rest causes none.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::apply::{check_ours, controller_uid, event, write_status};
use super::context::Context;
use super::error::Error;
use super::status::{self as cond, set};
use crate::api::{
    DeepSeekModel, DeepSeekModelStatus, KvTransferChoice, RoleStatus, RolesStatus, Vendor,
    FIELD_MANAGER,
};
use crate::build::disaggregated::{
    kv_store_objects, role_model, role_model_name, router_objects, ROLES,
};
use crate::build::hash::template_hash;
use crate::build::labels;
use deepseek_engine::Engine;

pub async fn reconcile(model: Arc<DeepSeekModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = model.name_any();
    let previous = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;
    let mut status = DeepSeekModelStatus {
        observed_generation: generation,
        ..Default::default()
    };

    let built = ROLES
        .iter()
        .map(|r| role_model(&model, *r))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|roles| Ok((roles, router_objects(&model, &ctx.config.router_image())?)));
    let (roles, router) = match built {
        Ok(b) => b,
        Err(message) => {
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                false,
                "Unsupported",
                &message,
                generation,
            );
            if previous.conditions != status.conditions {
                event(&ctx, &model, true, "Unsupported", message).await;
                write_status(&ctx, &model, &status).await?;
            }
            return Ok(Action::await_change());
        }
    };

    match keep(&ctx, &model, &ns, &roles, &router).await {
        Ok(kept) => finish(&ctx, &model, &name, previous, status, kept).await,
        Err(Error::Conflict(message)) => {
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                false,
                "NameConflict",
                &message,
                generation,
            );
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::CONFLICT,
                true,
                "ObjectNotOwned",
                &message,
                generation,
            );
            if previous.conditions != status.conditions {
                event(&ctx, &model, true, "Conflict", message).await;
                write_status(&ctx, &model, &status).await?;
            }
            // Rechecked now and then: the other object may be renamed or deleted.
            Ok(Action::requeue(std::time::Duration::from_secs(60)))
        }
        Err(e) => Err(e),
    }
}

/// What `keep` found live: the role models and the router Deployment.
struct Kept {
    roles: Vec<DeepSeekModel>,
    router: k8s_openapi::api::apps::v1::Deployment,
}

/// Applies what differs from the built objects, in order: role models, router, store.
async fn keep(
    ctx: &Context,
    model: &DeepSeekModel,
    ns: &str,
    roles: &[DeepSeekModel],
    router: &crate::build::disaggregated::RouterObjects,
) -> Result<Kept, Error> {
    // SGLang's `ascend` transfer meets at a config store that the roles' launch
    // configurations name. When the spec already says Ascend (the transfer, or a role's
    // vendor or product), the store goes first, so no rank starts before it; otherwise it
    // follows the first plan on Ascend (below), a few seconds after the roles plan.
    let chosen = model.spec.serving.as_ref().and_then(|s| s.kv_transfer);
    let store_first = chosen == Some(KvTransferChoice::Ascend)
        || (chosen.is_none() && roles.iter().any(|r| spec_on_ascend(ctx, r)));
    if store_first {
        ensure_kv_store(ctx, model, ns).await?;
    }
    let models = Api::<DeepSeekModel>::namespaced(ctx.client.clone(), ns);
    let mut live_roles = Vec::new();
    for desired in roles {
        // An autoscaled role's count is the autoscaler's: carried over, never reset.
        let carry = |d: &mut DeepSeekModel, live: &DeepSeekModel| {
            if d.spec.autoscaling.is_some() {
                d.spec.replicas = live.spec.replicas;
            }
        };
        live_roles.push(ensure(ctx, &models, desired, spec_digest(desired), carry).await?);
    }
    ensure_digested(ctx, ns, &router.service_account).await?;
    ensure_digested(ctx, ns, &router.role).await?;
    ensure_digested(ctx, ns, &router.role_binding).await?;
    let deployment = ensure_digested(ctx, ns, &router.deployment).await?;
    ensure_digested(ctx, ns, &router.service).await?;
    let planned_on_ascend = live_roles.iter().any(|m| {
        m.status
            .as_ref()
            .and_then(|s| s.plan.as_ref())
            .is_some_and(|p| p.vendor == Vendor::Ascend.as_str())
    });
    if !store_first && chosen.is_none() && planned_on_ascend {
        ensure_kv_store(ctx, model, ns).await?;
    }
    Ok(Kept {
        roles: live_roles,
        router: deployment,
    })
}

/// Whether a role model's spec puts it on Ascend before any plan: its vendor, or its
/// product's in the catalog.
fn spec_on_ascend(ctx: &Context, role: &DeepSeekModel) -> bool {
    let Some(a) = role.spec.accelerator.as_ref() else {
        return false;
    };
    a.vendor == Some(Vendor::Ascend)
        || a.product
            .as_deref()
            .and_then(|p| ctx.catalog.accelerator(p))
            .is_some_and(|acc| acc.vendor == Vendor::Ascend)
}

/// The Ascend KV store's Deployment and Service, as built.
async fn ensure_kv_store(ctx: &Context, model: &DeepSeekModel, ns: &str) -> Result<(), Error> {
    let image = ctx.config.image_for(Vendor::Ascend, Engine::Sglang);
    let (deployment, service) =
        kv_store_objects(model, &image).map_err(|_| Error::MissingField("metadata.uid"))?;
    ensure_digested(ctx, ns, &deployment).await?;
    ensure_digested(ctx, ns, &service).await?;
    Ok(())
}

/// The model's status from what its roles and router report.
async fn finish(
    ctx: &Context,
    model: &DeepSeekModel,
    name: &str,
    previous: DeepSeekModelStatus,
    mut status: DeepSeekModelStatus,
    kept: Kept,
) -> Result<Action, Error> {
    let generation = model.metadata.generation;
    let (live_roles, deployment) = (kept.roles, kept.router);

    let role_status = |m: &DeepSeekModel, role| -> RoleStatus {
        let s = m.status.clone().unwrap_or_default();
        let blocking = [cond::PLANNED, cond::AVAILABLE]
            .iter()
            .filter_map(|t| cond::get(&s.conditions, t))
            .find(|c| c.status != "True")
            .map(|c| c.message.clone());
        RoleStatus {
            model: role_model_name(name, role),
            replicas: s.replicas,
            ready_replicas: s.ready_replicas,
            desired_replicas: s.desired_replicas,
            product: s.plan.as_ref().map(|p| p.product.clone()),
            layout: s.plan.as_ref().map(|p| p.layout.clone()),
            gpus_per_replica: s.plan.as_ref().map(|p| p.gpus_per_replica),
            pool: s.plan.as_ref().and_then(|p| p.pool.clone()),
            message: blocking,
        }
    };
    let prefill = role_status(&live_roles[0], ROLES[0]);
    let decode = role_status(&live_roles[1], ROLES[1]);
    let router_ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    status.replicas = prefill.replicas + decode.replicas;
    status.ready_replicas = prefill.ready_replicas + decode.ready_replicas;
    status.desired_replicas = prefill.desired_replicas + decode.desired_replicas;

    let is_planned = |m: &DeepSeekModel| {
        m.status
            .as_ref()
            .and_then(|s| cond::get(&s.conditions, cond::PLANNED))
            .is_some_and(|c| c.status == "True")
    };
    let planned = live_roles.iter().all(is_planned);
    let unplanned = [&prefill, &decode]
        .into_iter()
        .zip(&live_roles)
        .find(|(_, m)| !is_planned(m))
        .map(|(r, _)| {
            format!(
                "{}: {}",
                r.model,
                r.message
                    .clone()
                    .unwrap_or_else(|| "not planned yet".into())
            )
        });
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::PLANNED,
        planned,
        if planned {
            "RolesPlanned"
        } else {
            "RolePending"
        },
        unplanned.unwrap_or_else(|| {
            format!(
                "prefill {} x{}, decode {} x{}",
                prefill.layout.as_deref().unwrap_or("?"),
                prefill.desired_replicas,
                decode.layout.as_deref().unwrap_or("?"),
                decode.desired_replicas
            )
        }),
        generation,
    );
    let missing: Vec<String> = [&prefill, &decode]
        .iter()
        .filter(|r| r.ready_replicas < 1)
        .map(|r| format!("{} has no ready group", r.model))
        .chain((router_ready < 1).then(|| "the router is not ready".to_string()))
        .collect();
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::AVAILABLE,
        missing.is_empty(),
        if missing.is_empty() {
            "Serving"
        } else {
            "RolesNotReady"
        },
        if missing.is_empty() {
            format!(
                "router -> {} prefill and {} decode group(s)",
                prefill.ready_replicas, decode.ready_replicas
            )
        } else {
            missing.join("; ")
        },
        generation,
    );
    status.roles = Some(RolesStatus {
        prefill,
        decode,
        router_ready_replicas: router_ready,
    });
    if comparable(&previous) != comparable(&status) {
        write_status(ctx, model, &status).await?;
    }
    // Role models wake this reconcile through a bounded broadcast that drops wake-ups when
    // a controller lags: a slow recheck bounds how stale status.roles can get.
    Ok(Action::requeue(std::time::Duration::from_secs(300)))
}

/// A status without condition timestamps, to compare.
fn comparable(s: &DeepSeekModelStatus) -> DeepSeekModelStatus {
    let mut s = s.clone();
    for c in &mut s.conditions {
        c.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        );
    }
    s.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    s
}

/// Digest of what the operator sets on a role model (labels, owner and spec).
fn spec_digest(m: &DeepSeekModel) -> String {
    template_hash(&(&m.metadata.labels, &m.metadata.owner_references, &m.spec))
}

/// Applies `desired` (with its digest annotation) unless the live object carries the
/// same digest; returns the live object. `carry` copies what the live object keeps
/// (fields another writer owns) into what is applied.
async fn ensure<K>(
    ctx: &Context,
    api: &Api<K>,
    desired: &K,
    digest: String,
    carry: impl FnOnce(&mut K, &K),
) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let what = || format!("{} {name}", K::kind(&()));
    let live = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: what(),
        source,
    })?;
    let current = |l: &K| {
        l.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::SPEC_DIGEST))
            == Some(&digest)
    };
    let owner = desired
        .meta()
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.uid.clone())
        .unwrap_or_default();
    check_ours(
        &what(),
        live.as_ref().map(|l| controller_uid(l.meta())),
        &owner,
    )?;
    let mut desired = desired.clone();
    match live {
        Some(live) if current(&live) => return Ok(live),
        Some(live) => carry(&mut desired, &live),
        None => {}
    }
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(labels::SPEC_DIGEST.to_string(), digest);
    ctx.metrics.write("apply", &K::plural(&()));
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|source| Error::Apply {
        what: what(),
        source,
    })
}

/// `ensure` for a namespaced object, digesting everything but its status.
async fn ensure_digested<K>(ctx: &Context, ns: &str, desired: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), ns);
    let mut value = serde_json::to_value(desired).unwrap_or_default();
    if let Some(o) = value.as_object_mut() {
        o.remove("status");
    }
    ensure(ctx, &api, desired, template_hash(&value), |_, _| {}).await
}

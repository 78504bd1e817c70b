//! The reconcile's writes go through here: server-side apply with the one field manager,
//! deletes, the model's status (only when it changed, [`write_changed_status`], with
//! status_memo.rs; both the aggregated and the disaggregated pass) and its Events. Each
//! write is counted in `deepseek_operator_api_writes`, so a test can show that a steady
//! state writes nothing.
//!
//! Writes that do not come through here, and why:
//! - the leader Lease (leader.rs): leader election runs before any reconcile and apart
//!   from it, under its own field manager; it is not a model's write and is not counted;
//! - the Events themselves (events.rs): [`event`] counts each and hands it to the event
//!   writer, which folds repeats into a series (a patch of the first Event);
//! - the autoscaler's scale subresource patch (autoscale/mod.rs): a merge patch with a
//!   resourceVersion precondition, not an apply; counted there. Its status block is
//!   written by [`write_status_block`] here.

pub mod front;
pub mod network_policy;
pub mod pods_services;
pub mod scaled_object;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use std::time::Instant;

use kube::runtime::reflector::ObjectRef;

use crate::api::{DeepSeekModel, DeepSeekModelStatus, FIELD_MANAGER};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::status_memo;
use crate::decide::conditions as cond;
use crate::decide::ownership::conflict;

/// Never take over: the one check before a model's child is first applied or deleted
/// (`decide::ownership::conflict` says when a name is someone else's).
pub fn check_ours(what: &str, live: Option<Option<&str>>, owner: &str) -> Result<(), Error> {
    conflict(what, live, owner).map_or(Ok(()), |m| Err(Error::Conflict(m)))
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies `object` (typed, or the JSON of a dynamic kind) as `name` through
/// `api`, counted under `plural`; returns the object as the API server holds it.
pub async fn apply<K>(
    ctx: &Context,
    api: &Api<K>,
    plural: &str,
    name: &str,
    object: &(impl serde::Serialize + std::fmt::Debug),
) -> Result<K, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    ctx.metrics.write("apply", plural);
    api.patch(name, &params(), &Patch::Apply(object)).await
}

pub async fn apply_pod(ctx: &Context, pod: &Pod) -> Result<(), Error> {
    let ns = pod.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = pod.name_any();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    apply(ctx, &api, "pods", &name, pod)
        .await
        .map(|_| ())
        .map_err(|source| Error::Apply {
            what: format!("pod {ns}/{name}"),
            source,
        })
}

pub async fn apply_service(ctx: &Context, svc: &Service) -> Result<(), Error> {
    let ns = svc.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = svc.name_any();
    let api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    apply(ctx, &api, "services", &name, svc)
        .await
        .map(|live| {
            ctx.children.applied(
                crate::controller::cache::children::ChildKind::Service,
                &live.metadata,
            )
        })
        .map_err(|source| Error::Apply {
            what: format!("service {ns}/{name}"),
            source,
        })
}

/// Deletes a child; one already gone is not an error.
pub async fn delete<K>(ctx: &Context, ns: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), ns);
    delete_with(ctx, &api, &K::plural(&()), name)
        .await
        .map_err(|source| Error::Delete {
            what: format!("{} {ns}/{name}", K::kind(&())),
            source,
        })
}

/// Deletes `name` through `api` (any kind, dynamic ones too), counted under `plural`;
/// one already gone is not an error.
pub async fn delete_with<K>(
    ctx: &Context,
    api: &Api<K>,
    plural: &str,
    name: &str,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    ctx.metrics.write("delete", plural);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes a pod with grace period 0: for pods on a node lost past the bound, whose
/// kubelet will never confirm a graceful deletion. One already gone is not an error.
pub async fn force_delete_pod(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    ctx.metrics.write("delete", "pods");
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    };
    match Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .delete(name, &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete {
            what: format!("Pod {ns}/{name} (grace period 0)"),
            source,
        }),
    }
}

/// The reconcile's part of the model's status (conditions Planned to Conflict, plan,
/// replica counts).
pub async fn write_status(
    ctx: &Context,
    model: &DeepSeekModel,
    status: &DeepSeekModelStatus,
) -> Result<(), Error> {
    let ns = model.namespace().ok_or(Error::MissingField("namespace"))?;
    write_status_block(ctx, model, &ns, FIELD_MANAGER, status)
        .await
        .map_err(Error::Status)
}

/// Server-side applies `status` to the model's status subresource under `manager`: the
/// reconcile's (`api::FIELD_MANAGER`) or the autoscaler's (`autoscale::FIELD_MANAGER`).
/// Conditions are a list-map, so each manager keeps the condition types it writes and
/// leaves the other's alone.
pub async fn write_status_block(
    ctx: &Context,
    model: &DeepSeekModel,
    ns: &str,
    manager: &str,
    status: &impl serde::Serialize,
) -> Result<(), kube::Error> {
    let api = Api::<DeepSeekModel>::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": DeepSeekModel::api_version(&()),
        "kind": DeepSeekModel::kind(&()),
        "status": status,
    });
    ctx.metrics.write("apply", "deepseekmodels/status");
    let params = PatchParams::apply(manager).force();
    api.patch_status(&model.name_any(), &params, &Patch::Apply(patch))
        .await
        .map(|_| ())
}

/// Writes the status when it differs from the cached one (or from what this operator
/// wrote moments ago that the cache does not show yet: status_memo.rs).
pub async fn write_changed_status(
    ctx: &Context,
    model: &DeepSeekModel,
    status: DeepSeekModelStatus,
) -> Result<(), Error> {
    let previous = model.status.clone().unwrap_or_default();
    let mut comparable = status.clone();
    // Conditions of other field managers (e.g. the autoscaler's) are theirs to keep.
    let own = [
        cond::PLANNED,
        cond::SCHEDULED,
        cond::AVAILABLE,
        cond::PROGRESSING,
        cond::DEGRADED,
        cond::CONFLICT,
    ];
    comparable.conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| !own.contains(&c.type_.as_str()))
            .cloned(),
    );
    comparable.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    let mut previous = previous;
    previous.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    comparable.queue_depth = previous.queue_depth;
    comparable.last_scale_time = previous.last_scale_time.clone();
    comparable.last_scale_reason = previous.last_scale_reason.clone();
    let uid = model.uid().unwrap_or_default();
    let (digest, plan) = status_memo::digests(&status);
    let now = Instant::now();
    // Equal to a cache that has not shown our last write yet: that write may be on the
    // server, and this status must replace it (status_memo.rs).
    let memo = ctx.memory.with(&uid, |m| m.written);
    let behind_our_write = memo.other_written_recently(digest, now);
    if comparable != previous || behind_our_write {
        if memo.written_recently(digest, now) {
            // Written already; the cache has not shown it yet (status_memo.rs).
            return Ok(());
        }
        write_status(ctx, model, &status).await?;
        ctx.memory
            .with(&uid, |m| m.written.wrote(digest, plan, now));
        wake_parent(ctx, model);
    }
    Ok(())
}

/// A role model's status changed: its disaggregated model reports it.
fn wake_parent(ctx: &Context, model: &DeepSeekModel) {
    if crate::desired::disaggregated::role_of(&model.spec).is_none() {
        return;
    }
    let owner = model
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == DeepSeekModel::kind(&()));
    if let (Some(o), Some(ns)) = (owner, model.namespace()) {
        // No receiver only while shutting down.
        let _ = ctx
            .wake
            .send(ObjectRef::<DeepSeekModel>::new(&o.name).within(&ns));
    }
}

/// Publishes an Event about a model. A failed event never fails the reconcile.
pub async fn event(
    ctx: &Context,
    model: &DeepSeekModel,
    warning: bool,
    reason: &str,
    note: String,
) {
    ctx.metrics.write("create", "events");
    let n = crate::controller::events::Note {
        warning,
        reason,
        action: "Reconcile",
        note: &note,
    };
    if let Err(e) = ctx.events.publish(&model.object_ref(&()), n).await {
        tracing::warn!(error = %e, "failed to publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_name_held_by_an_object_the_model_does_not_control_is_a_conflict() {
        assert!(check_ours("Service ns/m", None, "u1").is_ok(), "absent");
        assert!(
            check_ours("Service ns/m", Some(Some("u1")), "u1").is_ok(),
            "ours"
        );
        let admin = check_ours("NetworkPolicy ns/deny-all", Some(None), "u1");
        assert!(
            matches!(&admin, Err(Error::Conflict(m)) if m.starts_with("NetworkPolicy ns/deny-all already exists")),
            "{admin:?}"
        );
        assert!(
            check_ours("Service ns/m", Some(Some("u2")), "u1").is_err(),
            "another model's"
        );
    }
}

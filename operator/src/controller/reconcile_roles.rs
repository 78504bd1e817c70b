//! Reconcile of a disaggregated model (`serving.mode: disaggregated`), the same skeleton
//! as reconcile.rs: read its children (two role models, the router, on Ascend the KV
//! store) -> decide (decide/roles.rs, pure) -> apply what differs, then its NetworkPolicy
//! -> write the status once. The role models are reconciled like any model; each status
//! change of one wakes this reconcile (`Context::wake`), and the router Deployment's
//! changes wake it through the owned-Deployment watch.
//!
//! Writes happen only when something differs from what is live (a digest annotation on
//! each object), so a model at rest causes none; an object under a child's name that the
//! model does not control is never written (`apply::check_ours`).

use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::api::DeepSeekModel;
use crate::controller::apply::event;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::decide::conditions::{self as cond, set};
use crate::decide::roles::{children, decide};
use crate::decide::CONFLICT_RECHECK;

pub async fn reconcile(model: Arc<DeepSeekModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let built = children(&model, &ctx.config);
    let mut live = Vec::new();
    for child in built.iter().flatten() {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, &child.resource);
        let found = api
            .get_opt(&child.name)
            .await
            .map_err(|source| Error::Read {
                what: child.describe(),
                source,
            })?;
        live.push(found);
    }
    let d = decide(&model, &built, &live, &ctx.catalog);
    for (object, resource) in d.apply.iter().zip(&d.apply_kinds) {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, resource);
        crate::controller::apply::apply(&ctx, &api, &resource.plural, name, object)
            .await
            .map_err(|source| Error::Apply {
                what: format!("{} {name}", resource.kind),
                source,
            })?;
    }
    // The router's and the KV store's pods get the model's NetworkPolicy.
    let mut conflict = d.conflict.clone();
    let mut status = d.status.clone();
    if built.is_ok() {
        match crate::controller::apply::network_policy::sync(&ctx, &model).await {
            Ok(()) => {}
            Err(Error::Conflict(m)) => {
                conflict = Some(conflict.map_or(m.clone(), |c| format!("{c}; {m}")))
            }
            Err(e) => return Err(e),
        }
        // The front before the router when the prefill role may scale to zero.
        match crate::controller::apply::front::sync(&ctx, &model).await {
            Ok(()) => {}
            Err(Error::Conflict(m)) => {
                conflict = Some(conflict.map_or(m.clone(), |c| format!("{c}; {m}")))
            }
            Err(e) => return Err(e),
        }
    }
    let previous = model.status.clone().unwrap_or_default();
    for n in &d.events {
        event(&ctx, &model, n.warning, n.reason, n.note.clone()).await;
    }
    if let Some(message) = &conflict {
        let was = cond::get(&previous.conditions, cond::CONFLICT);
        if was.is_none_or(|c| &c.message != message) {
            event(&ctx, &model, true, "Conflict", message.clone()).await;
        }
        let g = status.observed_generation;
        let reason = "ObjectNotOwned";
        set(
            &previous.conditions,
            &mut status.conditions,
            cond::CONFLICT,
            true,
            reason,
            message,
            g,
        );
    }
    crate::controller::apply::write_changed_status(&ctx, &model, status).await?;
    // Role models wake this reconcile through a bounded broadcast that drops wake-ups when
    // a controller lags: a slow recheck bounds how stale status.roles can get. A taken
    // name is rechecked sooner: the other object may be renamed or deleted.
    Ok(Action::requeue(match conflict {
        Some(_) => CONFLICT_RECHECK,
        None => Duration::from_secs(300),
    }))
}

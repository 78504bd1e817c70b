//! Keeping a model's KEDA ScaledObject in line with `autoscaling.provider` (called by the
//! reconcile): with `keda` it is applied (server-side apply, the operator's field manager)
//! when the live one differs; otherwise one the operator made is deleted if it exists.
//! The live one is read from the child cache (controller/cache/children.rs), which also knows
//! whether KEDA's API is served at all.
//! KEDA missing from the cluster (404 on its API) is a warning, never a reconcile error.

use kube::api::DynamicObject;
use kube::{Api, ResourceExt};

use crate::api::DeepSeekModel;
use crate::controller::apply::{self, event};
use crate::controller::cache::children::{Child, ChildKind, Seen};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::desired::{keda, labels};

/// Applies or removes the ScaledObject; failures are logged and reported as an Event. A
/// ScaledObject of that name that the model does not control is left alone: the only
/// error returned is that conflict (`apply::check_ours`).
pub async fn sync(ctx: &Context, model: &DeepSeekModel) -> Result<(), Error> {
    match try_sync(ctx, model).await {
        Ok(()) => Ok(()),
        Err(SyncError::Conflict(e)) => Err(e),
        Err(SyncError::Kube(e)) => {
            tracing::warn!(model = %model.name_any(), error = %e, "KEDA ScaledObject");
            if model
                .spec
                .autoscaling
                .as_ref()
                .is_some_and(|a| a.provider == crate::api::AutoscalingProvider::Keda)
            {
                event(ctx, model, true, "ScaledObjectFailed", format!("{e}")).await;
            }
            Ok(())
        }
    }
}

enum SyncError {
    Kube(kube::Error),
    Conflict(Error),
}

impl From<kube::Error> for SyncError {
    fn from(e: kube::Error) -> SyncError {
        SyncError::Kube(e)
    }
}

async fn try_sync(ctx: &Context, model: &DeepSeekModel) -> Result<(), SyncError> {
    let Some(ns) = model.namespace() else {
        return Ok(());
    };
    let name = model.name_any();
    let uid = model.uid().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &keda::api_resource());
    let desired = keda::scaled_object(model, &ctx.config);
    // Live from the child cache; from the API server only while it has not listed, or
    // before the first apply (the cache shows only the operator's own ScaledObjects).
    let live = match ctx.children.scaled_object(&ns, &name) {
        Seen::Listed(Some(live)) => Some(live),
        Seen::Listed(None) if desired.is_none() => None,
        // No KEDA API: nothing of ours to delete (applying is still tried, and its
        // failure reported, for a model that asks for KEDA).
        Seen::Absent if desired.is_none() => return Ok(()),
        Seen::Listed(None) | Seen::Absent | Seen::Unknown => {
            match api.get_metadata_opt(&name).await {
                Ok(l) => l.map(|o| Child::from_meta(&o.metadata)),
                // No KEDA in the cluster: nothing to delete.
                Err(kube::Error::Api(s)) if s.code == 404 => None,
                Err(e) => return Err(e.into()),
            }
        }
    };
    match desired {
        Some(desired) => {
            apply::check_ours(
                &format!("ScaledObject {ns}/{name}"),
                live.as_ref().map(|l| l.controller_uid.as_deref()),
                &uid,
            )
            .map_err(SyncError::Conflict)?;
            let digest = desired["metadata"]["annotations"][labels::SPEC_DIGEST].as_str();
            let same = live.as_ref().is_some_and(|l| l.digest.as_deref() == digest);
            if !same {
                // Said when the object is (re)applied, not on every reconcile.
                if let Some(msg) = keda::ignored_query(model, &ctx.config) {
                    event(ctx, model, true, keda::QUERY_IGNORED_REASON, msg).await;
                }
                let applied = apply::apply(ctx, &api, keda::PLURAL, &name, &desired).await?;
                ctx.children
                    .applied(ChildKind::ScaledObject, &applied.metadata);
            }
        }
        None => {
            let ours = live
                .as_ref()
                .is_some_and(|l| l.managed && l.controlled_by(&uid));
            if ours {
                apply::delete_with(ctx, &api, keda::PLURAL, &name).await?;
                ctx.children.deleted(ChildKind::ScaledObject, &ns, &name);
            }
        }
    }
    Ok(())
}

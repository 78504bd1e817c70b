//! Writing a model's children: Services applied only when their digest changed, pods
//! deleted group by group, new groups created rank by rank, each decision an Event.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::apply::{self, event};
use super::context::Context;
use super::error::Error;
use super::groups::FoundGroup;
use crate::api::DeepSeekModel;
use crate::build::{labels, pods, Workload};
use crate::rollout::Actions;

/// Applies the desired Services whose digest differs from the live one and deletes the
/// model's Services that are no longer desired.
pub async fn sync_services(
    ctx: &Context,
    ns: &str,
    lp: &ListParams,
    desired: &[Service],
) -> Result<(), Error> {
    let live = Api::<Service>::namespaced(ctx.client.clone(), ns)
        .list(lp)
        .await
        .map_err(|source| Error::Read {
            what: format!("services in {ns}"),
            source,
        })?
        .items;
    for svc in desired {
        let digest = svc.annotations().get(labels::SPEC_DIGEST);
        let current = live.iter().find(|l| l.name_any() == svc.name_any());
        if current.and_then(|l| l.annotations().get(labels::SPEC_DIGEST)) != digest {
            apply::apply_service(ctx, svc).await?;
        }
    }
    for orphan in live
        .iter()
        .filter(|l| !desired.iter().any(|d| d.name_any() == l.name_any()))
    {
        apply::delete::<Service>(ctx, ns, &orphan.name_any()).await?;
    }
    Ok(())
}

/// Deletes pods not already terminating.
pub async fn delete_pods<'a>(
    ctx: &Context,
    ns: &str,
    pods: impl Iterator<Item = &'a Pod>,
) -> Result<(), Error> {
    for pod in pods.filter(|p| p.metadata.deletion_timestamp.is_none()) {
        apply::delete::<Pod>(ctx, ns, &pod.name_any()).await?;
    }
    Ok(())
}

/// Carries out a rollout step: whole groups deleted, whole groups created.
pub async fn apply_actions(
    ctx: &Context,
    model: &DeepSeekModel,
    actions: &Actions,
    groups: &[FoundGroup<'_>],
    w: &Workload,
) -> Result<(), Error> {
    for (slot, hash) in &actions.delete {
        let Some(group) = groups
            .iter()
            .find(|g| g.observed.slot == *slot && &g.observed.hash == hash)
        else {
            continue;
        };
        delete_pods(ctx, &w.namespace, group.pods.iter().copied()).await?;
        let why = if group.observed.broken {
            "a rank failed or is missing; recreating the group"
        } else {
            "replaced or scaled down"
        };
        event(
            ctx,
            model,
            group.observed.broken,
            "GroupDeleted",
            format!("group {hash}-{slot}: {why}"),
        )
        .await;
    }
    for slot in &actions.create {
        for pod in pods::group_pods(w, *slot) {
            apply::apply_pod(ctx, &pod).await?;
        }
        let note = format!(
            "group {}-{slot} ({} pod(s)) on pool {}",
            w.template_hash, w.nodes_per_group, w.pool.name
        );
        event(ctx, model, false, "GroupCreated", note).await;
    }
    Ok(())
}

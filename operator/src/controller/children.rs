//! Writing a model's children: Services applied only when their digest changed, pods
//! deleted group by group, new groups created rank by rank, each decision an Event.

use std::sync::Arc;

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

/// Writes in flight at once when a step creates or deletes many pods: a large scale-up
/// should not wait for each round trip in turn, nor flood the API server.
const PARALLEL_WRITES: usize = 8;

/// Runs writes on the runtime with bounded parallelism; the first error wins. Each write
/// owns what it needs (an `Arc` of the context and its object), so a slow one never holds
/// the others up.
async fn run_bounded<T, F, Fut>(ctx: &Arc<Context>, items: Vec<T>, write: F) -> Result<(), Error>
where
    T: Send + 'static,
    F: Fn(Arc<Context>, T) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut first_error = None;
    for item in items {
        if set.len() >= PARALLEL_WRITES {
            if let Some(Ok(Err(e))) = set.join_next().await {
                first_error.get_or_insert(e);
            }
        }
        set.spawn(write(ctx.clone(), item));
    }
    while let Some(done) = set.join_next().await {
        if let Ok(Err(e)) = done {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Deletes pods not already terminating.
pub async fn delete_pods(ctx: &Arc<Context>, ns: &str, pods: &[&Pod]) -> Result<(), Error> {
    let names: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (ns.to_string(), p.name_any()))
        .collect();
    run_bounded(ctx, names, |ctx, (ns, name)| async move {
        apply::delete::<Pod>(&ctx, &ns, &name).await
    })
    .await
}

/// Carries out a rollout step: whole groups deleted, whole groups created. One Event per
/// kind of decision, naming every group it touched, so a large step is not an Event storm.
pub async fn apply_actions(
    ctx: &Arc<Context>,
    model: &DeepSeekModel,
    actions: &Actions,
    groups: &[FoundGroup<'_>],
    w: &Workload,
) -> Result<(), Error> {
    let doomed: Vec<&FoundGroup<'_>> = actions
        .delete
        .iter()
        .filter_map(|(slot, hash)| {
            groups
                .iter()
                .find(|g| g.observed.slot == *slot && &g.observed.hash == hash)
        })
        .collect();
    let doomed_pods: Vec<&Pod> = doomed.iter().flat_map(|g| g.pods.iter().copied()).collect();
    delete_pods(ctx, &w.namespace, &doomed_pods).await?;
    let mut notes: Vec<(bool, String)> = Vec::new();
    for broken in [true, false] {
        let ids: Vec<String> = doomed
            .iter()
            .filter(|g| g.observed.broken == broken)
            .map(|g| format!("{}-{}", g.observed.hash, g.observed.slot))
            .collect();
        let why = if broken {
            "a rank failed or is missing; recreating"
        } else {
            "replaced or scaled down"
        };
        if !ids.is_empty() {
            notes.push((broken, format!("group(s) {}: {why}", ids.join(", "))));
        }
    }
    for (broken, note) in notes {
        event(ctx, model, broken, "GroupDeleted", note).await;
    }

    let new_pods: Vec<Pod> = actions
        .create
        .iter()
        .flat_map(|slot| pods::group_pods(w, *slot))
        .collect();
    run_bounded(ctx, new_pods, |ctx, pod| async move {
        apply::apply_pod(&ctx, &pod).await
    })
    .await?;
    if !actions.create.is_empty() {
        let ids: Vec<String> = actions
            .create
            .iter()
            .map(|slot| format!("{}-{slot}", w.template_hash))
            .collect();
        let note = format!(
            "group(s) {} ({} pod(s) each) on pool {}",
            ids.join(", "),
            w.nodes_per_group,
            w.pool.name
        );
        event(ctx, model, false, "GroupCreated", note).await;
    }
    Ok(())
}

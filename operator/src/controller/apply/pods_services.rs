//! Writing a model's children as decide/mod.rs decided: Services applied only when their
//! digest changed (never over one the model does not control), pods deleted
//! (force-deleted when stranded on a lost node) and created, a few writes at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::controller::apply;
use crate::controller::cache::children::{Child, ChildKind};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::decide::Deletion;
use crate::desired::labels;

/// Applies the desired Services whose digest differs from the live one and deletes the
/// model's Services that are no longer desired. The live ones come from the child cache
/// (cache/children.rs); only before its first list from the API server. A Service the cache
/// does not show is read before it is first applied: one of that name that the model
/// (`owner`, its uid) does not control is left alone and reported (`apply::check_ours`).
pub async fn sync_services(
    ctx: &Context,
    ns: &str,
    model: &str,
    owner: &str,
    desired: &[Service],
) -> Result<(), Error> {
    let api = Api::<Service>::namespaced(ctx.client.clone(), ns);
    let live = match ctx.children.services_of(ns, model) {
        Some(live) => live,
        None => api
            .list(&ListParams::default().labels(&labels::selector_string(model)))
            .await
            .map_err(|source| Error::Read {
                what: format!("services in {ns}"),
                source,
            })?
            .items
            .iter()
            .map(|s| Child::from_meta(&s.metadata))
            .collect(),
    };
    // A model has one or two Services; applied together, they cost one round trip.
    let stale = desired.iter().filter_map(|svc| {
        let digest = svc.annotations().get(labels::SPEC_DIGEST);
        let current = live.iter().find(|l| l.name == svc.name_any());
        (current.and_then(|l| l.digest.as_ref()) != digest).then_some((svc, current))
    });
    let api = &api;
    futures::future::try_join_all(stale.map(|(svc, current)| async move {
        let name = svc.name_any();
        let what = format!("Service {ns}/{name}");
        let controller = match current {
            Some(c) => Some(c.controller_uid.clone()),
            None => Child::read(api, &name, &what)
                .await?
                .map(|c| c.controller_uid),
        };
        apply::check_ours(&what, controller.as_ref().map(Option::as_deref), owner)?;
        apply::apply_service(ctx, svc).await
    }))
    .await?;
    for orphan in live
        .iter()
        .filter(|l| l.controlled_by(owner) && !desired.iter().any(|d| d.name_any() == l.name))
    {
        apply::delete::<Service>(ctx, ns, &orphan.name).await?;
        ctx.children.deleted(ChildKind::Service, ns, &orphan.name);
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

/// Deletes pods: those on a node lost past the bound with grace period 0 (no kubelet will
/// finish a graceful deletion), the others gracefully.
pub async fn delete_pods(ctx: &Arc<Context>, ns: &str, pods: &[Deletion]) -> Result<(), Error> {
    let items: Vec<(String, Deletion)> = pods.iter().map(|d| (ns.to_string(), d.clone())).collect();
    run_bounded(ctx, items, |ctx, (ns, d)| async move {
        if d.force {
            apply::force_delete_pod(&ctx, &ns, &d.name).await
        } else {
            apply::delete::<Pod>(&ctx, &ns, &d.name).await
        }
    })
    .await
}

/// Pod creations the API server refused this round.
pub struct CreateRefused {
    /// Groups (by group id) left with some ranks missing.
    pub groups: BTreeSet<String>,
    /// The first refusal, as the API server worded it.
    pub message: String,
}

/// Creates pods, at most `PARALLEL_WRITES` at once. Refusals are returned, not raised,
/// so reconcile can report them and back off.
pub async fn create_pods(
    ctx: &Arc<Context>,
    model_key: &str,
    pods: &[Pod],
) -> Option<CreateRefused> {
    let mut set = tokio::task::JoinSet::new();
    let mut refused = CreateRefused {
        groups: BTreeSet::new(),
        message: String::new(),
    };
    let mut note = |done: Result<(String, String, Result<(), Error>), tokio::task::JoinError>| {
        if let Ok((_, name, Ok(()))) = &done {
            let now = std::time::Instant::now();
            ctx.memory
                .with(model_key, |m| m.expected.created([name.clone()], now));
        }
        if let Ok((gid, _, Err(e))) = done {
            if refused.groups.is_empty() {
                refused.message = match &e {
                    Error::Apply {
                        source: kube::Error::Api(s),
                        ..
                    } => s.message.clone(),
                    other => other.to_string(),
                };
            }
            refused.groups.insert(gid);
        }
    };
    for pod in pods {
        let pod = pod.clone();
        if set.len() >= PARALLEL_WRITES {
            if let Some(done) = set.join_next().await {
                note(done);
            }
        }
        let ctx = ctx.clone();
        let gid = pod
            .labels()
            .get(labels::GROUP_ID)
            .cloned()
            .unwrap_or_default();
        set.spawn(async move {
            let r = apply::apply_pod(&ctx, &pod).await;
            (gid, pod.name_any(), r)
        });
    }
    while let Some(done) = set.join_next().await {
        note(done);
    }
    (!refused.groups.is_empty()).then_some(refused)
}

//! Reconcile of a model that runs its own groups: read -> decide -> apply -> status.
//!
//! - read: the model's pods (pod cache, or a quorum list), since when their nodes are
//!   unreachable (Node cache), the pools, what the controller remembers of the model, and
//!   only while a group is partly placed, what the node autoscaler says about it.
//! - decide (decide.rs): pure, one `Decision`. If it deletes anything and the pods came
//!   from the cache, the pods are read again from a quorum list and the pass decides
//!   again, before any write: a stale cache may cause a repeated (idempotent) creation,
//!   never the deletion of a group that has healed since (pod_cache.rs says why).
//! - apply: every deletion, then the children (Services, NetworkPolicy, ScaledObject,
//!   never one another controls: `apply::check_ours`), then the creations (none while a
//!   child's name is taken).
//! - status: written once, from the decision and what applying it met.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::apply::{self, event};
use super::busy_requeue;
use super::capacity::{autoscaler_state, describe_backoff};
use super::children;
use super::context::Context;
use super::decide::{decide, health_inputs, Decision, Inputs, Outcome, Recall, Requeue};
use super::decide::{BUSY_REQUEUE, CONFLICT_RECHECK};
use super::error::Error;
use super::groups::{find_groups, node_lost_since};
use super::metrics::{ModelLabels, Timer};
use super::status as cond;
use super::status_memo;
use crate::api::{DeepSeekModel, DeepSeekModelStatus, ServingMode};
use crate::build::labels;
use crate::capacity::Verdict;
use crate::inventory::{NodeFacts, Pool};

/// Where a pass read the model's pods.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The pod cache: enough for everything but deleting.
    Cache,
    /// A quorum list from the API server: deletions are decided on this only.
    Fresh,
}

pub async fn reconcile(model: Arc<DeepSeekModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = Timer::start(ctx.metrics.clone());
    if model.spec.serving_mode() == ServingMode::Disaggregated {
        return super::disaggregated::reconcile(model, ctx).await;
    }
    let key = model.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let mut world = read(&ctx, &model, &key, Read::Cache).await?;
    let mut decision = decide(&world.inputs(&ctx, &model));
    if decision.deletes() {
        ctx.metrics.fresh_reads.inc();
        world = read(&ctx, &model, &key, Read::Fresh).await?;
        decision = decide(&world.inputs(&ctx, &model));
    }
    let (outcome, retry) = carry_out(&ctx, &model, &key, &decision).await?;
    let (status, notes, _) = decision.status(&outcome);
    for n in decision.events.iter().chain(&notes) {
        event(&ctx, &model, n.warning, n.reason, n.note.clone()).await;
    }
    let labels_m = ModelLabels {
        namespace: model.namespace().unwrap_or_default(),
        model: model.name_any(),
    };
    let m = &ctx.metrics;
    let desired = status.desired_replicas.into();
    m.desired_replicas.get_or_create(&labels_m).set(desired);
    let ready = status.ready_replicas.into();
    m.ready_replicas.get_or_create(&labels_m).set(ready);
    finish(&ctx, &model, status).await?;

    // Not converged: pod events move the model on; the requeue backs off (busy_requeue.rs).
    if decision.converged {
        ctx.busy.settled(&key);
    }
    let wait = match (outcome.conflict.is_some(), retry, decision.requeue) {
        (true, _, _) => CONFLICT_RECHECK,
        (false, Some(wait), _) => wait.max(BUSY_REQUEUE / 5),
        (false, None, Requeue::After(d)) => d,
        (false, None, Requeue::Busy) => {
            let fp = busy_requeue::fingerprint(model.metadata.generation, &world.pods);
            ctx.busy.next(&key, fp)
        }
    };
    // A bound running out (lost node, NotReady rank) comes with no watch event.
    let at = |r: Duration| wait.min(r + Duration::from_secs(1));
    Ok(Action::requeue(decision.recheck.map_or(wait, at)))
}

/// What one pass read.
struct World {
    pods: Vec<Pod>,
    lost_nodes: BTreeMap<String, Timestamp>,
    pools: Arc<Vec<Pool>>,
    recall: Recall,
    autoscaler_state: Option<String>,
    now: Timestamp,
}

impl World {
    fn inputs<'a>(&'a self, ctx: &'a Context, model: &'a DeepSeekModel) -> Inputs<'a> {
        Inputs {
            model,
            pods: &self.pods,
            lost_nodes: &self.lost_nodes,
            pools: &self.pools,
            catalog: &ctx.catalog,
            config: &ctx.config,
            recall: &self.recall,
            autoscaler_state: self.autoscaler_state.as_deref(),
            now: self.now,
        }
    }
}

async fn read(ctx: &Context, model: &DeepSeekModel, key: &str, read: Read) -> Result<World, Error> {
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = model.name_any();
    let pods = match read {
        Read::Cache => ctx.pods.model_pods(&ns, &name),
        Read::Fresh => {
            let lp = ListParams::default().labels(&labels::selector_string(&name));
            Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .list(&lp)
                .await
                .map_err(|source| Error::Read {
                    what: format!("pods of {ns}/{name}"),
                    source,
                })?
                .items
        }
    };
    // Every pass forgets the created names the cache now shows, not only one that
    // creates: otherwise a group recreated soon after its creation (same pod names) would
    // find its names still awaited and wait out the window (expect.rs).
    let seen: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let instant = Instant::now();
    let refused = ctx.creation.get(key);
    let capacity = ctx.capacity.get(key);
    let recall = Recall {
        refused: refused.as_ref().map(|r| (r.message.clone(), r.wait())),
        partially_created: refused.map(|r| r.partial).unwrap_or_default(),
        capacity: capacity.map(|r| (r.wait(), describe_backoff(&r))),
        awaited: ctx.expected.awaited(key, &seen, instant),
        plan_written: ctx.written.recent_plan(key, instant),
        crashes: ctx.crashes.get(key),
    };
    let lost_nodes = lost_nodes(ctx, &pods);
    let now = Timestamp::now();
    // Only while a group is partly placed: what the node autoscaler says about it (the
    // group past its bound first, read before the group is removed).
    let partial_group = {
        let health = health_inputs(&ctx.config, now, &lost_nodes, &recall.partially_created);
        let found = find_groups(&pods, &health);
        let partial = found
            .groups
            .into_iter()
            .filter(|g| g.partial.is_some())
            .max_by_key(|g| g.partial.as_ref().map(|p| p.verdict == Verdict::Remove));
        match partial {
            Some(g) => autoscaler_state(ctx, &ns, &g).await,
            None => None,
        }
    };
    Ok(World {
        pools: ctx.pools.borrow().clone(),
        pods,
        lost_nodes,
        recall,
        autoscaler_state: partial_group,
        now,
    })
}

/// Carries the decision out: deletions, children, creations. Returns what it met and,
/// after a refused creation, the wait before the next attempt.
async fn carry_out(
    ctx: &Arc<Context>,
    model: &DeepSeekModel,
    key: &str,
    d: &Decision,
) -> Result<(Outcome, Option<Duration>), Error> {
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let mut outcome = Outcome::default();
    children::delete_pods(ctx, &ns, &d.delete).await?;
    // Pod names end in `<hash>-<slot>-<rank>` (build/pods.rs): a group recreated under
    // the same names is created at once, not after the expectation window.
    let doomed = &d.deleted_groups;
    ctx.expected.forget(key, |name| {
        doomed.iter().any(|id| name.contains(id.as_str()))
    });
    if d.crash_recreated {
        let window = std::time::Duration::from_secs(ctx.config.crash_loop_backoff.window_seconds);
        ctx.crashes.recreated(key, Timestamp::now(), window);
    }
    if let Some(note) = &d.capacity_removed {
        let retry = ctx.config.capacity_retry_seconds.duration();
        let wait = ctx.capacity.removed(key, note.clone(), retry);
        let msg = format!("{note}; creating it again in {}s", wait.as_secs());
        event(ctx, model, true, "CapacityPending", msg).await;
    }
    if let Some(services) = &d.services {
        let name = model.name_any();
        // Independent of each other: written at once, a new model's pods wait one round
        // trip for them, not three (issues 12 and 14).
        let (s, p, k, f) = tokio::join!(
            children::sync_services(ctx, &ns, &name, key, services),
            super::network_policy::sync(ctx, model),
            crate::autoscale::scaled_object::sync(ctx, model),
            super::front::sync(ctx, model),
        );
        outcome.conflict = conflicts([s, p, k, f])?;
    }
    if d.capacity_settled {
        ctx.capacity.settled(key);
    }
    if d.creation_settled {
        ctx.creation.succeeded(key);
    }
    // A child's name taken by an object this model does not control: nothing is created
    // until it is freed (pods would run without their Service or isolation).
    if outcome.conflict.is_some() || d.create.pods.is_empty() {
        return Ok((outcome, None));
    }
    let refused = children::create_pods(ctx, key, &d.create.pods).await;
    outcome.created = true;
    let mut retry = None;
    let refused_groups = match refused {
        None => {
            ctx.creation.succeeded(key);
            BTreeSet::new()
        }
        Some(r) => {
            let wait = ctx
                .creation
                .failed(key, r.groups.clone(), r.message.clone());
            let note = format!(
                "creating pods of group(s) {} failed, retrying in {}s: {}",
                r.groups.iter().cloned().collect::<Vec<_>>().join(", "),
                wait.as_secs(),
                r.message
            );
            event(ctx, model, true, "CreateFailed", note).await;
            outcome.refused = Some(r.message);
            retry = Some(wait);
            r.groups
        }
    };
    let ids: Vec<&str> = d
        .create
        .groups
        .iter()
        .filter(|id| !refused_groups.contains(*id))
        .map(String::as_str)
        .collect();
    if !ids.is_empty() {
        let note = format!("group(s) {}{}", ids.join(", "), d.create.detail);
        event(ctx, model, false, "GroupCreated", note).await;
    }
    Ok((outcome, retry))
}

/// The conflicts among the children's sync results, joined; any other error fails the pass.
fn conflicts<const N: usize>(results: [Result<(), Error>; N]) -> Result<Option<String>, Error> {
    let mut found = Vec::new();
    for r in results {
        match r {
            Ok(()) => {}
            Err(Error::Conflict(message)) => found.push(message),
            Err(e) => return Err(e),
        }
    }
    Ok((!found.is_empty()).then(|| found.join("; ")))
}

/// Since when each node of the model's pods is unreachable, from the Node cache.
fn lost_nodes(ctx: &Context, pods: &[Pod]) -> BTreeMap<String, Timestamp> {
    pods.iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .filter_map(|n| {
            let node = ctx.nodes.get(&ObjectRef::<NodeFacts>::new(n))?;
            Some((n.to_string(), node_lost_since(&node)?))
        })
        .collect()
}

/// Writes the status when it differs from the cached one (or from what this operator
/// wrote moments ago that the cache does not show yet: status_memo.rs).
pub(super) async fn finish(
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
    let digest = status_memo::digest(&status);
    let now = Instant::now();
    // Equal to a cache that has not shown our last write yet: that write may be on the
    // server, and this status must replace it (status_memo.rs).
    let behind_our_write = ctx.written.other_written_recently(&uid, digest, now);
    if comparable != previous || behind_our_write {
        if ctx.written.written_recently(&uid, digest, now) {
            // Written already; the cache has not shown it yet (status_memo.rs).
            return Ok(());
        }
        apply::write_status(ctx, model, &status).await?;
        let plan = status_memo::digest_of(&status.plan);
        ctx.written.wrote(&uid, digest, plan, now);
        wake_parent(ctx, model);
    }
    Ok(())
}

pub fn error_policy(model: Arc<DeepSeekModel>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(model = %model.name_any(), error = %err, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&super::metrics::ErrorLabels {
            kind: err.category().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(10))
}

/// A role model's status changed: its disaggregated model reports it.
fn wake_parent(ctx: &Context, model: &DeepSeekModel) {
    if crate::build::disaggregated::role_of(&model.spec).is_none() {
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

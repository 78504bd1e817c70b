//! Reconcile: read the world -> validate -> retire -> plan -> build -> apply -> write
//! status. Only reading, retiring and the last two steps touch the API server.
//!
//! Retiring (orphans, broken groups, groups beyond `replicas`) needs no plan, so it runs
//! before placement: a model that cannot be placed still scales down and still clears
//! its broken groups.
//!
//! Pods are read from the pod cache (pod_cache.rs). Every deletion comes before every
//! creation, and before the first deletion a reconcile that read the cache starts over
//! from a quorum list of the model's pods: a stale cache may cause a repeated (idempotent)
//! creation, never the deletion of a group that has healed since (pod_cache.rs says why).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::apply::{self, event};
use super::busy_requeue;
use super::capacity::{autoscaler_state, describe, describe_backoff};
use super::children;
use super::context::Context;
use super::error::Error;
use super::groups::{find_groups, node_lost_since, unschedulable, HealthInputs};
use super::metrics::{ModelLabels, Timer};
use super::status::{self as cond, set};
use super::status_memo;
use crate::api::{DeepSeekModel, DeepSeekModelStatus, ServingMode};
use crate::build::{labels, services, workload};
use crate::capacity::Verdict;
use crate::inventory::NodeFacts;
use crate::placement::place;
use crate::rollout::{self, Fault, RolloutLimits};
use crate::validate::validate;

const BUSY_REQUEUE: Duration = Duration::from_secs(5);
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

/// Where a reconcile read the model's pods.
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
    if let Some(done) = reconcile_from(&model, &ctx, Read::Cache).await? {
        return Ok(done);
    }
    ctx.metrics.fresh_reads.inc();
    reconcile_from(&model, &ctx, Read::Fresh)
        .await
        .map(|done| done.unwrap_or_else(|| Action::requeue(BUSY_REQUEUE)))
}

/// One pass. `Ok(None)`: the pass read the cache and would delete; read fresh and start over.
async fn reconcile_from(
    model: &Arc<DeepSeekModel>,
    ctx: &Arc<Context>,
    read: Read,
) -> Result<Option<Action>, Error> {
    let (model, ctx) = (model.clone(), ctx.clone());
    let ns = model
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = model.name_any();
    let previous = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;
    // queueDepth and lastScale* belong to the autoscaler's field manager; reconcile
    // neither writes nor compares them.
    let mut status = DeepSeekModelStatus {
        observed_generation: generation,
        selector: Some(labels::leader_selector_string(&name)),
        // Kept while the model cannot be planned, so an upgrade during a shortage still
        // finds what the pods run.
        resolved: previous.resolved.clone(),
        ..Default::default()
    };

    // Read the world.
    let lp = ListParams::default().labels(&labels::selector_string(&name));
    let pods = match read {
        Read::Cache => ctx.pods.model_pods(&ns, &name),
        Read::Fresh => {
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
    let model_key = model.uid().unwrap_or_else(|| format!("{ns}/{name}"));
    // Every reconcile forgets the created names the cache now shows, not only one that
    // creates: otherwise a group recreated soon after its creation (same pod names) would
    // find its names still awaited and wait out the window (expect.rs).
    let seen: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let awaited = ctx
        .expected
        .awaited(&model_key, &seen, std::time::Instant::now());
    let refused = ctx.creation.get(&model_key);
    let lost_nodes = lost_nodes(&ctx, &pods);
    let no_partial = BTreeSet::new();
    let health = HealthInputs {
        now: Timestamp::now(),
        lost_nodes: &lost_nodes,
        unreachable_timeout: ctx.config.unreachable_node_timeout_seconds.duration(),
        not_ready_timeout: ctx.config.rank_not_ready_timeout_seconds.duration(),
        capacity_pending_timeout: ctx.config.capacity_pending_timeout_seconds.duration(),
        partially_created: refused.as_ref().map_or(&no_partial, |r| &r.partial),
    };
    let found = find_groups(&pods, &health);
    let dead_nodes = health.dead_nodes();
    let groups = &found.groups;
    // A group only partly on nodes (one past the bound first): what the node autoscaler
    // says about it, read before the group is removed.
    let bound = ctx.config.capacity_pending_timeout_seconds.duration();
    let partial = groups
        .iter()
        .filter(|g| g.partial.is_some())
        .max_by_key(|g| g.partial.as_ref().map(|p| p.verdict == Verdict::Remove));
    let capacity_note = match partial {
        Some(g) => {
            let state = autoscaler_state(&ctx, &ns, g).await;
            g.partial.as_ref().map(|p| {
                let id = format!("{}-{}", g.observed.hash, g.observed.slot);
                describe(&id, p, bound, state.as_deref())
            })
        }
        None => None,
    };
    // A bound running out (lost node, NotReady rank) comes with no watch event.
    let requeue = |d: Duration| {
        Action::requeue(
            found
                .recheck
                .map_or(d, |r| d.min(r + Duration::from_secs(1))),
        )
    };
    status.replicas = groups
        .iter()
        .filter(|g| g.observed.broken.is_none())
        .count() as i32;
    status.ready_replicas = groups.iter().filter(|g| g.observed.ready).count() as i32;

    // Validate.
    let validated = match validate(&model.spec, &ctx.catalog, &ctx.config) {
        Ok(v) => v,
        Err(invalid) => {
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                false,
                invalid.reason,
                &invalid.message,
                generation,
            );
            status.plan = previous.plan.clone();
            finish(
                &ctx,
                &model,
                &previous,
                status,
                Some((invalid.reason, invalid.message)),
            )
            .await?;
            return Ok(Some(Action::await_change()));
        }
    };
    status.desired_replicas = validated.replicas as i32;

    // Retire what no plan is needed for: orphans, broken groups, surplus slots.
    let observed: Vec<_> = groups.iter().map(|g| g.observed.clone()).collect();
    let retired = rollout::retire(validated.replicas, &observed);
    if read == Read::Cache
        && (children::would_delete(&found.orphans, &dead_nodes)
            || children::would_delete(&children::pods_of(&retired, groups), &dead_nodes))
    {
        return Ok(None);
    }
    children::delete_pods(&ctx, &ns, &found.orphans, &dead_nodes).await?;
    children::delete_groups(&ctx, &model, &ns, &retired, groups, &dead_nodes).await?;
    let capacity_removed = retired.iter().any(|(slot, hash)| {
        groups.iter().any(|g| {
            g.observed.slot == *slot
                && &g.observed.hash == hash
                && g.observed.broken == Some(Fault::CapacityPending)
        })
    });
    if let Some(note) = capacity_note.as_ref().filter(|_| capacity_removed) {
        let retry = ctx.config.capacity_retry_seconds.duration();
        let wait = ctx.capacity.removed(&model_key, note.clone(), retry);
        let msg = format!("{note}; creating it again in {}s", wait.as_secs());
        event(&ctx, &model, true, "CapacityPending", msg).await;
    }

    // Plan.
    let pools = ctx.pools.borrow().clone();
    let placement = match place(&validated, &ns, &pools, &ctx.catalog) {
        Ok(p) => p,
        Err(u) => {
            // Groups already serving keep serving; only new placement is impossible.
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                false,
                u.reason,
                &u.message,
                generation,
            );
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::AVAILABLE,
                status.ready_replicas > 0,
                if status.ready_replicas > 0 {
                    "ServingExistingGroups"
                } else {
                    "NotPlanned"
                },
                format!(
                    "{} of {} replica groups ready",
                    status.ready_replicas, status.desired_replicas
                ),
                generation,
            );
            status.plan = previous.plan.clone();
            finish(&ctx, &model, &previous, status, Some((u.reason, u.message))).await?;
            return Ok(Some(requeue(IDLE_REQUEUE)));
        }
    };
    let plan_status = placement.status();
    // A pool read from a Karpenter NodePool says so: that NodePool creates the nodes.
    let source = match &placement.pool.nodepool {
        Some(np) => format!(" (nodes from Karpenter NodePool {np})"),
        None => String::new(),
    };
    let layout = match plan_status.expert_parallel {
        Some(_) => plan_status.layout.clone(),
        None => format!(
            "TP{} x PP{}",
            plan_status.tensor_parallel, plan_status.pipeline_parallel
        ),
    };
    let plan_msg = format!(
        "{} x {} per replica ({} node(s) x {}), {layout}, {} on pool {}{source}",
        plan_status.gpus_per_replica,
        placement.plan.accelerator,
        plan_status.nodes_per_replica,
        plan_status.gpus_per_node,
        plan_status.engine,
        placement.pool.name
    );
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::PLANNED,
        true,
        "Planned",
        &plan_msg,
        generation,
    );
    // Against a cache that has not shown the last status write yet, a plan just written
    // looks new again: its Event is not written twice (status_memo.rs).
    let newly_planned = previous.plan.as_ref() != Some(&plan_status)
        && !ctx.written.plan_written_recently(
            &model.uid().unwrap_or_default(),
            status_memo::digest_of(&Some(&plan_status)),
            std::time::Instant::now(),
        );
    status.plan = Some(plan_status);

    // Build.
    let owner = model
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let w = workload::workload(&workload::WorkloadInputs {
        model_name: &name,
        namespace: &ns,
        owner,
        spec: &model.spec,
        validated: &validated,
        placement: &placement,
        config: &ctx.config,
        catalog: &ctx.catalog,
        previous: previous.resolved.as_ref(),
    });
    status.resolved = Some(w.resolved.clone());
    let desired_services = services::services(&w);

    // Apply: the Planned Event, the Services and NetworkPolicy (each skipped when the live
    // digest matches) and the KEDA ScaledObject (when autoscaling.provider=keda; removed
    // otherwise) depend on none of each other: written at once, a new model's pods wait
    // one round trip for them, not five (issues 12 and 14). Then groups.
    let planned_event = async {
        if newly_planned {
            event(&ctx, &model, false, "Planned", plan_msg.clone()).await;
        }
    };
    let (services, policy, (), ()) = tokio::join!(
        children::sync_services(&ctx, &ns, &name, &desired_services),
        super::network_policy::sync(&ctx, &model),
        crate::autoscale::scaled_object::sync(&ctx, &model),
        planned_event,
    );
    services?;
    policy?;

    let room = placement.surge_room(validated.replicas);
    let limits = RolloutLimits::resolve(
        validated.rollout.max_surge,
        validated.rollout.max_unavailable,
        room,
    );
    let mut actions = rollout::step(validated.replicas, &w.template_hash, &observed, limits);
    actions.delete.retain(|d| !retired.contains(d));
    if read == Read::Cache
        && children::would_delete(&children::pods_of(&actions.delete, groups), &dead_nodes)
    {
        return Ok(None);
    }
    children::delete_groups(&ctx, &model, &ns, &actions.delete, groups, &dead_nodes).await?;
    // After a refusal, or the removal of a partly placed group, creations wait for the
    // backoff; deletions above never do.
    let capacity_retry = ctx.capacity.get(&model_key);
    let capacity_wait = capacity_retry.as_ref().and_then(|r| r.wait());
    let backing_off = refused.as_ref().and_then(|r| r.wait()).or(capacity_wait);
    let mut create_refused = refused.as_ref().map(|r| r.message.clone());
    let mut retry_in = backing_off;
    if backing_off.is_none() && !actions.create.is_empty() {
        match children::create_groups(
            &ctx,
            &model,
            &actions.create,
            groups,
            &w,
            &model_key,
            &awaited,
        )
        .await
        {
            None => {
                ctx.creation.succeeded(&model_key);
                create_refused = None;
            }
            Some(r) => {
                let wait = ctx
                    .creation
                    .failed(&model_key, r.groups.clone(), r.message.clone());
                let note = format!(
                    "creating pods of group(s) {} failed, retrying in {}s: {}",
                    r.groups.iter().cloned().collect::<Vec<_>>().join(", "),
                    wait.as_secs(),
                    r.message
                );
                event(&ctx, &model, true, "CreateFailed", note).await;
                create_refused = Some(r.message);
                retry_in = Some(wait);
            }
        }
    } else if actions.create.is_empty() && backing_off.is_none() {
        // Nothing left to create: an earlier refusal no longer matters.
        ctx.creation.succeeded(&model_key);
        create_refused = None;
    }

    // Every rank found a node and nothing waits to be created: earlier removals are over.
    let all_placed = pods
        .iter()
        .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
    if capacity_retry.is_some()
        && capacity_wait.is_none()
        && capacity_note.is_none()
        && actions.create.is_empty()
        && all_placed
    {
        ctx.capacity.settled(&model_key);
    }
    let capacity = capacity_note.or_else(|| {
        let r = capacity_retry.as_ref()?;
        r.wait()?;
        Some(describe_backoff(r))
    });

    // Status.
    let current_pods: Vec<&Pod> = groups
        .iter()
        .filter(|g| g.observed.hash == w.template_hash)
        .flat_map(|g| g.pods.iter().copied())
        .collect();
    let converged = cond::workload_conditions(
        &previous.conditions,
        &mut status.conditions,
        &cond::WorkloadView {
            groups: &observed,
            hash: &w.template_hash,
            replicas: validated.replicas,
            actions_pending: !actions.is_empty() || !retired.is_empty(),
            unschedulable: unschedulable(&current_pods),
            create_refused,
            capacity,
        },
        generation,
    );
    let (ready, desired) = (status.ready_replicas, status.desired_replicas);

    let labels_m = ModelLabels {
        namespace: ns.clone(),
        model: name.clone(),
    };
    ctx.metrics
        .desired_replicas
        .get_or_create(&labels_m)
        .set(desired.into());
    ctx.metrics
        .ready_replicas
        .get_or_create(&labels_m)
        .set(ready.into());

    finish(&ctx, &model, &previous, status, None).await?;
    // Not converged: pod events move the model on; the requeue backs off (busy_requeue.rs).
    if converged {
        ctx.busy.settled(&model_key);
    }
    Ok(Some(match retry_in {
        Some(wait) => requeue(wait.max(BUSY_REQUEUE / 5)),
        None if converged => requeue(IDLE_REQUEUE),
        None => requeue(
            ctx.busy
                .next(&model_key, busy_requeue::fingerprint(generation, &pods)),
        ),
    }))
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

/// Writes status only when it changed, and an Event when a refusal is new.
async fn finish(
    ctx: &Context,
    model: &DeepSeekModel,
    previous: &DeepSeekModelStatus,
    status: DeepSeekModelStatus,
    refusal: Option<(&str, String)>,
) -> Result<(), Error> {
    if let Some((reason, message)) = refusal {
        let was = cond::get(&previous.conditions, cond::PLANNED);
        if was.is_none_or(|c| c.reason != reason || c.message != message) {
            event(ctx, model, true, reason, message).await;
        }
    }
    let mut comparable = status.clone();
    // Conditions of other field managers (e.g. the autoscaler's) are theirs to keep.
    let own = [
        cond::PLANNED,
        cond::SCHEDULED,
        cond::AVAILABLE,
        cond::PROGRESSING,
        cond::DEGRADED,
    ];
    comparable.conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| !own.contains(&c.type_.as_str()))
            .cloned(),
    );
    comparable.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    let mut previous_sorted = previous.clone();
    previous_sorted
        .conditions
        .sort_by(|a, b| a.type_.cmp(&b.type_));
    let previous = &previous_sorted;
    comparable.queue_depth = previous.queue_depth;
    comparable.last_scale_time = previous.last_scale_time.clone();
    comparable.last_scale_reason = previous.last_scale_reason.clone();
    let uid = model.uid().unwrap_or_default();
    let digest = status_memo::digest(&status);
    let now = std::time::Instant::now();
    // Equal to a cache that has not shown our last write yet: that write may be on the
    // server, and this status must replace it (status_memo.rs).
    let behind_our_write = ctx.written.other_written_recently(&uid, digest, now);
    if &comparable != previous || behind_our_write {
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

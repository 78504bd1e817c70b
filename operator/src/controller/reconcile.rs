//! Reconcile of a model that runs its own groups: read -> decide -> apply -> status.
//!
//! - read: the model's pods (pod cache, or a quorum list), since when their nodes are
//!   unreachable (Node cache), the pools, what the controller remembers of the model, and
//!   only while a group is partly placed, what the node autoscaler says about it.
//! - decide (decide/mod.rs): pure, one `Decision`. If it deletes anything and the pods came
//!   from the cache, the pods are read again from a quorum list and the pass decides
//!   again, before any write: a stale cache may cause a repeated (idempotent) creation,
//!   never the deletion of a group that has healed since (cache/pods.rs says why).
//! - apply: every deletion, then the children (Services, NetworkPolicy, ScaledObject,
//!   never one another controls: `apply::check_ours`), then the creations (none while a
//!   child's name is taken).
//! - events and status: published and written once, after applying, from the decision
//!   and what applying it met (apply/mod.rs `write_changed_status`, shared with the
//!   disaggregated path).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::api::{DeepSeekModel, ServingMode};
use crate::controller::apply::pods_services;
use crate::controller::apply::{self, event};
use crate::controller::busy_requeue;
use crate::controller::capacity_pending::{autoscaler_state, describe_backoff};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::metrics::{ModelLabels, Timer};
use crate::decide::groups::{find_groups, node_lost_since};
use crate::decide::{decide, health_inputs, Decision, Inputs, Note, Outcome, Recall, Requeue};
use crate::decide::{BUSY_REQUEUE, CONFLICT_RECHECK};
use crate::desired::labels;
use crate::inventory::{NodeFacts, Pool};
use crate::whole_groups::Verdict;

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
        return crate::controller::reconcile_roles::reconcile(model, ctx).await;
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
    // Every Event of the pass, once applying is done: the decision's, what applying met,
    // and the status's news.
    for n in decision.events.iter().chain(&outcome.notes).chain(&notes) {
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
    apply::write_changed_status(&ctx, &model, status).await?;

    // Not converged: pod events move the model on; the requeue backs off (busy_requeue.rs).
    if decision.converged {
        ctx.memory.with(&key, |m| m.busy.settled());
    }
    let wait = match (outcome.conflict.is_some(), retry, decision.requeue) {
        (true, _, _) => CONFLICT_RECHECK,
        (false, Some(wait), _) => wait.max(BUSY_REQUEUE / 5),
        (false, None, Requeue::After(d)) => d,
        (false, None, Requeue::Busy) => {
            let fp = busy_requeue::fingerprint(model.metadata.generation, &world.pods);
            ctx.memory.with(&key, |m| m.busy.next(fp))
        }
    };
    // A bound running out (lost node, NotReady rank) comes with no watch event.
    let at = |r: Duration| wait.min(r + Duration::from_secs(1));
    Ok(Action::requeue(decision.recheck.map_or(wait, at)))
}

/// What one pass read.
struct World {
    pods: Vec<Arc<Pod>>,
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
                .into_iter()
                .map(Arc::new)
                .collect()
        }
    };
    // Every pass forgets the created names the cache now shows, not only one that
    // creates: otherwise a group recreated soon after its creation (same pod names) would
    // find its names still awaited and wait out the window (expect.rs).
    let seen: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let instant = Instant::now();
    let recall = ctx.memory.with(key, |m| {
        let refused = m.creation.get();
        Recall {
            refused: refused.map(|r| (r.message.clone(), r.wait())),
            partially_created: refused.map(|r| r.partial.clone()).unwrap_or_default(),
            capacity: m.capacity.get().map(|r| (r.wait(), describe_backoff(r))),
            awaited: m.expected.awaited(&seen, instant),
            plan_written: m.written.recent_plan(instant),
            crashes: m.crashes.get().to_vec(),
        }
    });
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
            Some(g) => autoscaler_state(&ctx.client, &ctx.nodes, &ns, &g).await,
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
    pods_services::delete_pods(ctx, &ns, &d.delete).await?;
    // Pod names end in `<hash>-<slot>-<rank>` (desired/pods.rs): a group recreated under
    // the same names is created at once, not after the expectation window.
    let doomed = &d.deleted_groups;
    let crash_window = Duration::from_secs(ctx.config.crash_loop_backoff.window_seconds);
    let retry = ctx.config.capacity_retry_seconds.duration();
    let capacity_wait = ctx.memory.with(key, |m| {
        m.expected
            .forget(|name| doomed.iter().any(|id| name.contains(id.as_str())));
        if d.crash_recreated {
            m.crashes.recreated(Timestamp::now(), crash_window);
        }
        let note = d.capacity_removed.as_ref()?;
        Some((note, m.capacity.removed(note.clone(), retry)))
    });
    if let Some((note, wait)) = capacity_wait {
        let msg = format!("{note}; creating it again in {}s", wait.as_secs());
        outcome.notes.push(Note {
            warning: true,
            reason: "CapacityPending",
            note: msg,
        });
    }
    if let Some(services) = &d.services {
        let name = model.name_any();
        // Independent of each other: written at once, a new model's pods wait one round
        // trip for them, not three (issues 12 and 14).
        let (s, p, k, f) = tokio::join!(
            pods_services::sync_services(ctx, &ns, &name, key, services),
            crate::controller::apply::network_policy::sync(ctx, model),
            crate::controller::apply::scaled_object::sync(ctx, model),
            crate::controller::apply::front::sync(ctx, model),
        );
        outcome.conflict = conflicts([s, p, k, f])?;
    }
    ctx.memory.with(key, |m| {
        if d.capacity_settled {
            m.capacity.settled();
        }
        if d.creation_settled {
            m.creation.succeeded();
        }
    });
    // A child's name taken by an object this model does not control: nothing is created
    // until it is freed (pods would run without their Service or isolation).
    if outcome.conflict.is_some() || d.create.pods.is_empty() {
        return Ok((outcome, None));
    }
    let refused = pods_services::create_pods(ctx, key, &d.create.pods).await;
    outcome.created = true;
    let mut retry = None;
    let refused_groups = match refused {
        None => {
            ctx.memory.with(key, |m| m.creation.succeeded());
            BTreeSet::new()
        }
        Some(r) => {
            let wait = ctx.memory.with(key, |m| {
                m.creation.failed(r.groups.clone(), r.message.clone())
            });
            let note = format!(
                "creating pods of group(s) {} failed, retrying in {}s: {}",
                r.groups.iter().cloned().collect::<Vec<_>>().join(", "),
                wait.as_secs(),
                r.message
            );
            outcome.notes.push(Note {
                warning: true,
                reason: "CreateFailed",
                note,
            });
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
        outcome.notes.push(Note {
            warning: false,
            reason: "GroupCreated",
            note,
        });
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
fn lost_nodes(ctx: &Context, pods: &[Arc<Pod>]) -> BTreeMap<String, Timestamp> {
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

pub fn error_policy(model: Arc<DeepSeekModel>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(model = %model.name_any(), error = %err, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&crate::controller::metrics::ErrorLabels {
            kind: err.category().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(10))
}

//! The decision of one reconcile pass of a model that runs its own groups, with no I/O:
//! what the caches showed (the model, its pods, the Node cache's lost nodes, the pools),
//! the configuration, what the controller remembers of the model ([`Recall`]) and the time
//! go in; one [`Decision`] comes out: the pods to delete and to create, the children to
//! keep, the Events, when to look again and the complete status. reconcile.rs reads,
//! calls this, and carries the decision out; table tests here cover every branch.
//!
//! Retiring (orphans, broken groups, groups beyond `replicas`) needs no plan, so a model
//! whose spec is invalid or that cannot be placed still scales down, still clears its
//! broken groups, and keeps `Available`, `Progressing` and `Degraded` describing the
//! groups that exist, while `Planned` says why nothing new is planned.

pub mod conditions;
pub mod crash_backoff;
pub mod create_backoff;
pub mod groups;
pub mod ownership;
pub mod roles;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use deepseek_planner::Catalog;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use self::conditions::{self as cond, set};
use self::crash_backoff::{next_allowed, Recreation};
use self::groups::{
    describe, find_groups, pods_of, unschedulable, would_delete, FoundGroup, HealthInputs,
};
use crate::api::{DeepSeekModel, DeepSeekModelStatus};
use crate::config::OperatorConfig;
use crate::desired::{labels, pods, services, workload};
use crate::inventory::Pool;
use crate::placement::place;
use crate::rollout::{self, Fault, ObservedGroup, RolloutLimits};
use crate::validate::validate;
use crate::whole_groups::Verdict;

/// The requeue of a model still moving, before busy_requeue.rs backs it off.
pub const BUSY_REQUEUE: Duration = Duration::from_secs(5);
/// The requeue of a model at rest.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(300);
/// How often a model whose child's name is taken looks again.
pub const CONFLICT_RECHECK: Duration = Duration::from_secs(60);

/// What the controller remembers of the model between passes, as of this pass.
#[derive(Clone, Debug, Default)]
pub struct Recall {
    /// The API server refused pod creation: its answer, and the wait left (`None`: may
    /// try again now).
    pub refused: Option<(String, Option<Duration>)>,
    /// Groups (by id) whose creation failed part-way.
    pub partially_created: BTreeSet<String>,
    /// A partly placed group was removed: the wait left before creating it again (`None`:
    /// may now) and the condition message while it waits.
    pub capacity: Option<(Option<Duration>, String)>,
    /// Pods created that the pod cache does not show yet.
    pub awaited: BTreeSet<String>,
    /// The digest of the plan written within the status memo's window.
    pub plan_written: Option<u64>,
    /// Crashed groups recreated lately (crash_backoff.rs).
    pub crashes: Vec<Recreation>,
}

/// Everything a decision is made from.
pub struct Inputs<'a> {
    pub model: &'a DeepSeekModel,
    pub pods: &'a [Arc<Pod>],
    /// Node name -> since when it is unreachable, for the nodes of the model's pods.
    pub lost_nodes: &'a BTreeMap<String, Timestamp>,
    pub pools: &'a [Pool],
    pub catalog: &'a Catalog,
    pub config: &'a OperatorConfig,
    pub recall: &'a Recall,
    /// What the node autoscaler says about a partly placed group (read only then).
    pub autoscaler_state: Option<&'a str>,
    pub now: Timestamp,
}

/// An Event about the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// A pod to delete; `force`: grace period 0 (its node is lost past the bound).
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    pub name: String,
    pub force: bool,
}

/// Pods to create, and what the `GroupCreated` Event says of them.
#[derive(Clone, Debug, Default)]
pub struct Creation {
    pub pods: Vec<Pod>,
    /// Group ids (`<hash>-<slot>`).
    pub groups: Vec<String>,
    /// " (N pod(s) each) on pool P".
    pub detail: String,
}

/// What carrying the decision out met.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Children whose names objects the model does not control already hold.
    pub conflict: Option<String>,
    /// The first refusal of a pod creation, as the API server worded it.
    pub refused: Option<String>,
    /// Creations were tried.
    pub created: bool,
    /// Events about what applying met (a removal for capacity, refused or created
    /// groups), published with the decision's.
    pub notes: Vec<Note>,
}

/// When to look at the model again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Requeue {
    After(Duration),
    /// Not converged, nothing timed: back off while the pods stay the same.
    Busy,
}

/// One pass's decision.
pub struct Decision {
    /// The status as if every write succeeds (see [`Decision::status`]).
    pub status: DeepSeekModelStatus,
    /// Pods whose deletion writes, orphans and doomed groups' alike.
    pub delete: Vec<Deletion>,
    /// Groups deleted (`-<hash>-<slot>-`): their names are no longer awaited.
    pub deleted_groups: Vec<String>,
    /// `Some`: keep the model's children (these Services, its NetworkPolicy and
    /// ScaledObject) as built. `None`: no plan, leave them as they are.
    pub services: Option<Vec<Service>>,
    pub create: Creation,
    pub events: Vec<Note>,
    /// A partly placed group is removed: the note for the capacity retry memory.
    pub capacity_removed: Option<String>,
    /// Nothing is left to create: an earlier refusal no longer matters.
    pub creation_settled: bool,
    /// Every rank found a node: earlier capacity removals are over.
    pub capacity_settled: bool,
    /// A crashed group is deleted to be recreated: the crash memory records it.
    pub crash_recreated: bool,
    pub converged: bool,
    pub requeue: Requeue,
    /// The nearest moment a bound runs out with no watch event.
    pub recheck: Option<Duration>,
    /// What the workload conditions are derived from, planned or not.
    view: View,
    previous: DeepSeekModelStatus,
}

/// The workload conditions' inputs (conditions.rs `WorkloadView`, owned).
#[derive(Clone, Debug)]
struct View {
    groups: Vec<ObservedGroup>,
    hash: String,
    replicas: u32,
    actions_pending: bool,
    unschedulable: Option<String>,
    refused: Option<String>,
    capacity: Option<String>,
    crash_looping: Option<String>,
}

impl Decision {
    /// Whether carrying the decision out deletes anything: a pass that read the pod cache
    /// reads again from a quorum list first.
    pub fn deletes(&self) -> bool {
        !self.delete.is_empty()
    }

    /// The status to write once the decision is carried out, with the conditions of what
    /// it met; the Events that news asks for.
    pub fn status(&self, outcome: &Outcome) -> (DeepSeekModelStatus, Vec<Note>, bool) {
        let mut status = self.status.clone();
        let mut view = self.view.clone();
        if outcome.created {
            view.refused = outcome.refused.clone();
        }
        status.conditions.retain(|c| {
            ![
                cond::SCHEDULED,
                cond::AVAILABLE,
                cond::PROGRESSING,
                cond::DEGRADED,
                cond::CONFLICT,
            ]
            .contains(&c.type_.as_str())
        });
        let converged = workload(&self.previous, &mut status, &view);
        let mut events = Vec::new();
        let conflict = match (&self.services, &outcome.conflict) {
            (_, Some(message)) => Some(message.clone()),
            // Children left alone this pass: a conflict reported before still stands.
            (None, None) => {
                cond::get(&self.previous.conditions, cond::CONFLICT).map(|c| c.message.clone())
            }
            (Some(_), None) => None,
        };
        if let Some(message) = conflict {
            let was = cond::get(&self.previous.conditions, cond::CONFLICT);
            if was.is_none_or(|c| c.message != message) {
                events.push(Note {
                    warning: true,
                    reason: "Conflict",
                    note: message.clone(),
                });
            }
            set(
                &self.previous.conditions,
                &mut status.conditions,
                cond::CONFLICT,
                true,
                "ObjectNotOwned",
                message,
                status.observed_generation,
            );
        }
        (status, events, converged && outcome.conflict.is_none())
    }
}

/// Sets Scheduled, Available, Progressing and Degraded; returns whether converged.
fn workload(previous: &DeepSeekModelStatus, status: &mut DeepSeekModelStatus, v: &View) -> bool {
    cond::workload_conditions(
        &previous.conditions,
        &mut status.conditions,
        &cond::WorkloadView {
            groups: &v.groups,
            hash: &v.hash,
            replicas: v.replicas,
            actions_pending: v.actions_pending,
            unschedulable: v.unschedulable.clone(),
            create_refused: v.refused.clone(),
            capacity: v.capacity.clone(),
            crash_looping: v.crash_looping.clone(),
        },
        status.observed_generation,
    )
}

/// What the health rules of groups.rs read besides the pods.
pub fn health_inputs<'a>(
    cfg: &OperatorConfig,
    now: Timestamp,
    lost_nodes: &'a BTreeMap<String, Timestamp>,
    partially_created: &'a BTreeSet<String>,
) -> HealthInputs<'a> {
    HealthInputs {
        now,
        lost_nodes,
        unreachable_timeout: cfg.unreachable_node_timeout_seconds.duration(),
        not_ready_timeout: cfg.rank_not_ready_timeout_seconds.duration(),
        capacity_pending_timeout: cfg.capacity_pending_timeout_seconds.duration(),
        partially_created,
    }
}

fn group_id(g: &ObservedGroup) -> String {
    format!("{}-{}", g.hash, g.slot)
}

/// The deletions of `doomed` groups' pods and of orphans, only those that write.
fn deletions(pods: &[&Pod], dead_nodes: &BTreeSet<String>) -> Vec<Deletion> {
    pods.iter()
        .filter(|p| would_delete(&[*p], dead_nodes))
        .map(|p| Deletion {
            name: p.name_any(),
            force: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| dead_nodes.contains(n)),
        })
        .collect()
}

/// One `GroupDeleted` Event per kind of decision, naming each group with a pod still to
/// delete (a group already terminating was reported when its deletion started).
fn deleted_notes(
    doomed: &[(u32, String)],
    groups: &[FoundGroup<'_>],
    dead_nodes: &BTreeSet<String>,
) -> Vec<Note> {
    let doomed: Vec<&FoundGroup<'_>> = groups
        .iter()
        .filter(|g| {
            doomed
                .iter()
                .any(|(s, h)| g.observed.slot == *s && &g.observed.hash == h)
        })
        .filter(|g| would_delete(&g.pods, dead_nodes))
        .collect();
    let mut kinds: Vec<Option<Fault>> = doomed.iter().map(|g| g.observed.broken).collect();
    kinds.sort_by_key(|k| k.map(Fault::describe));
    kinds.dedup();
    kinds
        .into_iter()
        .map(|kind| {
            let ids: Vec<String> = doomed
                .iter()
                .filter(|g| g.observed.broken == kind)
                .map(|g| group_id(&g.observed))
                .collect();
            let why = match kind {
                Some(fault) => format!("{}; recreating the group whole", fault.describe()),
                None => "replaced or scaled down".into(),
            };
            Note {
                warning: kind.is_some(),
                reason: "GroupDeleted",
                note: format!("group(s) {}: {why}", ids.join(", ")),
            }
        })
        .collect()
}

/// Decides one pass. Pure: the same inputs give the same decision.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let model = i.model;
    let name = model.name_any();
    let ns = model.namespace().unwrap_or_default();
    let previous = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;
    let cfg = i.config;
    // queueDepth and lastScale* belong to the autoscaler's field manager; reconcile
    // neither writes nor compares them.
    let mut status = DeepSeekModelStatus {
        observed_generation: generation,
        selector: Some(labels::leader_selector_string(&name)),
        // Kept while the model cannot be planned, so an upgrade during a shortage still
        // finds what the pods run.
        resolved: previous.resolved.clone(),
        plan: previous.plan.clone(),
        ..Default::default()
    };
    let health = health_inputs(cfg, i.now, i.lost_nodes, &i.recall.partially_created);
    let found = find_groups(i.pods, &health);
    let dead_nodes = health.dead_nodes();
    let groups = &found.groups;
    let observed: Vec<ObservedGroup> = groups.iter().map(|g| g.observed.clone()).collect();
    status.replicas = observed.iter().filter(|g| g.broken.is_none()).count() as i32;
    status.ready_replicas = observed.iter().filter(|g| g.ready).count() as i32;

    // A group only partly on nodes (one past the bound first): what the condition says.
    let bound = cfg.capacity_pending_timeout_seconds.duration();
    let capacity_note = groups
        .iter()
        .filter(|g| g.partial.is_some())
        .max_by_key(|g| g.partial.as_ref().map(|p| p.verdict == Verdict::Remove))
        .and_then(|g| {
            let p = g.partial.as_ref()?;
            Some(describe(
                &group_id(&g.observed),
                p,
                bound,
                i.autoscaler_state,
            ))
        });

    let mut events = Vec::new();
    // Validate and place; the replicas asked for hold even without a plan.
    let validated = validate(&model.spec, i.catalog, cfg);
    // Declared pools may be open to some namespaces only (placement.rs).
    let namespace = model.metadata.namespace.as_deref().unwrap_or_default();
    let placed = validated
        .as_ref()
        .map_err(|e| (e.reason, e.message.clone()))
        .and_then(|v| {
            place(v, namespace, i.pools, i.catalog)
                .map(|p| (v, p))
                .map_err(|u| (u.reason, u.message))
        });
    let replicas = match &validated {
        Ok(v) => v.replicas,
        Err(_) => unvalidated_replicas(model),
    };
    status.desired_replicas = replicas as i32;

    // Retire what no plan is needed for: orphans, broken groups, surplus slots.
    let retired = rollout::retire(replicas, &observed);
    let capacity_removed = capacity_note.clone().filter(|_| {
        retired.iter().any(|(slot, hash)| {
            observed.iter().any(|g| {
                g.slot == *slot && &g.hash == hash && g.broken == Some(Fault::CapacityPending)
            })
        })
    });
    let mut doomed = retired.clone();

    let mut services = None;
    let mut create = Creation::default();
    let mut hash = previous
        .resolved
        .as_ref()
        .map(|r| r.template_hash.clone())
        .unwrap_or_default();
    let mut creation_pending = false;
    match placed {
        Err((reason, message)) => refuse(&previous, &mut status, &mut events, reason, &message),
        Ok((validated, placement)) => {
            let plan_status = placement.status();
            let plan_msg = plan_message(&placement);
            set(
                &previous.conditions,
                &mut status.conditions,
                cond::PLANNED,
                true,
                "Planned",
                &plan_msg,
                generation,
            );
            // Against a cache that has not shown the last status write yet, a plan just
            // written looks new again: its Event is not written twice (status_memo.rs).
            if previous.plan.as_ref() != Some(&plan_status)
                && i.recall.plan_written != Some(digest_of(&Some(&plan_status)))
            {
                events.push(Note {
                    warning: false,
                    reason: "Planned",
                    note: plan_msg,
                });
            }
            status.plan = Some(plan_status);
            let owner = model.controller_owner_ref(&()).unwrap_or_default();
            let w = workload::workload(&workload::WorkloadInputs {
                model_name: &name,
                namespace: &ns,
                owner,
                spec: &model.spec,
                validated,
                placement: &placement,
                config: cfg,
                catalog: i.catalog,
                previous: previous.resolved.as_ref(),
            });
            status.resolved = Some(w.resolved.clone());
            hash = w.template_hash.clone();
            services = Some(services::services(&w));
            let limits = RolloutLimits::resolve(
                validated.rollout.max_surge,
                validated.rollout.max_unavailable,
                placement.surge_room(validated.replicas),
            );
            let actions = rollout::step(validated.replicas, &w.template_hash, &observed, limits);
            doomed.extend(
                actions
                    .delete
                    .iter()
                    .filter(|d| !retired.contains(d))
                    .cloned(),
            );
            creation_pending = !actions.create.is_empty();
            // After a refusal, or the removal of a partly placed group, creations wait
            // for the backoff; deletions never do.
            let waiting = i.recall.refused.as_ref().and_then(|r| r.1).is_some()
                || i.recall.capacity.as_ref().and_then(|c| c.0).is_some();
            if !waiting {
                create = creation(&w, &actions.create, groups, &i.recall.awaited);
            }
        }
    }

    // Crashed groups of the current template in kept slots are recreated only as the
    // back-off allows; until then they stay as they are (no writes) and the model says why.
    let kept = rollout::kept_slots(replicas, &observed);
    let crashed: Vec<&FoundGroup<'_>> = groups
        .iter()
        .filter(|g| {
            matches!(
                g.observed.broken,
                Some(Fault::RankRestarted | Fault::RankFailed)
            )
        })
        .filter(|g| g.observed.hash == hash && kept.contains(&g.observed.slot))
        .filter(|g| would_delete(&g.pods, &dead_nodes))
        .collect();
    let mut crash_recreated = false;
    let mut crash_looping = None;
    let mut crash_wait = None;
    if !crashed.is_empty() {
        match next_allowed(&i.recall.crashes, i.now, &cfg.crash_loop_backoff) {
            None => crash_recreated = true,
            Some(until) => {
                doomed.retain(|(s, h)| {
                    !crashed
                        .iter()
                        .any(|g| g.observed.slot == *s && &g.observed.hash == h)
                });
                let message = crash_message(&crashed, until, cfg);
                let was = cond::get(&previous.conditions, cond::DEGRADED);
                if was.is_none_or(|c| c.message != message) {
                    events.push(Note {
                        warning: true,
                        reason: "CrashLooping",
                        note: message.clone(),
                    });
                }
                crash_looping = Some(message);
                let left = until.as_millisecond() - i.now.as_millisecond();
                crash_wait = Some(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
            }
        }
    }

    let doomed_pods = pods_of(&doomed, groups);
    let mut delete = deletions(&found.orphans, &dead_nodes);
    delete.extend(deletions(&doomed_pods, &dead_nodes));
    events.extend(deleted_notes(&doomed, groups, &dead_nodes));
    let deleted_groups = doomed
        .iter()
        .map(|(slot, hash)| format!("-{hash}-{slot}-"))
        .collect();

    let all_placed = i
        .pods
        .iter()
        .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
    let capacity_waiting = i.recall.capacity.as_ref().and_then(|c| c.0);
    let capacity_settled = i.recall.capacity.is_some()
        && capacity_waiting.is_none()
        && capacity_note.is_none()
        && !creation_pending
        && all_placed;
    let capacity = capacity_note.clone().or_else(|| {
        let (wait, note) = i.recall.capacity.as_ref()?;
        wait.map(|_| note.clone())
    });
    let current_pods: Vec<&Pod> = groups
        .iter()
        .filter(|g| g.observed.hash == hash)
        .flat_map(|g| g.pods.iter().copied())
        .collect();
    let creation_settled =
        !creation_pending && i.recall.refused.as_ref().is_none_or(|r| r.1.is_none());
    let view = View {
        groups: observed,
        hash,
        replicas,
        actions_pending: creation_pending || !doomed.is_empty(),
        unschedulable: unschedulable(&current_pods),
        // A refusal stands while groups wait to be created.
        refused: i
            .recall
            .refused
            .as_ref()
            .filter(|_| creation_pending)
            .map(|r| r.0.clone()),
        capacity,
        crash_looping,
    };
    let planned = services.is_some();
    let mut decision = Decision {
        status,
        delete,
        deleted_groups,
        services,
        create,
        events,
        capacity_removed,
        creation_settled,
        capacity_settled,
        crash_recreated,
        converged: false,
        requeue: Requeue::Busy,
        recheck: found.recheck,
        view,
        previous,
    };
    let (status, _, converged) = decision.status(&Outcome::default());
    decision.status = status;
    decision.converged = converged && planned;
    let retry = i
        .recall
        .refused
        .as_ref()
        .and_then(|r| r.1)
        .filter(|_| creation_pending)
        .or(capacity_waiting.filter(|_| creation_pending))
        .or(crash_wait);
    decision.requeue = match retry {
        Some(wait) => Requeue::After(wait.max(BUSY_REQUEUE / 5)),
        None if decision.converged => Requeue::After(IDLE_REQUEUE),
        // Nothing is planned and nothing moves: look again now and then (the pools or
        // the configuration may change).
        None if !planned && converged => Requeue::After(IDLE_REQUEUE),
        None => Requeue::Busy,
    };
    decision
}

/// The Degraded message of crashed groups held back: the last termination the kubelet
/// reported of one of their ranks, and when the recreation may go. Stable while the
/// group waits, so the status is written once.
fn crash_message(crashed: &[&FoundGroup<'_>], until: Timestamp, cfg: &OperatorConfig) -> String {
    let b = &cfg.crash_loop_backoff;
    let ids: Vec<String> = crashed.iter().map(|g| group_id(&g.observed)).collect();
    let last = crashed
        .iter()
        .flat_map(|g| g.pods.iter())
        .find_map(|p| last_termination(p));
    let why = match last {
        Some((pod, reason, code)) => {
            format!("rank {pod} last terminated with reason {reason}, exit code {code}")
        }
        None => "a rank restarted or failed".into(),
    };
    format!(
        "group(s) {} crash-looping: {why}; recreated at most {} times in {}s, next after {}",
        ids.join(", "),
        b.max_recreations,
        b.window_seconds,
        Timestamp::from_second(until.as_second() + 1).unwrap_or(until)
    )
}

/// The pod, reason and exit code of a rank's latest termination: its container's
/// `state.terminated` (still down), else `lastState.terminated`.
fn last_termination(pod: &Pod) -> Option<(String, String, i32)> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let t = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
            let reason = t.reason.clone().unwrap_or_else(|| "Unknown".into());
            Some((pod.name_any(), reason, t.exit_code))
        })
}

/// The replicas a model asks for when its spec does not validate: scaling to zero, or
/// down, never waits for a valid plan.
fn unvalidated_replicas(model: &DeepSeekModel) -> u32 {
    let s = &model.spec;
    let r = match (&s.autoscaling, s.replicas) {
        (Some(a), r) => r.unwrap_or(a.min_replicas).max(0),
        (None, r) => r.unwrap_or(1).max(0),
    };
    u32::try_from(r).unwrap_or(0)
}

/// The Planned condition's message.
fn plan_message(placement: &crate::placement::Placement) -> String {
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
    format!(
        "{} x {} per replica ({} node(s) x {}), {layout}, {} on pool {}{source}",
        plan_status.gpus_per_replica,
        placement.plan.accelerator,
        plan_status.nodes_per_replica,
        plan_status.gpus_per_node,
        plan_status.engine,
        placement.pool.name
    )
}

/// The pods of `slots` at the current template that are not there yet (nor created
/// moments ago and not yet in the cache: `awaited`), so a group created in part is
/// completed, not recreated.
fn creation(
    w: &crate::desired::Workload,
    slots: &[u32],
    groups: &[FoundGroup<'_>],
    awaited: &BTreeSet<String>,
) -> Creation {
    let existing: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g.pods.iter().map(|p| p.name_any()))
        .chain(awaited.iter().cloned())
        .collect();
    Creation {
        pods: slots
            .iter()
            .flat_map(|slot| pods::group_pods(w, *slot))
            .filter(|p| !existing.contains(&p.name_any()))
            .collect(),
        groups: slots
            .iter()
            .map(|slot| format!("{}-{slot}", w.template_hash))
            .collect(),
        detail: format!(
            " ({} pod(s) each) on pool {}",
            w.nodes_per_group, w.pool.name
        ),
    }
}

/// A digest of any serializable value (a plan, say): what controller/status_memo.rs
/// remembers a write by, compared here to skip writing the same plan again.
pub fn digest_of<T: serde::Serialize>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // serde_json's output of one type is deterministic (maps are BTreeMaps or structs).
    serde_json::to_string(value)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

/// `Planned` says why there is no plan (with a warning Event when that is news); the other
/// conditions stay as the groups that exist make them.
pub(super) fn refuse(
    previous: &DeepSeekModelStatus,
    status: &mut DeepSeekModelStatus,
    events: &mut Vec<Note>,
    reason: &'static str,
    message: &str,
) {
    let was = cond::get(&previous.conditions, cond::PLANNED);
    if was.is_none_or(|c| c.reason != reason || c.message != message) {
        events.push(Note {
            warning: true,
            reason,
            note: message.to_string(),
        });
    }
    let g = status.observed_generation;
    set(
        &previous.conditions,
        &mut status.conditions,
        cond::PLANNED,
        false,
        reason,
        message,
        g,
    );
}

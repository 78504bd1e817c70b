//! Reading replica groups back from the pods in the cluster, and judging their health.
//!
//! A group runs a one-shot rendezvous: its ranks join once and then serve together. So a
//! group that loses any rank cannot heal in place and is recreated as a unit, as
//! LeaderWorkerSet does by default. A group counts as broken ([`Fault`]) when a rank:
//! - sits on an unreachable node (`node.kubernetes.io/unreachable` taint, or Ready not
//!   True) for longer than `unreachableNodeTimeoutSeconds`;
//! - failed, completed or is being deleted;
//! - had a container restart (`restartCount > 0`: a fresh group starts at zero);
//! - stayed NotReady longer than `rankNotReadyTimeoutSeconds` (from its Ready condition's
//!   lastTransitionTime) after it had served: another rank of the group is Ready, or this
//!   rank itself was Ready since its container started (its Ready condition turned False
//!   after the container's `startedAt`; a rank still loading has had Ready False since
//!   before its container started). So a one-pod group and a group whose ranks all went
//!   NotReady are recreated too, while a group whose ranks are all still loading weights
//!   is never cut short: loading can take many minutes (a hung engine is the liveness
//!   probe's to catch, docs/launcher.md).
//! - is missing from a group that already started;
//! - (CapacityPending) stayed unschedulable while another rank of the group holds a node,
//!   for longer than `capacityPendingTimeoutSeconds` counted from the moment the group
//!   became partial: the later of the first rank's binding (its PodScheduled=True
//!   transition) and the unplaced rank's PodScheduled=False transition. A node
//!   autoscaler provided part of the group (NodePool limits, no offering), and the placed
//!   ranks would hold accelerators that serve nothing. Counting from pod creation instead
//!   would remove a group the moment its first node registered whenever nodes take
//!   longer than the bound to boot (common for GPU nodes). The rule is
//!   `whole_groups::verdict`; [`FoundGroup::partial`] carries what the condition reports
//!   while the group waits.
//!
//! A group that is missing ranks but never started (no rank ever Ready or Running, none
//! dead or restarted), or whose creation this operator saw fail part-way, is only
//! incomplete: its missing ranks are created and the present ones kept, so a quota or a
//! webhook refusing one pod does not cause a delete-and-recreate loop.
//!
//! Lost nodes: a pod on a dead node never finishes terminating (no kubelet confirms), and
//! the replacement group reuses the same deterministic pod names. So the controller
//! force-deletes (grace period 0) the pods of a doomed group that sit on a node lost past
//! the bound, instead of giving the new group new names: new names would need a
//! generation counter kept somewhere, and a restarted operator could not recompute it
//! from the pods alone without risking duplicate groups. The bound is what makes force
//! deletion safe enough: the node has been unreachable for that long, so its processes
//! are presumed gone (as the node-lifecycle controller presumes when it evicts).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::inventory::NodeFacts;
use k8s_openapi::jiff::Timestamp;

use crate::desired::labels;
use crate::rollout::{Fault, ObservedGroup};
use crate::whole_groups::{verdict, Verdict};

/// A group and its pods as found.
pub struct FoundGroup<'a> {
    pub observed: ObservedGroup,
    pub pods: Vec<&'a Pod>,
    /// Set while some ranks hold nodes and another is unschedulable.
    pub partial: Option<Partial>,
}

/// A group only partly on nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Partial {
    pub verdict: Verdict,
    /// Ranks on nodes, of `size`.
    pub placed: usize,
    pub size: usize,
    /// The longest-unschedulable rank and since when.
    pub pending_pod: String,
    pub since: Timestamp,
}

/// What the health rules need besides the pods.
pub struct HealthInputs<'a> {
    pub now: Timestamp,
    /// Node name -> since when it is unreachable, for the nodes of the model's pods.
    pub lost_nodes: &'a BTreeMap<String, Timestamp>,
    pub unreachable_timeout: Duration,
    pub not_ready_timeout: Duration,
    pub capacity_pending_timeout: Duration,
    /// Group ids whose creation this operator saw fail part-way.
    pub partially_created: &'a BTreeSet<String>,
}

impl HealthInputs<'_> {
    /// How long `since` is past its bound (negative: time left).
    fn overdue(&self, since: Timestamp, bound: Duration) -> i64 {
        let elapsed = self.now.as_millisecond() - since.as_millisecond();
        elapsed - i64::try_from(bound.as_millis()).unwrap_or(i64::MAX)
    }

    /// Nodes lost past the bound: their pods are force-deleted.
    pub fn dead_nodes(&self) -> BTreeSet<String> {
        self.lost_nodes
            .iter()
            .filter(|(_, since)| self.overdue(**since, self.unreachable_timeout) >= 0)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// What reading the pods found.
pub struct Found<'a> {
    pub groups: Vec<FoundGroup<'a>>,
    /// Pods without readable group labels, to delete.
    pub orphans: Vec<&'a Pod>,
    /// The nearest moment a bound runs out for a group that is not broken yet: reconcile
    /// must look again by then, as no watch event marks it.
    pub recheck: Option<Duration>,
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// When a rank's Ready condition last turned to not True, if it is not Ready now.
fn not_ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status != "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When the scheduler last found no node for a rank that is still unplaced.
fn unschedulable_since(pod: &Pod) -> Option<Timestamp> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
    {
        return None;
    }
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// When a placed rank was bound to its node (PodScheduled turned True), falling back to
/// its Ready condition's transition (written when the kubelet first saw the pod).
fn bound_since(pod: &Pod) -> Option<Timestamp> {
    if !placed(pod) {
        return None;
    }
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let time = |type_: &str, status: Option<&str>| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && status.is_none_or(|s| c.status == s))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    time("PodScheduled", Some("True")).or_else(|| time("Ready", None))
}

/// Whether a NotReady rank had been Ready since its container started: its Ready
/// condition turned not True after the container's `startedAt`. A rank still loading
/// has had Ready False since the kubelet first saw the pod, before its container started.
fn fell_from_ready(pod: &Pod) -> bool {
    let Some(since) = not_ready_since(pod) else {
        return false;
    };
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.as_ref())
                    .is_some_and(|started| since > started.0)
            })
        })
}

fn placed(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_dead(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() || matches!(phase(pod), Some("Failed" | "Succeeded"))
}

fn restarted(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.restart_count > 0))
}

/// Since when a node is unreachable: the unreachable taint's timeAdded, else its Ready
/// condition's last transition when Ready is not True. `None` for a healthy node.
pub fn node_lost_since(node: &NodeFacts) -> Option<Timestamp> {
    let tainted = node
        .taints()
        .iter()
        .find(|t| t.key == "node.kubernetes.io/unreachable")
        .map(|t| t.time_added.as_ref().map(|t| t.0));
    let not_ready = node.ready().filter(|r| !r.is_true).map(|r| r.since);
    match (tainted, not_ready) {
        (Some(Some(a)), Some(Some(b))) => Some(a.min(b)),
        (Some(Some(t)), _) | (_, Some(Some(t))) => Some(t),
        _ => None,
    }
}

/// What one group's pods were judged.
struct Judged {
    fault: Option<Fault>,
    incomplete: bool,
    ready: bool,
    /// Time until a bound runs out.
    recheck: Option<Duration>,
    partial: Option<Partial>,
}

/// Whether the group is partly placed, and its capacity verdict. The bound counts from
/// the moment the group became partial: one rank bound while another is not.
fn partial(pods: &[&Pod], size: usize, h: &HealthInputs<'_>) -> Option<Partial> {
    let on_nodes = pods.iter().filter(|p| placed(p)).count();
    let (pod, unplaced_since) = pods
        .iter()
        .filter_map(|p| Some((*p, unschedulable_since(p)?)))
        .min_by_key(|(_, t)| *t)?;
    let first_bound = pods.iter().filter_map(|p| bound_since(p)).min();
    let since = first_bound.map_or(unplaced_since, |b| b.max(unplaced_since));
    let v = verdict(
        on_nodes,
        Some(since.as_millisecond()),
        h.now.as_millisecond(),
        h.capacity_pending_timeout,
    );
    (v != Verdict::NotPartial).then(|| Partial {
        verdict: v,
        placed: on_nodes,
        size,
        pending_pod: pod.metadata.name.clone().unwrap_or_default(),
        since,
    })
}

/// Judges one group's pods.
fn judge(gid: &str, pods: &[&Pod], size: usize, h: &HealthInputs<'_>) -> Judged {
    let mut recheck: Option<i64> = None;
    let mut wait = |overdue: i64| {
        if overdue < 0 {
            recheck = Some(recheck.map_or(-overdue, |r: i64| r.min(-overdue)));
        }
    };
    let mut node_lost = false;
    for p in pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let Some(since) = node.and_then(|n| h.lost_nodes.get(n)) {
            let overdue = h.overdue(*since, h.unreachable_timeout);
            node_lost |= overdue >= 0;
            wait(overdue);
        }
    }
    let any_ready = pods.iter().any(|p| is_ready(p));
    let mut not_ready_too_long = false;
    for p in pods {
        // Only a rank of a group that served: loading weights is not bounded here.
        if !(any_ready || fell_from_ready(p)) {
            continue;
        }
        if let Some(since) = not_ready_since(p) {
            let overdue = h.overdue(since, h.not_ready_timeout);
            not_ready_too_long |= overdue >= 0;
            wait(overdue);
        }
    }
    let partial = partial(pods, size, h);
    let capacity_pending = match partial.as_ref().map(|p| p.verdict) {
        Some(Verdict::Remove) => true,
        Some(Verdict::Waiting { left }) => {
            wait(-i64::try_from(left.as_millis()).unwrap_or(i64::MAX));
            false
        }
        _ => false,
    };
    let dead = pods.iter().any(|p| is_dead(p));
    let restart = pods.iter().any(|p| restarted(p));
    let missing = pods.len() < size;
    let started = dead || restart || any_ready || pods.iter().any(|p| phase(p) == Some("Running"));
    let incomplete = missing && (!started || h.partially_created.contains(gid));
    let fault = if node_lost {
        Some(Fault::NodeLost)
    } else if dead {
        Some(Fault::RankFailed)
    } else if restart {
        Some(Fault::RankRestarted)
    } else if missing && !incomplete {
        Some(Fault::RankMissing)
    } else if not_ready_too_long {
        Some(Fault::RankNotReady)
    } else if capacity_pending {
        Some(Fault::CapacityPending)
    } else {
        None
    };
    let ready = fault.is_none() && !missing && pods.iter().all(|p| is_ready(p));
    // Kept even for a broken group: its pods on a node not yet lost past the bound are
    // force-deleted only once the bound runs out.
    let recheck = recheck.map(|ms| Duration::from_millis(ms.unsigned_abs()));
    Judged {
        fault,
        incomplete: incomplete && fault.is_none(),
        ready,
        recheck,
        partial,
    }
}

/// Groups pods by group id and judges each group.
pub fn find_groups<'a, P: Borrow<Pod>>(pods: &'a [P], h: &HealthInputs<'_>) -> Found<'a> {
    let mut by_id: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for pod in pods.iter().map(Borrow::borrow) {
        match (
            label(pod, labels::GROUP_ID),
            label(pod, labels::GROUP).and_then(|s| s.parse::<u32>().ok()),
        ) {
            (Some(id), Some(_)) if label(pod, labels::TEMPLATE_HASH).is_some() => {
                by_id.entry(id).or_default().push(pod)
            }
            _ => orphans.push(pod),
        }
    }
    let mut recheck: Option<Duration> = None;
    let groups = by_id
        .into_iter()
        .filter_map(|(gid, pods)| {
            let first = pods.first()?;
            let slot = label(first, labels::GROUP)?.parse().ok()?;
            let hash = label(first, labels::TEMPLATE_HASH)?.to_string();
            let size: usize = label(first, labels::GROUP_SIZE)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let j = judge(gid, &pods, size, h);
            if let Some(w) = j.recheck {
                recheck = Some(recheck.map_or(w, |r| r.min(w)));
            }
            Some(FoundGroup {
                observed: ObservedGroup {
                    slot,
                    hash,
                    ready: j.ready,
                    broken: j.fault,
                    incomplete: j.incomplete,
                },
                pods,
                partial: j.partial,
            })
        })
        .collect();
    Found {
        groups,
        orphans,
        recheck,
    }
}

/// The scheduler's message for the first pod it could not place, if any.
pub fn unschedulable(pods: &[&Pod]) -> Option<String> {
    pods.iter().find_map(|p| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find_map(|c| {
                (c.type_ == "PodScheduled" && c.status == "False").then(|| {
                    c.message
                        .clone()
                        .unwrap_or_else(|| "pod cannot be scheduled".into())
                })
            })
    })
}

/// The pods of the groups named by (slot, template hash).
pub fn pods_of<'a>(doomed: &[(u32, String)], groups: &[FoundGroup<'a>]) -> Vec<&'a Pod> {
    groups
        .iter()
        .filter(|g| {
            doomed
                .iter()
                .any(|(slot, hash)| g.observed.slot == *slot && &g.observed.hash == hash)
        })
        .flat_map(|g| g.pods.iter().copied())
        .collect()
}

/// Whether deleting these pods would write: some pod is not terminating yet, or sits on a
/// node lost past the bound (force-deleted even while terminating).
pub fn would_delete(pods: &[&Pod], dead_nodes: &BTreeSet<String>) -> bool {
    pods.iter().any(|p| {
        p.metadata.deletion_timestamp.is_none()
            || p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| dead_nodes.contains(n))
    })
}

/// The condition message for a partly placed group: its ranks, the bound, and what the
/// autoscaler says.
pub fn describe(id: &str, p: &Partial, bound: Duration, state: Option<&str>) -> String {
    let fate = match p.verdict {
        Verdict::Remove => "removing the group whole to free its nodes".to_string(),
        _ => format!(
            "the group is removed whole if still partial {}s after that (capacityPendingTimeoutSeconds)",
            bound.as_secs()
        ),
    };
    let state = state.map(|s| format!("; {s}")).unwrap_or_default();
    format!(
        "group {id}: {} of {} ranks on nodes, {} unschedulable since {}; {fate}{state}",
        p.placed, p.size, p.pending_pod, p.since
    )
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;

//! Conditions: set one by type, keeping its transition time when nothing changed, so an
//! unchanged world yields an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::rollout::{Fault, ObservedGroup};

pub const PLANNED: &str = "Planned";
pub const SCHEDULED: &str = "Scheduled";
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Present while a child's name is taken by an object the model does not control.
pub const CONFLICT: &str = "Conflict";

/// Sets condition `type_`, reusing the previous transition time when its status did not
/// change.
pub fn set(
    previous: &[Condition],
    out: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status_s = if status { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status_s)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    out.retain(|c| c.type_ != type_);
    out.push(Condition {
        type_: type_.into(),
        status: status_s.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: last,
    });
}

pub fn get<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// What reconcile saw of a model's groups, for the workload conditions.
pub struct WorkloadView<'a> {
    pub groups: &'a [ObservedGroup],
    /// Current template hash.
    pub hash: &'a str,
    pub replicas: u32,
    /// Reconcile is still creating or deleting groups.
    pub actions_pending: bool,
    /// The scheduler's message for a pod of the current template it cannot place.
    pub unschedulable: Option<String>,
    /// The API server's refusal of the last pod creation, while backing off.
    pub create_refused: Option<String>,
    /// A group the node autoscaler provides only partly, or its recreation waiting after
    /// its removal (controller/capacity_pending.rs): reason CapacityPending.
    pub capacity: Option<String>,
    /// Crashed groups whose recreation waits for the back-off (crash_backoff.rs): reason
    /// CrashLooping, with the last termination the kubelet reported.
    pub crash_looping: Option<String>,
}

/// Sets Scheduled, Available, Progressing and Degraded from what was observed, and
/// returns whether the workload has converged.
pub fn workload_conditions(
    previous: &[Condition],
    out: &mut Vec<Condition>,
    v: &WorkloadView<'_>,
    generation: Option<i64>,
) -> bool {
    match (&v.capacity, &v.unschedulable) {
        (Some(msg), _) => set(
            previous,
            out,
            SCHEDULED,
            false,
            "CapacityPending",
            msg,
            generation,
        ),
        (None, Some(msg)) => set(
            previous,
            out,
            SCHEDULED,
            false,
            "Unschedulable",
            msg,
            generation,
        ),
        (None, None) => set(
            previous,
            out,
            SCHEDULED,
            true,
            "Scheduled",
            "every pod is placed",
            generation,
        ),
    }
    let ready = v.groups.iter().filter(|g| g.ready).count() as u32;
    let desired = v.replicas;
    let available = desired > 0 && ready >= desired;
    let reason = match (desired, available) {
        (0, _) => "ScaledToZero",
        (_, true) => "ReplicasReady",
        (_, false) => "ReplicasNotReady",
    };
    let msg = format!("{ready} of {desired} replica groups ready");
    set(previous, out, AVAILABLE, available, reason, msg, generation);

    let current = v.groups.iter().filter(|g| g.hash == v.hash).count();
    let converged = !v.actions_pending
        && v.groups.iter().all(|g| g.hash == v.hash && g.ready)
        && v.groups.len() as u32 == desired;
    let reason = if converged {
        "Complete"
    } else if v.create_refused.is_some() {
        "CreateFailed"
    } else if v.groups.iter().any(|g| g.hash != v.hash) {
        "RollingOut"
    } else {
        "Scaling"
    };
    let msg = match &v.create_refused {
        Some(refusal) if !converged => format!("creating pods failed: {refusal}"),
        _ => format!("{current} of {desired} groups at template {}", v.hash),
    };
    set(
        previous,
        out,
        PROGRESSING,
        !converged,
        reason,
        msg,
        generation,
    );

    let broken: Vec<_> = v.groups.iter().filter_map(|g| g.broken).collect();
    let other_faults = broken.iter().any(|f| *f != Fault::CapacityPending);
    let (degraded, reason, msg) = if let Some(note) = &v.crash_looping {
        (true, "CrashLooping", note.clone())
    } else if let Some(note) = v.capacity.as_ref().filter(|_| !other_faults) {
        (true, "CapacityPending", note.clone())
    } else if let Some(first) = broken.first() {
        let mut kinds: Vec<&str> = broken.iter().map(|f| f.describe()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        (
            true,
            first.reason(),
            format!(
                "{} group(s) broken ({}); recreating each whole",
                broken.len(),
                kinds.join(", ")
            ),
        )
    } else if let Some(refusal) = &v.create_refused {
        (
            true,
            "CreateFailed",
            format!("creating pods failed: {refusal}"),
        )
    } else if v.unschedulable.is_some() {
        (
            true,
            "Unschedulable",
            "pods are waiting for accelerators".to_string(),
        )
    } else {
        (false, "AsExpected", String::new())
    };
    set(previous, out, DEGRADED, degraded, reason, msg, generation);
    converged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(slot: u32, hash: &str, ready: bool, broken: bool) -> ObservedGroup {
        ObservedGroup {
            slot,
            hash: hash.into(),
            ready,
            broken: broken.then_some(Fault::RankRestarted),
            incomplete: false,
        }
    }

    fn conditions(v: &WorkloadView<'_>) -> (Vec<Condition>, bool) {
        let mut out = Vec::new();
        let converged = workload_conditions(&[], &mut out, v, Some(3));
        (out, converged)
    }

    fn reason<'a>(c: &'a [Condition], t: &str) -> (&'a str, &'a str) {
        get(c, t)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .unwrap_or(("", ""))
    }

    /// A view of `groups` with nothing pending, refused or waiting.
    fn view<'a>(groups: &'a [ObservedGroup], hash: &'a str, replicas: u32) -> WorkloadView<'a> {
        WorkloadView {
            groups,
            hash,
            replicas,
            actions_pending: false,
            unschedulable: None,
            create_refused: None,
            capacity: None,
            crash_looping: None,
        }
    }

    #[test]
    fn a_converged_workload_is_available_and_not_progressing() {
        let groups = [group(0, "h", true, false), group(1, "h", true, false)];
        let v = view(&groups, "h", 2);
        let (c, converged) = conditions(&v);
        assert!(converged);
        assert_eq!(reason(&c, AVAILABLE), ("True", "ReplicasReady"));
        assert_eq!(reason(&c, PROGRESSING), ("False", "Complete"));
        assert_eq!(reason(&c, DEGRADED), ("False", "AsExpected"));
        assert_eq!(reason(&c, SCHEDULED), ("True", "Scheduled"));
        assert!(c.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn rollouts_failures_and_waiting_pods_are_reported() {
        let groups = [group(0, "old", true, false), group(0, "new", false, false)];
        let v = view(&groups, "new", 1);
        let (c, converged) = conditions(&v);
        assert!(!converged);
        assert_eq!(reason(&c, PROGRESSING), ("True", "RollingOut"));
        assert_eq!(reason(&c, AVAILABLE), ("True", "ReplicasReady"));

        let groups = [group(0, "h", false, true)];
        let v = WorkloadView {
            actions_pending: true,
            ..view(&groups, "h", 1)
        };
        let (c, _) = conditions(&v);
        assert_eq!(reason(&c, DEGRADED), ("True", "RankRestarted"));
        assert_eq!(reason(&c, AVAILABLE), ("False", "ReplicasNotReady"));

        let v = WorkloadView {
            groups: &[],
            hash: "h",
            replicas: 1,
            actions_pending: true,
            unschedulable: Some("0/13 nodes are available".into()),
            create_refused: None,
            capacity: None,
            crash_looping: None,
        };
        let (c, _) = conditions(&v);
        assert_eq!(reason(&c, SCHEDULED), ("False", "Unschedulable"));
        assert_eq!(
            get(&c, SCHEDULED).map(|c| c.message.as_str()),
            Some("0/13 nodes are available")
        );
        assert_eq!(reason(&c, PROGRESSING), ("True", "Scaling"));

        let v = WorkloadView {
            groups: &[],
            hash: "h",
            replicas: 0,
            actions_pending: false,
            unschedulable: None,
            create_refused: None,
            capacity: None,
            crash_looping: None,
        };
        let (c, converged) = conditions(&v);
        assert!(converged);
        assert_eq!(reason(&c, AVAILABLE), ("False", "ScaledToZero"));
    }

    #[test]
    fn transition_time_survives_unchanged_status() {
        let mut first = Vec::new();
        set(&[], &mut first, PLANNED, true, "Planned", "ok", Some(1));
        let mut second = Vec::new();
        set(&first, &mut second, PLANNED, true, "Planned", "ok", Some(1));
        assert_eq!(first, second);
        let mut third = Vec::new();
        set(
            &second,
            &mut third,
            PLANNED,
            false,
            "InsufficientAccelerators",
            "no",
            Some(2),
        );
        assert_eq!(
            get(&third, PLANNED).map(|c| c.status.as_str()),
            Some("False")
        );
    }

    #[test]
    fn refused_creations_and_the_kind_of_failure_are_reported() {
        let v = WorkloadView {
            groups: &[],
            hash: "h",
            replicas: 1,
            actions_pending: true,
            unschedulable: None,
            create_refused: Some("exceeded quota: pods=1".into()),
            capacity: None,
            crash_looping: None,
        };
        let (c, converged) = conditions(&v);
        assert!(!converged);
        assert_eq!(reason(&c, DEGRADED), ("True", "CreateFailed"));
        assert_eq!(reason(&c, PROGRESSING), ("True", "CreateFailed"));
        assert!(get(&c, DEGRADED).is_some_and(|c| c.message.contains("exceeded quota")));

        let mut lost = group(0, "h", false, true);
        lost.broken = Some(Fault::NodeLost);
        let groups = [lost];
        let v = WorkloadView {
            actions_pending: true,
            ..view(&groups, "h", 1)
        };
        let (c, _) = conditions(&v);
        assert_eq!(reason(&c, DEGRADED), ("True", "NodeLost"));
        assert!(get(&c, DEGRADED).is_some_and(|c| c.message.contains("unreachable")));
    }

    #[test]
    fn a_partly_provided_group_is_reported_as_capacity_pending() {
        let mut partial = group(1, "h", false, true);
        partial.broken = Some(Fault::CapacityPending);
        let groups = [group(0, "h", true, false), partial];
        let note =
            "group h-1: 1 of 2 ranks on nodes; Karpenter NodePool h100: NodeClaims a Initialized";
        let v = WorkloadView {
            actions_pending: true,
            unschedulable: Some("0/3 nodes are available".into()),
            capacity: Some(note.into()),
            ..view(&groups, "h", 2)
        };
        let (c, _) = conditions(&v);
        assert_eq!(reason(&c, SCHEDULED), ("False", "CapacityPending"));
        assert_eq!(reason(&c, DEGRADED), ("True", "CapacityPending"));
        assert!(get(&c, DEGRADED).is_some_and(|c| c.message == note));
        // Another fault is reported first: it is the more urgent news.
        let mut failed = group(0, "h", false, true);
        failed.broken = Some(Fault::RankFailed);
        let groups = [failed];
        let v = WorkloadView {
            groups: &groups,
            capacity: Some(note.into()),
            crash_looping: None,
            ..v
        };
        let (c, _) = conditions(&v);
        assert_eq!(reason(&c, DEGRADED), ("True", "RankFailed"));
    }
}

//! Group-by-group rollout and scaling, as a pure decision over observed groups.
//!
//! A group is named by its slot and the template hash (`<model>-<hash>-<slot>-<rank>`), so
//! a spec change yields new group names and old and new groups of a slot can coexist
//! (surge). Deterministic names also make a restarted operator converge with no
//! duplicates: it computes the same names and finds them already there.
//!
//! Slots need not be contiguous. Each round keeps the `replicas` best occupied slots,
//! ranked by: a ready group first, then a live (not broken) one, then the lowest slot
//! (the oldest). The other slots are deleted, so a scale-down removes groups that are not
//! serving before ready ones, and among equals the newest (highest slot). Missing
//! replicas go to the lowest slot numbers no observed group uses. The choice depends
//! only on what is observed, so:
//! - a steady state (exactly `replicas` slots, each ready at the current hash) makes no
//!   writes, whatever the slot numbers are;
//! - a restarted operator computes the same slots from the same pods, and never reuses a
//!   slot whose pods are still terminating, so no name is created twice.
//!
//! A broken group (see [`Fault`]) is deleted whole. If its slot is kept and it had the
//! current hash, the new group reuses the same pod names, so creation waits until the old
//! pods are gone; stuck pods on a lost node are force-deleted by the controller for that
//! reason (see `decide/groups.rs`).

use std::collections::{BTreeMap, BTreeSet};

/// Why a group must be recreated whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A rank failed, completed or is being deleted.
    RankFailed,
    /// A rank is missing from a group that already started.
    RankMissing,
    /// A rank's container restarted: the group's one-shot rendezvous cannot take it back.
    RankRestarted,
    /// A rank stayed NotReady past the bound while another rank was Ready.
    RankNotReady,
    /// A rank sat on an unreachable node past the bound.
    NodeLost,
    /// Some ranks were placed on nodes while others stayed unschedulable past the bound
    /// (a node autoscaler provided part of the group): the placed ranks hold nodes that
    /// serve nothing, so the group is removed and created again.
    CapacityPending,
}

impl Fault {
    /// Reason for the Degraded condition.
    pub fn reason(self) -> &'static str {
        match self {
            Fault::RankFailed => "RankFailed",
            Fault::RankMissing => "RankMissing",
            Fault::RankRestarted => "RankRestarted",
            Fault::RankNotReady => "RankNotReady",
            Fault::NodeLost => "NodeLost",
            Fault::CapacityPending => "CapacityPending",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fault::RankFailed => "a rank failed",
            Fault::RankMissing => "a rank is missing",
            Fault::RankRestarted => "a rank's container restarted",
            Fault::RankNotReady => "a rank stayed NotReady too long",
            Fault::NodeLost => "a rank's node is unreachable",
            Fault::CapacityPending => "only part of the group found nodes in time",
        }
    }
}

/// One group as observed in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedGroup {
    pub slot: u32,
    pub hash: String,
    /// Every rank present and Ready.
    pub ready: bool,
    /// Set when the group must be recreated whole.
    pub broken: Option<Fault>,
    /// Some ranks were never created (creation failed part-way) and the group never
    /// started: the missing ranks are created, the present ones kept.
    pub incomplete: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RolloutLimits {
    pub max_surge: u32,
    pub max_unavailable: u32,
}

impl RolloutLimits {
    /// Explicit limits win; otherwise surge when the pool has room for one more group
    /// (keeps full serving capacity), else replace one group at a time in place.
    pub fn resolve(
        max_surge: Option<u32>,
        max_unavailable: Option<u32>,
        pool_has_room: bool,
    ) -> Self {
        let (s, u) = match (max_surge, max_unavailable) {
            (Some(s), Some(u)) => (s, u),
            (Some(s), None) => (s, u32::from(s == 0)),
            (None, Some(u)) => (u32::from(pool_has_room), u),
            (None, None) if pool_has_room => (1, 0),
            (None, None) => (0, 1),
        };
        // Zero and zero would never make progress.
        if s == 0 && u == 0 {
            RolloutLimits {
                max_surge: 0,
                max_unavailable: 1,
            }
        } else {
            RolloutLimits {
                max_surge: s,
                max_unavailable: u,
            }
        }
    }
}

/// What to do this round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actions {
    /// Slots for which to create the group at the current hash (only its missing pods).
    pub create: Vec<u32>,
    /// Groups to delete, by slot and hash.
    pub delete: Vec<(u32, String)>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

/// The occupied slots to keep for `replicas` groups: ready slots first, then live ones,
/// then the oldest (lowest) slot.
pub fn kept_slots(replicas: u32, groups: &[ObservedGroup]) -> BTreeSet<u32> {
    let mut slots: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
    for g in groups {
        let e = slots.entry(g.slot).or_insert((false, false));
        e.0 |= g.ready && g.broken.is_none();
        e.1 |= g.broken.is_none();
    }
    let mut ranked: Vec<(u32, (bool, bool))> = slots.into_iter().collect();
    ranked.sort_by_key(|(slot, (ready, live))| (!ready, !live, *slot));
    ranked
        .into_iter()
        .take(replicas as usize)
        .map(|(slot, _)| slot)
        .collect()
}

/// Deletions that need no plan: broken groups and groups outside the kept slots. Reconcile
/// carries them out even when the model cannot be placed.
pub fn retire(replicas: u32, groups: &[ObservedGroup]) -> Vec<(u32, String)> {
    let kept = kept_slots(replicas, groups);
    let mut out: Vec<(u32, String)> = groups
        .iter()
        .filter(|g| g.broken.is_some() || !kept.contains(&g.slot))
        .map(|g| (g.slot, g.hash.clone()))
        .collect();
    out.sort();
    out
}

/// Decides creations and deletions for `replicas` groups at template `hash`.
pub fn step(replicas: u32, hash: &str, groups: &[ObservedGroup], limits: RolloutLimits) -> Actions {
    let kept = kept_slots(replicas, groups);
    let mut actions = Actions {
        create: Vec::new(),
        delete: retire(replicas, groups),
    };
    let mut by_slot: BTreeMap<u32, Vec<&ObservedGroup>> = BTreeMap::new();
    let mut recreating = BTreeSet::new();
    for g in groups.iter().filter(|g| kept.contains(&g.slot)) {
        if g.broken.is_some() {
            if g.hash == hash {
                // Same names: wait until the old pods are gone before recreating.
                recreating.insert(g.slot);
            }
        } else {
            by_slot.entry(g.slot).or_default().push(g);
        }
    }
    // Kept slots, then the lowest slot numbers no observed group uses.
    let used: BTreeSet<u32> = groups.iter().map(|g| g.slot).collect();
    let mut slots: Vec<u32> = kept.iter().copied().collect();
    let mut next = 0u32;
    while slots.len() < replicas as usize {
        while used.contains(&next) {
            next += 1;
        }
        slots.push(next);
        next += 1;
    }

    let mut unavailable = 0u32;
    let mut in_flight = 0u32;
    let mut outdated = Vec::new();
    for slot in slots {
        let present = by_slot.get(&slot).map(Vec::as_slice).unwrap_or(&[]);
        let current = present.iter().find(|g| g.hash == hash);
        let old: Vec<&&ObservedGroup> = present.iter().filter(|g| g.hash != hash).collect();
        if !present.iter().any(|g| g.ready) {
            unavailable += 1;
        }
        match (current, old.is_empty()) {
            (None, true) if recreating.contains(&slot) => {}
            (None, true) => actions.create.push(slot),
            (Some(c), false) if c.ready => {
                actions
                    .delete
                    .extend(old.iter().map(|g| (g.slot, g.hash.clone())));
            }
            (Some(c), false) => {
                if c.incomplete {
                    actions.create.push(slot);
                }
                in_flight += 1;
            }
            (None, false) => outdated.push((slot, old)),
            (Some(c), true) => {
                if c.incomplete {
                    actions.create.push(slot);
                }
            }
        }
    }

    let mut surge_budget = limits.max_surge.saturating_sub(in_flight);
    for (slot, old) in outdated {
        if surge_budget > 0 {
            surge_budget -= 1;
            actions.create.push(slot);
        } else if unavailable < limits.max_unavailable || old.iter().all(|g| !g.ready) {
            // Replacing a group that is not serving costs no capacity.
            if old.iter().any(|g| g.ready) {
                unavailable += 1;
            }
            actions
                .delete
                .extend(old.iter().map(|g| (g.slot, g.hash.clone())));
            actions.create.push(slot);
        }
    }
    actions.create.sort_unstable();
    actions.delete.sort();
    actions.delete.dedup();
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(slot: u32, hash: &str, ready: bool) -> ObservedGroup {
        ObservedGroup {
            slot,
            hash: hash.into(),
            ready,
            broken: None,
            incomplete: false,
        }
    }
    const SURGE: RolloutLimits = RolloutLimits {
        max_surge: 1,
        max_unavailable: 0,
    };
    const IN_PLACE: RolloutLimits = RolloutLimits {
        max_surge: 0,
        max_unavailable: 1,
    };

    #[test]
    fn creates_missing_groups_and_removes_extra_slots() {
        let a = step(3, "h", &[g(0, "h", true), g(4, "h", true)], SURGE);
        assert_eq!(a.create, vec![1]);
        assert!(a.delete.is_empty());
        let a = step(1, "h", &[g(0, "h", true), g(4, "h", true)], SURGE);
        assert!(a.create.is_empty());
        assert_eq!(a.delete, vec![(4, "h".into())]);
    }

    #[test]
    fn steady_state_does_nothing() {
        assert!(step(2, "h", &[g(0, "h", true), g(1, "h", true)], SURGE).is_empty());
        assert!(step(0, "h", &[], SURGE).is_empty());
    }

    #[test]
    fn surge_rollout_replaces_one_group_at_a_time() {
        // Round 1: surge a new group for slot 0 only.
        let groups = vec![g(0, "old", true), g(1, "old", true)];
        let a = step(2, "new", &groups, SURGE);
        assert_eq!(
            a,
            Actions {
                create: vec![0],
                delete: vec![]
            }
        );
        // New group not ready yet: wait, touch nothing.
        let groups = vec![g(0, "old", true), g(0, "new", false), g(1, "old", true)];
        assert!(step(2, "new", &groups, SURGE).is_empty());
        // Ready: retire slot 0's old group, nothing else yet (surge budget is back only next round).
        let groups = vec![g(0, "old", true), g(0, "new", true), g(1, "old", true)];
        let a = step(2, "new", &groups, SURGE);
        assert_eq!(a.delete, vec![(0, "old".into())]);
        assert_eq!(a.create, vec![1]);
        // Finish.
        let groups = vec![g(0, "new", true), g(1, "old", true), g(1, "new", true)];
        assert_eq!(
            step(2, "new", &groups, SURGE).delete,
            vec![(1, "old".into())]
        );
    }

    #[test]
    fn in_place_rollout_takes_one_group_down_at_a_time() {
        let groups = vec![g(0, "old", true), g(1, "old", true)];
        let a = step(2, "new", &groups, IN_PLACE);
        assert_eq!(
            a,
            Actions {
                create: vec![0],
                delete: vec![(0, "old".into())]
            }
        );
        // Slot 0 is down: slot 1 must wait.
        let groups = vec![g(0, "new", false), g(1, "old", true)];
        assert!(step(2, "new", &groups, IN_PLACE).is_empty());
    }

    #[test]
    fn broken_groups_are_recreated_whole() {
        let mut bad = g(0, "h", false);
        bad.broken = Some(Fault::RankRestarted);
        let a = step(1, "h", &[bad], SURGE);
        assert_eq!(a.delete, vec![(0, "h".into())]);
        // Creation waits for the deletion to be observed (the slot still shows a group).
        assert!(a.create.is_empty());
    }

    #[test]
    fn limits_never_deadlock() {
        assert_eq!(RolloutLimits::resolve(Some(0), Some(0), true), IN_PLACE);
        assert_eq!(RolloutLimits::resolve(None, None, true), SURGE);
        assert_eq!(RolloutLimits::resolve(None, None, false), IN_PLACE);
    }

    #[test]
    fn scale_down_removes_not_ready_groups_first_then_the_newest() {
        // Slots 0 and 1 are still loading; slot 2 is the only one serving.
        let groups = vec![g(0, "h", false), g(1, "h", false), g(2, "h", true)];
        let a = step(1, "h", &groups, SURGE);
        assert_eq!(a.delete, vec![(0, "h".into()), (1, "h".into())]);
        assert!(a.create.is_empty());
        // All ready: the newest (highest) slots go.
        let groups = vec![g(0, "h", true), g(1, "h", true), g(2, "h", true)];
        assert_eq!(
            step(1, "h", &groups, SURGE).delete,
            vec![(1, "h".into()), (2, "h".into())]
        );
        // A broken group goes before a live one, whatever its slot.
        let mut bad = g(0, "h", false);
        bad.broken = Some(Fault::NodeLost);
        let groups = vec![bad, g(1, "h", false)];
        assert_eq!(retire(1, &groups), vec![(0, "h".into())]);
    }

    #[test]
    fn surviving_slots_need_not_be_contiguous() {
        // What the scale-down above leaves: a steady state, no writes.
        assert!(step(1, "h", &[g(2, "h", true)], SURGE).is_empty());
        assert!(step(2, "h", &[g(0, "h", true), g(3, "h", true)], SURGE).is_empty());
        // Scaling up fills the lowest free slots, never one still in use (terminating
        // pods of slot 0 keep their names until they are gone).
        let mut leaving = g(0, "h", false);
        leaving.broken = Some(Fault::RankFailed);
        let a = step(3, "h", &[leaving.clone(), g(2, "h", true)], SURGE);
        assert_eq!(a.delete, vec![(0, "h".into())]);
        assert_eq!(
            a.create,
            vec![1],
            "slot 0 is recreated once its pods are gone"
        );
        let a = step(1, "h", &[leaving, g(2, "h", true)], SURGE);
        assert_eq!(a.delete, vec![(0, "h".into())]);
        assert!(a.create.is_empty());
        let a = step(2, "h", &[g(2, "h", true)], SURGE);
        assert_eq!(a.create, vec![0]);
    }

    #[test]
    fn an_incomplete_group_gets_its_missing_ranks_not_a_recreation() {
        let mut partial = g(0, "h", false);
        partial.incomplete = true;
        let a = step(1, "h", &[partial.clone()], SURGE);
        assert_eq!(
            a,
            Actions {
                create: vec![0],
                delete: vec![]
            }
        );
        // With an old group still serving the slot during a rollout, too.
        let a = step(1, "h", &[g(0, "old", true), partial], SURGE);
        assert_eq!(a.create, vec![0]);
        assert!(a.delete.is_empty());
    }

    #[test]
    fn retire_needs_no_plan() {
        let groups = vec![g(0, "h", true), g(1, "h", true)];
        assert_eq!(retire(0, &groups), vec![(0, "h".into()), (1, "h".into())]);
        assert_eq!(retire(1, &groups), vec![(1, "h".into())]);
        assert!(retire(2, &groups).is_empty());
    }
}

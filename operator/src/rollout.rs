//! Group-by-group rollout and scaling, as a pure decision over observed groups.
//!
//! Groups live in slots `0..replicas`. A group is named by its slot and the template hash,
//! so a spec change yields new group names and old and new groups of a slot can coexist
//! (surge). Deterministic names also make a restarted operator converge with no
//! duplicates: it computes the same names and finds them already there.

use std::collections::BTreeMap;

/// One group as observed in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedGroup {
    pub slot: u32,
    pub hash: String,
    /// Every rank present and Ready.
    pub ready: bool,
    /// A rank failed, is missing or is being deleted: the group must be recreated whole.
    pub broken: bool,
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
    /// Slots for which to create a group at the current hash.
    pub create: Vec<u32>,
    /// Groups to delete, by slot and hash.
    pub delete: Vec<(u32, String)>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

/// Decides creations and deletions for `replicas` groups at template `hash`.
pub fn step(replicas: u32, hash: &str, groups: &[ObservedGroup], limits: RolloutLimits) -> Actions {
    let mut actions = Actions::default();
    let mut by_slot: BTreeMap<u32, Vec<&ObservedGroup>> = BTreeMap::new();
    let mut recreating = Vec::new();
    for g in groups {
        if g.broken || g.slot >= replicas {
            actions.delete.push((g.slot, g.hash.clone()));
            if g.broken && g.hash == hash {
                // Same names: wait until the old pods are gone before recreating.
                recreating.push(g.slot);
            }
        } else {
            by_slot.entry(g.slot).or_default().push(g);
        }
    }

    let mut unavailable = 0u32;
    let mut in_flight = 0u32;
    let mut outdated = Vec::new();
    for slot in 0..replicas {
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
            (Some(_), false) => in_flight += 1,
            (None, false) => outdated.push((slot, old)),
            (Some(_), true) => {}
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
            broken: false,
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
        assert_eq!(a.create, vec![1, 2]);
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
        bad.broken = true;
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
}

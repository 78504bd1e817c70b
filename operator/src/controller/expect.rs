//! Pods this operator created that the pod cache has not shown yet. A reconcile that runs
//! between a creation and its watch event would otherwise apply the same pods again: never
//! a second pod (names are deterministic and creation is server-side apply), but a
//! needless write per pod. So created names are remembered for a short window and skipped
//! by creation until the cache shows them or the window ends (then they are created again,
//! which is the safe side: a pod deleted before the cache saw it is not waited on longer).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long a creation is trusted without the cache showing it.
pub const WINDOW: Duration = Duration::from_secs(15);

/// A model's pod names created and not yet shown by the cache (held in the model's
/// memory, memory.rs).
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// Pod name -> when it was created.
    created: HashMap<String, Instant>,
}

impl Expectations {
    /// Records pods created.
    pub fn created(&mut self, names: impl IntoIterator<Item = String>, now: Instant) {
        for n in names {
            self.created.insert(n, now);
        }
    }

    /// Forgets the names that `doomed` picks (the ranks of a group being deleted): its
    /// recreation, under the same names, must not wait for them.
    pub fn forget(&mut self, doomed: impl Fn(&str) -> bool) {
        self.created.retain(|name, _| !doomed(name));
    }

    /// Names created within the window that `seen` (the cache's pod names) does not hold
    /// yet. Forgets the names seen or expired.
    pub fn awaited(&mut self, seen: &BTreeSet<String>, now: Instant) -> BTreeSet<String> {
        self.created
            .retain(|name, at| !seen.contains(name) && now.duration_since(*at) < WINDOW);
        self.created.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_is_awaited_until_seen_or_expired() {
        let mut x = Expectations::default();
        let t0 = Instant::now();
        x.created(["a".to_string(), "b".to_string()], t0);
        let none = BTreeSet::new();
        assert_eq!(x.awaited(&none, t0).len(), 2);
        let seen = BTreeSet::from(["a".to_string()]);
        assert_eq!(x.awaited(&seen, t0), BTreeSet::from(["b".to_string()]));
        assert!(x.awaited(&none, t0 + WINDOW).is_empty(), "expired");
    }

    #[test]
    fn a_deleted_groups_names_are_no_longer_awaited() {
        let mut x = Expectations::default();
        let t0 = Instant::now();
        x.created(["m--h1-0-0".to_string(), "m--h1-1-0".to_string()], t0);
        x.forget(|n| n.ends_with("-h1-0-0") || n.contains("--h1-0-"));
        let none = BTreeSet::new();
        assert_eq!(
            x.awaited(&none, t0),
            BTreeSet::from(["m--h1-1-0".to_string()])
        );
        x.forget(|_| true);
        assert!(x.awaited(&none, t0).is_empty());
    }
}

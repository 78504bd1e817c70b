//! Pods this operator created that the pod cache has not shown yet. A reconcile that runs
//! between a creation and its watch event would otherwise apply the same pods again: never
//! a second pod (names are deterministic and creation is server-side apply), but a
//! needless write per pod. So created names are remembered for a short window and skipped
//! by creation until the cache shows them or the window ends (then they are created again,
//! which is the safe side: a pod deleted before the cache saw it is not waited on longer).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a creation is trusted without the cache showing it.
pub const WINDOW: Duration = Duration::from_secs(15);

#[derive(Default)]
pub struct Expectations {
    /// Model key -> pod name -> when it was created.
    inner: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl Expectations {
    /// Records pods created for a model.
    pub fn created(&self, model: &str, names: impl IntoIterator<Item = String>, now: Instant) {
        if let Ok(mut m) = self.inner.lock() {
            let e = m.entry(model.to_string()).or_default();
            for n in names {
                e.insert(n, now);
            }
        }
    }

    /// Forgets the model's names that `doomed` picks (the ranks of a group being deleted):
    /// its recreation, under the same names, must not wait for them.
    pub fn forget(&self, model: &str, doomed: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(e) = m.get_mut(model) {
                e.retain(|name, _| !doomed(name));
                if e.is_empty() {
                    m.remove(model);
                }
            }
        }
    }

    /// Names created for the model within the window that `seen` (the cache's pod names)
    /// does not hold yet. Forgets the names seen or expired.
    pub fn awaited(&self, model: &str, seen: &BTreeSet<String>, now: Instant) -> BTreeSet<String> {
        let Ok(mut m) = self.inner.lock() else {
            return BTreeSet::new();
        };
        let Some(e) = m.get_mut(model) else {
            return BTreeSet::new();
        };
        e.retain(|name, at| !seen.contains(name) && now.duration_since(*at) < WINDOW);
        let out = e.keys().cloned().collect();
        if e.is_empty() {
            m.remove(model);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_is_awaited_until_seen_or_expired() {
        let x = Expectations::default();
        let t0 = Instant::now();
        x.created("m", ["a".to_string(), "b".to_string()], t0);
        let none = BTreeSet::new();
        assert_eq!(x.awaited("m", &none, t0).len(), 2);
        let seen = BTreeSet::from(["a".to_string()]);
        assert_eq!(x.awaited("m", &seen, t0), BTreeSet::from(["b".to_string()]));
        assert!(x.awaited("m", &none, t0 + WINDOW).is_empty(), "expired");
        assert!(x.awaited("other", &none, t0).is_empty());
    }

    #[test]
    fn a_deleted_groups_names_are_no_longer_awaited() {
        let x = Expectations::default();
        let t0 = Instant::now();
        x.created("m", ["m--h1-0-0".to_string(), "m--h1-1-0".to_string()], t0);
        x.forget("m", |n| n.ends_with("-h1-0-0") || n.contains("--h1-0-"));
        let none = BTreeSet::new();
        assert_eq!(
            x.awaited("m", &none, t0),
            BTreeSet::from(["m--h1-1-0".to_string()])
        );
        x.forget("m", |_| true);
        assert!(x.awaited("m", &none, t0).is_empty());
    }
}

//! When to look again at a model that is not converged yet and has no timer running.
//!
//! Such a model waits on its pods (scheduled, started, Ready), and every change of its pods
//! already reconciles it through the pod watch. A fixed 5 s requeue on top of that made
//! every unconverged model cost a reconcile every 5 s: at 1,000 models that saturated the
//! reconcile queue (8 at once) and delayed the reconciles that events asked for (issue 12).
//! So the requeue is a safety net that backs off: [`FIRST`] after the model's observed
//! state changed, doubling while it stays the same, up to [`MAX`].
//!
//! Bounds that run out with no event (a lost node, a NotReady rank, a partly placed group,
//! creation and capacity retries) are not this module's: reconcile requeues for those at
//! the moment they run out, whatever the delay here.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// The requeue after the model's observed state changed.
pub const FIRST: Duration = Duration::from_secs(5);
/// The longest requeue of an unconverged model whose state stays the same.
pub const MAX: Duration = Duration::from_secs(30);

/// A model's last requeue while unconverged: the fingerprint of its state then, and that
/// requeue's delay (held in the model's memory, memory.rs).
#[derive(Clone, Copy, Debug, Default)]
pub struct BusyRequeue {
    last: Option<(u64, Duration)>,
}

impl BusyRequeue {
    /// The requeue of the unconverged model whose observed state is `fingerprint`.
    pub fn next(&mut self, fingerprint: u64) -> Duration {
        let delay = match self.last {
            Some((f, d)) if f == fingerprint => (d * 2).min(MAX),
            _ => FIRST,
        };
        self.last = Some((fingerprint, delay));
        delay
    }

    /// The model converged (or stopped waiting): the next wait starts from [`FIRST`].
    pub fn settled(&mut self) {
        self.last = None;
    }
}

/// What progress of a model looks like: its generation and, per pod, whether it is bound,
/// its phase, readiness, restarts and whether it is terminating.
pub fn fingerprint(generation: Option<i64>, pods: &[Arc<Pod>]) -> u64 {
    let mut h = DefaultHasher::new();
    generation.hash(&mut h);
    let mut names: Vec<(String, &Pod)> = pods.iter().map(|p| (p.name_any(), p.as_ref())).collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, p) in names {
        name.hash(&mut h);
        p.metadata.deletion_timestamp.is_some().hash(&mut h);
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .hash(&mut h);
        if let Some(st) = p.status.as_ref() {
            st.phase.hash(&mut h);
            for c in st.conditions.iter().flatten() {
                (&c.type_, &c.status).hash(&mut h);
            }
            for c in st.container_statuses.iter().flatten() {
                (c.ready, c.restart_count).hash(&mut h);
            }
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"phase": phase},
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn doubles_while_nothing_changes_and_resets_on_progress() {
        let mut b = BusyRequeue::default();
        let pending = fingerprint(Some(1), &[pod("a", "Pending")]);
        let delays: Vec<u64> = (0..5).map(|_| b.next(pending).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 30, 30]);
        let running = fingerprint(Some(1), &[pod("a", "Running")]);
        assert_ne!(running, pending);
        assert_eq!(b.next(running), FIRST, "progress");
        b.next(running);
        b.settled();
        assert_eq!(b.next(running), FIRST, "settled");
    }

    #[test]
    fn the_fingerprint_ignores_pod_order_and_sees_a_new_generation() {
        let (a, c) = (pod("a", "Pending"), pod("c", "Running"));
        assert_eq!(
            fingerprint(Some(1), &[a.clone(), c.clone()]),
            fingerprint(Some(1), &[c.clone(), a.clone()])
        );
        assert_ne!(
            fingerprint(Some(1), std::slice::from_ref(&a)),
            fingerprint(Some(2), &[a])
        );
    }
}

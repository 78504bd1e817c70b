//! Statuses this operator wrote that the model cache may not show yet.
//!
//! A reconcile compares the status it computes with the model's status in the cache and
//! writes when they differ. Right after a status write, the next reconcile of the same
//! model (woken by its new pod, say) often runs before the watch has delivered that
//! write: it sees the old status, computes the one just written, and writes it again. At
//! 1,000 new models that repeat was a large share of the operator's writes (issue 12).
//! So the status written is remembered for a short window, and the same status computed
//! again within it is not written again.
//!
//! The same goes for the `Planned` Event, written when the plan differs from the status's:
//! against the old status, a plan just written looked new again (755 of 1,000 models got
//! their `Planned` Event twice). So the plan written is remembered with the status.
//!
//! The other way round, a status equal to the cached one is still written when the last
//! status written within the window differs: the status went S0 -> S1 and back to S0
//! before the cache showed S1, and the server holds S1 (status writes wake no reconcile,
//! so nothing would correct it until a later requeue).
//!
//! Condition transition times are left out of the comparison: computed against the old
//! status, a condition that changed in the write carries a later transition time, and the
//! one already written is the right one. After the window the cache is trusted again, so
//! a status someone else overwrote is restored by the next reconcile as before.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::DeepSeekModelStatus;
pub use crate::decide::digest_of;

/// How long a written status is trusted without the cache showing it: well above the
/// watch's delivery delay on a loaded API server, short enough that a status changed
/// behind the operator's back is not left for long.
pub const WINDOW: Duration = Duration::from_secs(5);

/// What makes two statuses the same write: everything but condition transition times.
pub fn digest(status: &DeepSeekModelStatus) -> u64 {
    let mut s = status.clone();
    for c in &mut s.conditions {
        c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    digest_of(&s)
}

/// The digests a write is remembered by: the status's ([`digest`]) and its plan's.
pub fn digests(status: &DeepSeekModelStatus) -> (u64, u64) {
    (digest(status), digest_of(&status.plan))
}

/// What was written for a model: the status's digest, its plan's, and when.
#[derive(Clone, Copy, Debug)]
struct Written {
    status: u64,
    plan: u64,
    at: Instant,
}

/// The status last written for a model (held in the model's memory, memory.rs).
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusMemo {
    last: Option<Written>,
}

impl StatusMemo {
    /// Whether this status (by [`digest`]) was written within [`WINDOW`].
    pub fn written_recently(&self, digest: u64, now: Instant) -> bool {
        self.recent(now, |w| w.status == digest)
    }

    /// Whether a status other than this one was written within [`WINDOW`]: the cache may
    /// not show it yet, so agreeing with the cache proves nothing.
    pub fn other_written_recently(&self, digest: u64, now: Instant) -> bool {
        self.recent(now, |w| w.status != digest)
    }

    /// Whether a status with this plan (by [`digest_of`]) was written within [`WINDOW`].
    pub fn plan_written_recently(&self, plan: u64, now: Instant) -> bool {
        self.recent(now, |w| w.plan == plan)
    }

    /// The digest of the plan written within [`WINDOW`], if any.
    pub fn recent_plan(&self, now: Instant) -> Option<u64> {
        let w = self.last?;
        (now.duration_since(w.at) < WINDOW).then_some(w.plan)
    }

    fn recent(&self, now: Instant, same: impl Fn(&Written) -> bool) -> bool {
        self.last
            .is_some_and(|w| same(&w) && now.duration_since(w.at) < WINDOW)
    }

    /// Records a status (and its plan) written.
    pub fn wrote(&mut self, status: u64, plan: u64, now: Instant) {
        self.last = Some(Written {
            status,
            plan,
            at: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn status(ready: i32, since: i64) -> DeepSeekModelStatus {
        DeepSeekModelStatus {
            ready_replicas: ready,
            conditions: vec![Condition {
                type_: "Available".into(),
                status: "False".into(),
                reason: "ReplicasNotReady".into(),
                message: "0 of 1".into(),
                last_transition_time: Time(
                    Timestamp::from_second(since).unwrap_or(Timestamp::UNIX_EPOCH),
                ),
                observed_generation: Some(1),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_same_status_is_skipped_within_the_window_only() {
        let mut m = StatusMemo::default();
        let t0 = Instant::now();
        let d = digest(&status(0, 100));
        assert!(!m.written_recently(d, t0), "nothing written yet");
        m.wrote(d, 7, t0);
        assert!(m.written_recently(d, t0 + Duration::from_secs(1)));
        assert!(!m.written_recently(d, t0 + WINDOW), "expired");
        let changed = digest(&status(1, 100));
        assert!(!m.written_recently(changed, t0), "a different status");
        assert!(m.plan_written_recently(7, t0));
        assert!(!m.plan_written_recently(8, t0), "another plan");
        assert!(!m.plan_written_recently(7, t0 + WINDOW), "expired");
    }

    #[test]
    fn a_status_back_to_the_cached_one_is_not_trusted_to_the_cache() {
        let mut m = StatusMemo::default();
        let t0 = Instant::now();
        let (s0, s1) = (digest(&status(0, 100)), digest(&status(1, 100)));
        assert!(!m.other_written_recently(s0, t0), "nothing written");
        m.wrote(s1, 7, t0);
        assert!(
            m.other_written_recently(s0, t0),
            "S1 written, cache may show S0"
        );
        assert!(!m.other_written_recently(s1, t0), "S1 itself");
        assert!(
            !m.other_written_recently(s0, t0 + WINDOW),
            "the cache is trusted again"
        );
    }

    #[test]
    fn transition_times_do_not_make_a_different_status() {
        assert_eq!(digest(&status(0, 100)), digest(&status(0, 200)));
        assert_ne!(digest(&status(0, 100)), digest(&status(1, 100)));
    }
}

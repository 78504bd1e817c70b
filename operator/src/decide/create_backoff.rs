//! Backing off when the API server refuses to create a model's pods (a ResourceQuota, an
//! admission webhook, 429 throttling). Such refusals last until someone changes
//! something, so retrying on every pod event or every few seconds only adds load: each
//! model waits exponentially longer between attempts, with jitter so many models refused
//! together do not retry in lockstep. The state also remembers which groups were created
//! only in part, so their present ranks are kept and the missing ones added (see
//! `groups.rs`). It lives in memory: after an operator restart a partial group that
//! already ran is recreated once, then the backoff starts over.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// First wait after a refusal.
pub const BASE: Duration = Duration::from_secs(2);
/// Longest wait between attempts.
pub const CAP: Duration = Duration::from_secs(300);

/// The wait before attempt `failures + 1`: `BASE * 2^(failures - 1)` capped at `CAP`, of
/// which the upper half is scaled by `jitter` (in `[0, 1]`). Never shorter than half the
/// exponential value, so the growth survives the jitter.
pub fn delay(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base
        .checked_mul(1u32 << failures.saturating_sub(1).min(20))
        .unwrap_or(cap)
        .min(cap);
    let half = exp / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A random number in `[0, 1]` from the standard library's randomly keyed hasher: enough
/// to spread retries, with no dependency.
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::hash::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A model whose pod creation was refused.
#[derive(Clone, Debug)]
pub struct Refused {
    pub failures: u32,
    /// The API server's answer, for the condition and the Event.
    pub message: String,
    /// Groups (by group id) created only in part.
    pub partial: BTreeSet<String>,
    next: Instant,
}

impl Refused {
    /// Time left before the next attempt; `None` when it may go ahead.
    pub fn wait(&self) -> Option<Duration> {
        let left = self.next.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

/// A model's refusals since its last creation that went through (held in the model's
/// memory, memory.rs).
#[derive(Clone, Debug, Default)]
pub struct CreationBackoff {
    refused: Option<Refused>,
}

impl CreationBackoff {
    pub fn get(&self) -> Option<&Refused> {
        self.refused.as_ref()
    }

    /// Records a refusal and returns the wait before the next attempt.
    pub fn failed(&mut self, partial: BTreeSet<String>, message: String) -> Duration {
        let entry = self.refused.get_or_insert_with(|| Refused {
            failures: 0,
            message: String::new(),
            partial: BTreeSet::new(),
            next: Instant::now(),
        });
        entry.failures += 1;
        entry.message = message;
        entry.partial.extend(partial);
        let wait = delay(entry.failures, BASE, CAP, jitter());
        entry.next = Instant::now() + wait;
        wait
    }

    /// Every creation went through: forget the refusals.
    pub fn succeeded(&mut self) {
        self.refused = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap_and_jitter_stays_within_half() {
        let s = Duration::from_secs;
        assert_eq!(delay(1, s(2), s(300), 1.0), s(2));
        assert_eq!(delay(2, s(2), s(300), 1.0), s(4));
        assert_eq!(delay(5, s(2), s(300), 1.0), s(32));
        assert_eq!(delay(30, s(2), s(300), 1.0), s(300));
        assert_eq!(delay(u32::MAX, s(2), s(300), 0.0), s(150));
        assert_eq!(delay(3, s(2), s(300), 0.0), s(4));
        for j in [0.0, 0.3, 0.99, 1.0, 7.0, -1.0] {
            let d = delay(4, s(2), s(300), j);
            assert!(d >= s(8) && d <= s(16), "{d:?} for jitter {j}");
        }
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..=1.0).contains(j)));
        assert!(samples.iter().any(|j| (j - samples[0]).abs() > 1e-9));
    }

    #[test]
    fn refusals_accumulate_and_success_forgets_them() {
        let mut b = CreationBackoff::default();
        assert!(b.get().is_none());
        let first = b.failed(BTreeSet::from(["h-0".into()]), "quota".into());
        assert!(first >= BASE / 2 && first <= BASE);
        b.failed(BTreeSet::from(["h-1".into()]), "quota again".into());
        let r = b.get().expect("recorded");
        assert_eq!(r.failures, 2);
        assert_eq!(r.message, "quota again");
        assert_eq!(r.partial.len(), 2);
        assert!(r.wait().is_some());
        b.succeeded();
        assert!(b.get().is_none());
    }
}

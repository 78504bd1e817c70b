//! Backing off the recreation of crash-looping groups. A rank that fails at every start
//! (a bad flag, a missing file, a driver mismatch) breaks its group again moments after
//! each recreation; recreating at once, forever, defeats the kubelet's own back-off and
//! floods the API server with deletions, creations and Events. So each model remembers
//! when its crashed groups were recreated: the next recreation waits an exponential,
//! capped, jittered pause after the last one, and never more than `maxRecreations` fall
//! in any `windowSeconds` (config.rs `CrashLoopBackoff`).
//!
//! The schedule ([`next_allowed`]) is pure and decide/mod.rs calls it; the memory
//! ([`CrashMemory`]) is what reconcile.rs reads and records into. Jitter is drawn when a
//! recreation is recorded and stored with it, so the decision stays a pure function of
//! its inputs. The memory lives in the operator's process: after a restart the first
//! recreation goes at once, then the back-off starts over.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::config::CrashLoopBackoff;
use crate::decide::create_backoff::{delay, jitter};

/// One recreation of a crashed group of the model, and the jitter its pause uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recreation {
    pub at: Timestamp,
    /// In `[0, 1]`.
    pub jitter: f64,
}

/// The pause after the `n`-th recreation in the window: `base * 2^(n-1)`, capped, the
/// upper half scaled by `jitter`.
pub fn pause(n: u32, jitter: f64, cfg: &CrashLoopBackoff) -> Duration {
    let base = Duration::from_secs(cfg.base_seconds);
    let cap = Duration::from_secs(cfg.cap_seconds.max(cfg.base_seconds));
    delay(n, base, cap, jitter)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When the model may next recreate a crashed group; `None`: now. The pause after the
/// last recreation grows with the length of its run: the recreations each less than a
/// window after the one before (so a crash loop stays at the cap, and a model quiet for a
/// window starts over); and once `maxRecreations` are recorded, the next waits until the
/// `maxRecreations`-th latest leaves the window.
pub fn next_allowed(
    past: &[Recreation],
    now: Timestamp,
    cfg: &CrashLoopBackoff,
) -> Option<Timestamp> {
    let window = ms(Duration::from_secs(cfg.window_seconds));
    let mut past: Vec<&Recreation> = past.iter().collect();
    past.sort_by_key(|r| r.at);
    let last = *past.last()?;
    let last_ms = last.at.as_millisecond();
    let n = run_length(&past, window);
    let mut at = last_ms.saturating_add(ms(pause(n as u32, last.jitter, cfg)));
    let max = cfg.max_recreations.max(1) as usize;
    if past.len() >= max {
        let counted = past[past.len() - max].at.as_millisecond();
        at = at.max(counted.saturating_add(window));
    }
    (at > now.as_millisecond()).then(|| Timestamp::from_millisecond(at).unwrap_or(Timestamp::MAX))
}

/// How many recreations end the list (sorted) each less than `window` after the one
/// before.
fn run_length(sorted: &[&Recreation], window: i64) -> usize {
    let gaps = sorted.windows(2).rev();
    1 + gaps
        .take_while(|w| {
            w[1].at
                .as_millisecond()
                .saturating_sub(w[0].at.as_millisecond())
                < window
        })
        .count()
}

/// The most recreations a model remembers: the pause stops growing long before.
const KEPT: usize = 64;

/// A model's recreations of crashed groups: the current run (held in the model's memory,
/// memory.rs).
#[derive(Clone, Debug, Default)]
pub struct CrashMemory {
    recreations: Vec<Recreation>,
}

impl CrashMemory {
    pub fn get(&self) -> &[Recreation] {
        &self.recreations
    }

    /// Records a recreation at `now`; one a window or more after the last starts a new run.
    pub fn recreated(&mut self, now: Timestamp, window: Duration) {
        let list = &mut self.recreations;
        let quiet = list.last().is_some_and(|r| {
            now.as_millisecond().saturating_sub(r.at.as_millisecond()) >= ms(window)
        });
        if quiet {
            list.clear();
        }
        if list.len() >= KEPT {
            list.remove(0);
        }
        list.push(Recreation {
            at: now,
            jitter: jitter(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).expect("valid time")
    }

    /// Recreates whenever allowed, checking the schedule at `step_ms` ticks for
    /// `horizon_ms`; returns the recreation times.
    fn simulate(
        cfg: &CrashLoopBackoff,
        jitters: &[f64],
        step_ms: i64,
        horizon_ms: i64,
    ) -> Vec<i64> {
        let mut past: Vec<Recreation> = Vec::new();
        let mut t = 0;
        while t < horizon_ms {
            if next_allowed(&past, at(t), cfg).is_none() {
                let j = jitters[past.len() % jitters.len()];
                past.push(Recreation {
                    at: at(t),
                    jitter: j,
                });
            }
            t += step_ms;
        }
        past.iter()
            .map(|r| r.at.as_millisecond() - at(0).as_millisecond())
            .collect()
    }

    #[test]
    fn defaults_allow_six_recreations_in_ten_minutes() {
        let cfg = CrashLoopBackoff::default();
        assert_eq!((cfg.max_recreations, cfg.window_seconds), (6, 600));
        let times = simulate(&cfg, &[1.0], 1000, 600_000);
        // 0, +10, +20, +40, +80, +160 s: six, then the window's bound holds the seventh.
        assert_eq!(times, vec![0, 10_000, 30_000, 70_000, 150_000, 310_000]);
        // A loop that goes on stays at the cap: one recreation per 5 minutes.
        let times = simulate(&cfg, &[1.0], 1000, 1_800_000);
        let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[5..], [300_000; 4], "{times:?}");
        assert_eq!(next_allowed(&[], at(0), &cfg), None);
    }

    proptest! {
        #[test]
        fn never_more_than_max_in_any_window_and_pauses_stay_within_jitter_and_cap(
            max in 1u32..8,
            window_s in 10u64..900,
            base_s in 1u64..60,
            cap_extra in 0u64..600,
            jitters in proptest::collection::vec(0.0f64..=1.0, 1..8),
            step_ms in 100i64..5000,
        ) {
            let cfg = CrashLoopBackoff {
                max_recreations: max,
                window_seconds: window_s,
                base_seconds: base_s,
                cap_seconds: base_s + cap_extra,
            };
            let window = window_s as i64 * 1000;
            let times = simulate(&cfg, &jitters, step_ms, 4 * window + 20 * step_ms);
            // Sliding window: any `max + 1` consecutive recreations span a window or more.
            for w in times.windows(max as usize + 1) {
                prop_assert!(w[max as usize] - w[0] >= window, "{times:?}");
            }
            let cap = (cfg.cap_seconds * 1000) as i64;
            for (i, pair) in times.windows(2).enumerate() {
                let gap = pair[1] - pair[0];
                // The run the i-th recreation ends: each less than a window after the last.
                let n = 1 + times[..=i].windows(2).rev().take_while(|w| w[1] - w[0] < window).count() as u32;
                let full = ms(pause(n, 1.0, &cfg));
                prop_assert!(full <= cap, "pause {full} beyond the cap {cap}");
                // Jitter keeps at least half the exponential pause and adds nothing to it.
                prop_assert!(gap >= full / 2, "gap {gap} < half of {full}: {times:?}");
                if n < max {
                    // Only the window's bound, or the tick, may lengthen the pause.
                    prop_assert!(gap <= full + step_ms, "gap {gap} > {full}: {times:?}");
                }
            }
        }
    }

    #[test]
    fn memory_keeps_the_run_and_a_quiet_window_starts_a_new_one() {
        let mut m = CrashMemory::default();
        let w = Duration::from_secs(600);
        m.recreated(at(0), w);
        m.recreated(at(1_000), w);
        assert_eq!(m.get().len(), 2);
        // Less than a window after the last: the run goes on.
        m.recreated(at(600_000), w);
        assert_eq!(m.get().len(), 3);
        // A window quiet: a new run.
        m.recreated(at(1_200_000), w);
        assert_eq!(m.get().len(), 1);
        assert!(m.get().iter().all(|r| (0.0..=1.0).contains(&r.jitter)));
    }
}

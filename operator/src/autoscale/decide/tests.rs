//! The decision driven through recorded metric series, one observation per interval,
//! asserting the replica sequence.

use super::*;

fn params(min: u32, max: u32) -> Params {
    Params {
        min,
        max,
        target: 10,
        interval: Duration::from_secs(5),
        stabilization: Duration::from_secs(30),
        max_step: 2,
        tolerance: 0.1,
    }
}

/// A recorded sample: `Some(load)` complete, `None` missing, `Partial(load)` partial.
#[derive(Clone, Copy)]
enum S {
    L(f64),
    Missing,
    Partial(f64),
    /// A value read three intervals ago (a scrape cache that stopped updating).
    Stale(f64),
}

/// Runs the series from `start` replicas, one sample per interval; returns the replicas
/// after each decision.
fn run(p: &Params, start: u32, series: &[S]) -> Vec<u32> {
    let mut h = History::default();
    let mut current = start;
    let mut out = Vec::new();
    for (i, s) in series.iter().enumerate() {
        // Start well after zero so a stale timestamp does not saturate at 0.
        let now = p.interval * (i as u32 + 10);
        let obs = match *s {
            S::L(l) => Observation::complete(now, l),
            S::Missing => Observation::missing(now),
            S::Partial(l) => Observation {
                at: now,
                load: Some(l),
                complete: false,
            },
            S::Stale(l) => Observation::complete(now.saturating_sub(p.interval * 3), l),
        };
        let d = decide(p, &mut h, now, current, obs);
        assert!(d.replicas >= p.min && d.replicas <= p.max, "{d:?}");
        current = d.replicas;
        out.push(current);
    }
    out
}

fn repeat(s: S, n: usize) -> Vec<S> {
    vec![s; n]
}

fn series(parts: &[Vec<S>]) -> Vec<S> {
    parts.concat()
}

#[test]
fn step_up_is_immediate_and_down_waits_for_the_window() {
    let p = params(1, 10);
    // 6 intervals of 5 s cover the 30 s window.
    let s = series(&[
        repeat(S::L(5.0), 3),
        repeat(S::L(40.0), 4),
        repeat(S::L(5.0), 9),
    ]);
    let r = run(&p, 1, &s);
    assert_eq!(
        r,
        vec![1, 1, 1, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1, 1, 1],
        "up by at most 2 per interval, down once the window only holds low load"
    );
}

#[test]
fn a_spike_scales_up_and_comes_back_after_the_window_only() {
    let p = params(1, 10);
    let s = series(&[
        repeat(S::L(8.0), 2),
        vec![S::L(100.0)],
        repeat(S::L(8.0), 8),
    ]);
    let r = run(&p, 1, &s);
    assert_eq!(r, vec![1, 1, 3, 3, 3, 3, 3, 3, 3, 1, 1]);
}

#[test]
fn oscillating_load_does_not_flap() {
    let p = params(1, 10);
    // Alternates between 2 and 4 replicas' worth: scales to 4 and stays there.
    let mut s = Vec::new();
    for _ in 0..10 {
        s.push(S::L(40.0));
        s.push(S::L(20.0));
    }
    let r = run(&p, 2, &s);
    assert_eq!(r[0], 4);
    assert!(r.iter().all(|&n| n == 4), "{r:?}");
}

#[test]
fn the_tolerance_band_keeps_the_count() {
    let p = params(1, 10);
    // 2 replicas at target 10: 21 and 19 are within 10 %.
    let r = run(
        &p,
        2,
        &series(&[repeat(S::L(21.0), 5), repeat(S::L(19.0), 8)]),
    );
    assert!(r.iter().all(|&n| n == 2), "{r:?}");
    // 23 is outside: 3 replicas.
    assert_eq!(run(&p, 2, &[S::L(23.0)]), vec![3]);
}

#[test]
fn missing_data_never_scales_down() {
    let p = params(1, 10);
    let s = series(&[repeat(S::L(40.0), 2), repeat(S::Missing, 20)]);
    let r = run(&p, 1, &s);
    assert_eq!(&r[..2], &[3, 4]);
    assert!(r[2..].iter().all(|&n| n == 4), "{r:?}");
}

#[test]
fn a_gap_restarts_the_window() {
    let p = params(1, 10);
    // Low load for 5 intervals, a gap, then low load: the window restarts at the gap.
    let s = series(&[repeat(S::L(0.0), 5), vec![S::Missing], repeat(S::L(0.0), 7)]);
    let r = run(&p, 4, &s);
    assert_eq!(r, vec![4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1]);
}

#[test]
fn partial_data_scales_up_but_never_down() {
    let p = params(1, 10);
    let r = run(
        &p,
        2,
        &series(&[vec![S::Partial(45.0)], repeat(S::Partial(0.0), 12)]),
    );
    assert_eq!(r[0], 4);
    assert!(r.iter().all(|&n| n == 4), "{r:?}");
}

#[test]
fn stale_data_is_missing_data() {
    let p = params(1, 10);
    let r = run(&p, 3, &repeat(S::Stale(0.0), 12));
    assert!(r.iter().all(|&n| n == 3), "{r:?}");
    // Stale high load does not scale up either: it is not known to be current.
    assert_eq!(run(&p, 3, &[S::Stale(100.0)]), vec![3]);
}

#[test]
fn clamped_to_min_and_max() {
    let p = params(2, 5);
    let r = run(
        &p,
        2,
        &series(&[repeat(S::L(500.0), 4), repeat(S::L(0.0), 10)]),
    );
    assert_eq!(r, vec![4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 2, 2, 2, 2]);
    // A count outside the bounds (min raised by the user) is clamped at once.
    assert_eq!(run(&p, 1, &[S::L(0.0)]), vec![2]);
    assert_eq!(run(&p, 9, &[S::Missing]), vec![5]);
}

#[test]
fn max_step_limits_each_scale_up() {
    let mut p = params(1, 20);
    p.max_step = 3;
    let r = run(&p, 1, &repeat(S::L(300.0), 8));
    assert_eq!(r, vec![4, 7, 10, 13, 16, 19, 20, 20]);
}

#[test]
fn scale_to_zero_and_back() {
    let p = params(0, 4);
    // Idle for the window -> 0; at zero there are no leaders, so the loop observes the
    // external demand signal (0 while idle); demand wakes it up.
    let s = series(&[
        repeat(S::L(0.0), 8),
        repeat(S::L(0.0), 3),
        vec![S::L(1.0)],
        repeat(S::L(12.0), 3),
    ]);
    let r = run(&p, 1, &s);
    assert_eq!(r, vec![1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 2, 2, 2]);
}

#[test]
fn capacity_limits_the_step_unless_provisioning_is_allowed() {
    assert_eq!(limit_by_capacity(1, 3, None, false), (3, None));
    assert_eq!(limit_by_capacity(1, 3, Some(5), false), (3, None));
    let (n, why) = limit_by_capacity(1, 3, Some(1), false);
    assert_eq!(n, 2);
    assert!(why.is_some_and(|m| m.contains("holding at 2")));
    let (n, why) = limit_by_capacity(1, 3, Some(0), true);
    assert_eq!(n, 3);
    assert!(why.is_some_and(|m| m.contains("cluster autoscaler")));
    assert_eq!(limit_by_capacity(2, 2, Some(0), false).0, 2);
}

#[test]
fn defaults_from_the_spec() {
    let a: crate::api::Autoscaling =
        serde_json::from_value(serde_json::json!({"minReplicas": 1, "maxReplicas": 3}))
            .unwrap_or_else(|e| panic!("{e}"));
    let p = Params::from_spec(&a);
    assert_eq!(p.interval, DEFAULT_INTERVAL);
    assert_eq!(p.stabilization, DEFAULT_STABILIZATION);
    assert_eq!(p.max_step, DEFAULT_MAX_STEP);
    assert_eq!((p.min, p.max), (1, 3));
}

proptest::proptest! {
    /// The window keeps only what can still be its maximum; what it answers is the maximum
    /// of every recommendation within the window, kept whole.
    #[test]
    fn the_window_answers_the_maximum_of_the_recommendations_within_it(
        steps in proptest::collection::vec((0u64..20, 0u32..50), 1..200)
    ) {
        let window = Duration::from_secs(30);
        let mut h = History::default();
        let mut all = Vec::new();
        let mut now = Duration::ZERO;
        for (step, rec) in steps {
            now += Duration::from_secs(step);
            h.record(now, rec, window);
            all.push((now, rec));
            let whole = all
                .iter()
                .filter(|(t, _)| now.saturating_sub(*t) <= window)
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(0);
            proptest::prop_assert_eq!(h.window_max(), whole);
        }
    }
}

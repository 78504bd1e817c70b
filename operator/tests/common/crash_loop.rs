//! What both crash-loop suites (simulated kubelet: e2e_crash_loop; real kubelets:
//! e2e_real_crash_loop) assert the same way: the back-off bound on recreations and the
//! operator's write count.

use std::time::Duration;

use anyhow::{ensure, Result};

/// Every `deepseek_operator_api_writes` sample of the operator's metrics, summed.
pub fn all_writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("deepseek_operator_api_writes"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The recreations among the times (since the test's start) at which each crashing
/// group's leader was first seen: every group but the first. Fails unless there are at
/// least `max` of them (the loop was exercised) and no `max + 1` fall within one `window`
/// (a few seconds' slack for deletion and creation). `log` is shown on failure.
pub fn recreations_within_bound(
    mut times: Vec<Duration>,
    max: usize,
    window: Duration,
    log: &str,
) -> Result<Vec<Duration>> {
    times.sort();
    let secs: Vec<u64> = times.iter().map(|d| d.as_secs()).collect();
    let recreations = times.get(1..).unwrap_or_default().to_vec();
    ensure!(
        recreations.len() >= max,
        "the crashing group was recreated only {} time(s), first seen at {secs:?} s\n{log}",
        recreations.len(),
    );
    let slack = Duration::from_secs(5);
    for w in recreations.windows(max + 1) {
        ensure!(
            w[max] - w[0] + slack >= window,
            "{} recreations within {:?}, first seen at {secs:?} s",
            max + 1,
            w[max] - w[0],
        );
    }
    Ok(recreations)
}

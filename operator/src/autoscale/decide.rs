//! The scaling decision, pure: observations in, replica count out.
//!
//! Every interval the loop feeds one [`Observation`] (queued + running requests summed
//! over the leaders it could read) and the current replica count. The raw recommendation
//! is `ceil(load / targetQueueDepth)`, kept at the current count while the load per
//! replica is within the tolerance band. Scale-up acts at once (at most `max_step` groups
//! per decision); scale-down takes the highest recommendation of the stabilization window
//! (as the HPA does) and only once the window holds a full span of complete observations.
//! Missing, partial or stale data never lowers anything: it is recorded as "keep the
//! current count", so the window must refill with good data before a scale-down.

use std::collections::VecDeque;
use std::time::Duration;

/// Defaults, in one place (also documented in docs/autoscaling.md).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_STABILIZATION: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_STEP: u32 = 2;
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// The knobs of one model, resolved from its `autoscaling` spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub min: u32,
    pub max: u32,
    /// Queued + running requests one replica should carry (>= 1).
    pub target: u32,
    pub interval: Duration,
    pub stabilization: Duration,
    pub max_step: u32,
    /// Relative band around the current load per replica inside which nothing changes.
    pub tolerance: f64,
}

impl Params {
    pub fn from_spec(a: &crate::api::Autoscaling) -> Params {
        let min = a.min_replicas.max(0) as u32;
        Params {
            min,
            max: (a.max_replicas.max(0) as u32).max(min),
            target: a.target_queue_depth.max(1),
            interval: a
                .interval_seconds
                .map(|s| Duration::from_secs(u64::from(s.max(1))))
                .unwrap_or(DEFAULT_INTERVAL),
            stabilization: a
                .scale_down_stabilization_seconds
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(DEFAULT_STABILIZATION),
            max_step: a.max_scale_up_step.unwrap_or(DEFAULT_MAX_STEP).max(1),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Older observations than this are stale (two intervals).
    pub fn staleness(&self) -> Duration {
        self.interval * 2
    }
}

/// What one read of the leaders' metrics gave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// When the data was read (same clock as `now`).
    pub at: Duration,
    /// Queued + running requests summed over the leaders that answered (plus any external
    /// demand signal); `None` when nothing could be read.
    pub load: Option<f64>,
    /// Every leader answered. A partial sum is a lower bound: good for scaling up, never
    /// for scaling down.
    pub complete: bool,
}

impl Observation {
    pub fn complete(at: Duration, load: f64) -> Self {
        Observation {
            at,
            load: Some(load),
            complete: true,
        }
    }
    pub fn missing(at: Duration) -> Self {
        Observation {
            at,
            load: None,
            complete: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Hold,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub replicas: u32,
    pub direction: Direction,
    /// Raw recommendation of this observation, before stabilization and step limits.
    pub recommendation: u32,
    /// Human reason, for `status.lastScaleReason` and the Event.
    pub reason: String,
    /// The data was missing, partial or stale.
    pub metrics_missing: bool,
}

/// What the stabilization window needs of its recommendations (their maximum), and since
/// when observations have been complete without a gap.
///
/// Only the maximum over the window is ever read, so the window keeps only the
/// recommendations that can still become it: each newer than, and larger than, every one
/// after it (a monotonic queue). Under steady load that is one entry, not one per
/// observation: at 1,000 models and a 2 s interval the full window was 3 MB (issue 12).
#[derive(Clone, Debug, Default)]
pub struct History {
    recs: VecDeque<(Duration, u32)>,
    complete_since: Option<Duration>,
}

impl History {
    fn record(&mut self, now: Duration, rec: u32, window: Duration) {
        while self.recs.back().is_some_and(|(_, r)| *r <= rec) {
            self.recs.pop_back();
        }
        self.recs.push_back((now, rec));
        while self
            .recs
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > window)
        {
            self.recs.pop_front();
        }
        if self.recs.capacity() > 4 * self.recs.len().max(4) {
            self.recs.shrink_to_fit();
        }
    }

    fn window_max(&self) -> u32 {
        self.recs.front().map_or(0, |(_, r)| *r)
    }
}

/// `ceil(load / target)`, or `current` while the load per replica is within tolerance.
pub fn recommend(p: &Params, current: u32, load: f64) -> u32 {
    let load = if load.is_finite() { load.max(0.0) } else { 0.0 };
    let target = f64::from(p.target.max(1));
    if current > 0 {
        let ratio = load / (target * f64::from(current));
        if (ratio - 1.0).abs() <= p.tolerance {
            return current;
        }
    }
    let raw = (load / target).ceil();
    if raw >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        raw as u32
    }
}

/// One decision. `current` is the replica count in force (spec.replicas).
pub fn decide(
    p: &Params,
    h: &mut History,
    now: Duration,
    current: u32,
    obs: Observation,
) -> Decision {
    let stale = now.saturating_sub(obs.at) > p.staleness();
    let clamp = |n: u32| n.clamp(p.min, p.max.max(p.min));
    let (load, complete) = match obs.load {
        Some(l) if !stale => (Some(l), obs.complete),
        _ => (None, false),
    };
    let raw = load.map(|l| recommend(p, current, l));

    // Missing/partial data counts as "at least the current count" in the window.
    let rec = match (raw, complete) {
        (Some(r), true) => r,
        (Some(r), false) => r.max(current),
        (None, _) => current,
    };
    h.record(now, rec, p.stabilization);
    if complete {
        h.complete_since.get_or_insert(now);
    } else {
        h.complete_since = None;
    }

    let missing = !complete;
    let what = match (load, stale) {
        (_, true) => "metrics are stale".to_string(),
        (None, false) => "metrics are missing".to_string(),
        (Some(l), false) if !complete => {
            format!("partial metrics ({l:.0} requests from the leaders that answered)")
        }
        (Some(l), false) => format!("{l:.0} queued+running requests"),
    };

    // Out of bounds (spec edited by hand, or min/max changed): clamp first.
    if current < p.min || current > p.max.max(p.min) {
        let to = clamp(current);
        let direction = if to > current {
            Direction::Up
        } else {
            Direction::Down
        };
        return Decision {
            replicas: to,
            direction,
            recommendation: rec,
            reason: format!(
                "{current} replicas is outside [{}, {}]; {what}",
                p.min, p.max
            ),
            metrics_missing: missing,
        };
    }

    let up_target = clamp(rec);
    if up_target > current {
        let to = up_target.min(current.saturating_add(p.max_step));
        return Decision {
            replicas: to,
            direction: Direction::Up,
            recommendation: rec,
            reason: format!(
                "{what} for a target of {} per replica needs {rec}; scaling up from {current} to {to}",
                p.target
            ),
            metrics_missing: missing,
        };
    }

    let window_full = h
        .complete_since
        .is_some_and(|since| now.saturating_sub(since) >= p.stabilization);
    let down_target = clamp(h.window_max());
    if !missing && window_full && down_target < current {
        return Decision {
            replicas: down_target,
            direction: Direction::Down,
            recommendation: rec,
            reason: format!(
                "{what}; at most {down_target} replicas needed over the last {}s; scaling down from {current}",
                p.stabilization.as_secs()
            ),
            metrics_missing: false,
        };
    }
    let why = if missing && clamp(raw.unwrap_or(current)) < current {
        format!("{what}: holding {current} replicas (never scale down without complete data)")
    } else if down_target < current {
        format!(
            "{what}: holding {current} replicas until the {}s stabilization window allows {down_target}",
            p.stabilization.as_secs()
        )
    } else {
        format!("{what}: {current} replicas fit")
    };
    Decision {
        replicas: current,
        direction: Direction::Hold,
        recommendation: rec,
        reason: why,
        metrics_missing: missing,
    }
}

/// Capacity check of a scale-up: `room` is how many more groups the matching pool can
/// hold now (`None`: unknown, e.g. a declared pool a cluster autoscaler grows). Returns
/// the replicas to set and, when capacity limits the step, a message for the condition.
pub fn limit_by_capacity(
    current: u32,
    wanted: u32,
    room: Option<u32>,
    allow_node_provisioning: bool,
) -> (u32, Option<String>) {
    let Some(room) = room else {
        return (wanted, None);
    };
    if wanted <= current.saturating_add(room) {
        return (wanted, None);
    }
    if allow_node_provisioning {
        return (
            wanted,
            Some(format!(
                "the nodes have room for {room} more group(s) but {} are wanted; creating them so their pending pods make the cluster autoscaler add nodes",
                wanted - current
            )),
        );
    }
    let to = current.saturating_add(room);
    (
        to,
        Some(format!(
            "the nodes have room for {room} more group(s) but {} are wanted; holding at {to} (set autoscaling.allowNodeProvisioning to create pending groups)",
            wanted - current
        )),
    )
}

#[cfg(test)]
mod tests;

//! Whole groups or nothing on a node autoscaler's capacity.
//!
//! A multi-node group needs every rank placed. A node autoscaler (Karpenter) may provide
//! only some of its nodes: the NodePool's `limits` are used up by other groups or were
//! lowered after planning, or the cloud has no offering. The placed ranks then hold
//! accelerators that serve nothing. The rules, decided here from plain data:
//!
//! - [`verdict`]: a group with some ranks on nodes and another unschedulable waits up to
//!   `capacityPendingTimeoutSeconds` (counted from that rank's `PodScheduled=False`), then
//!   is removed whole, so its nodes empty and the autoscaler takes them back. A group with
//!   no rank placed holds nothing and just waits.
//! - [`retry_delay`]: after such a removal, the group is created again only after a
//!   backoff that starts at `capacityRetrySeconds` (at least [`MIN_RETRY`]; longer than
//!   the NodePool's consolidation, so the emptied node goes first) and doubles per
//!   removal: capacity rarely comes back within seconds.
//! - [`Claim`] and [`report`]: what the condition says, from Karpenter's NodeClaims of the
//!   NodePool (name, node, first of Launched/Registered/Initialized not True with its
//!   reason) and Karpenter's own FailedScheduling Event on the unplaced rank, cut to the
//!   clauses about that NodePool (e.g. `all available instance types exceed limits for
//!   nodepool (NodePool=h100)`).
//!
//! Planning refuses a model outright only when not even one group fits the NodePool's
//! limits (see `placement.rs`); everything dynamic is handled here.

use std::time::Duration;

use serde_json::Value;

/// No retry comes sooner, whatever the configuration says.
pub const MIN_RETRY: Duration = Duration::from_secs(10);
/// Longest wait between retries.
pub const RETRY_CAP: Duration = Duration::from_secs(3600);
/// NodeClaims named in a message; more are counted.
const MAX_CLAIMS: usize = 8;
/// Longest part of Karpenter's Event message kept.
const MAX_KARPENTER: usize = 400;

/// What to do with a group whose ranks are not all on nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every rank placed, or none placed (nothing held), or no rank refused yet.
    NotPartial,
    /// Some ranks hold nodes, another is unschedulable; the bound runs out in `left`.
    Waiting { left: Duration },
    /// Some ranks held nodes past the bound while another stayed unschedulable.
    Remove,
}

/// Decides for one group: `placed` ranks on nodes, the oldest `PodScheduled=False`
/// transition among its unplaced ranks (milliseconds), now, and the bound.
pub fn verdict(
    placed: usize,
    unschedulable_since_ms: Option<i64>,
    now_ms: i64,
    bound: Duration,
) -> Verdict {
    let Some(since) = unschedulable_since_ms else {
        return Verdict::NotPartial;
    };
    if placed == 0 {
        return Verdict::NotPartial;
    }
    let bound_ms = i64::try_from(bound.as_millis()).unwrap_or(i64::MAX);
    let left = since.saturating_add(bound_ms).saturating_sub(now_ms);
    if left <= 0 {
        Verdict::Remove
    } else {
        Verdict::Waiting {
            left: Duration::from_millis(left.unsigned_abs()),
        }
    }
}

/// The wait before recreating after the `removals`-th removal in a row (1-based): `base *
/// 2^(removals-1)` with `base = max(retry, MIN_RETRY)`, capped at [`RETRY_CAP`] (or
/// `base` when larger), plus up to a quarter more scaled by `jitter` (in `[0, 1]`) so
/// models do not retry in lockstep. Never shorter than `base`: the wait exists so the
/// emptied node is consolidated away before the group asks again.
pub fn retry_delay(removals: u32, retry: Duration, jitter: f64) -> Duration {
    let base = retry.max(MIN_RETRY);
    let exp = base
        .checked_mul(1u32 << removals.saturating_sub(1).min(20))
        .unwrap_or(RETRY_CAP)
        .min(RETRY_CAP.max(base));
    exp + (exp / 4).mul_f64(jitter.clamp(0.0, 1.0))
}

/// One Karpenter NodeClaim as the message shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub name: String,
    pub node: Option<String>,
    /// `Launched`, `Registered`, `Initialized` as (status, reason, message), absent when
    /// Karpenter has not set it yet.
    pub stages: [Option<(String, String, String)>; 3],
}

const STAGES: [&str; 3] = ["Launched", "Registered", "Initialized"];

impl Claim {
    /// Reads a NodeClaim object (JSON); `None` without a name.
    pub fn from_object(obj: &Value) -> Option<Claim> {
        let name = obj["metadata"]["name"].as_str()?.to_string();
        let node = obj["status"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let conds = obj["status"]["conditions"].as_array();
        let stage = |t: &str| {
            conds?.iter().find(|c| c["type"] == t).map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (s("status"), s("reason"), s("message"))
            })
        };
        Some(Claim {
            name,
            node,
            stages: STAGES.map(stage),
        })
    }

    /// `h100-abc Initialized (node n1)`, or the first stage not True with its reason, e.g.
    /// `h100-abc Launched, Registered=Unknown (NodeNotFound: Node not registered with cluster)`.
    pub fn state(&self) -> String {
        let node = self
            .node
            .as_deref()
            .map(|n| format!(" (node {n})"))
            .unwrap_or_default();
        for (i, stage) in self.stages.iter().enumerate() {
            let done = STAGES[..i]
                .last()
                .map(|d| format!("{d}, "))
                .unwrap_or_default();
            match stage {
                Some((s, _, _)) if s == "True" => continue,
                Some((s, reason, msg)) => {
                    let why = match (reason.is_empty(), msg.is_empty()) {
                        (true, true) => String::new(),
                        (false, true) => format!(" ({reason})"),
                        (true, false) => format!(" ({msg})"),
                        (false, false) => format!(" ({reason}: {msg})"),
                    };
                    return format!("{} {done}{}={s}{why}{node}", self.name, STAGES[i]);
                }
                None => return format!("{} {done}{} not yet{node}", self.name, STAGES[i]),
            }
        }
        format!("{} Initialized{node}", self.name)
    }
}

/// The clauses of Karpenter's FailedScheduling message that concern `nodepool` (it lists
/// every NodePool's mismatch); the whole message, shortened, when none names it.
pub fn karpenter_reason(message: &str, nodepool: &str) -> String {
    let body = message
        .strip_prefix("Failed to schedule pod, ")
        .unwrap_or(message);
    let tag = format!("NodePool={nodepool})");
    let quoted = format!("nodepool \"{nodepool}\"");
    let mine: Vec<&str> = body
        .split("; ")
        .filter(|c| c.contains(&tag) || c.contains(&quoted))
        .collect();
    let text = if mine.is_empty() {
        body.to_string()
    } else {
        mine.join("; ")
    };
    shorten(&text, MAX_KARPENTER)
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `Karpenter NodePool h100: NodeClaims a Initialized (node n1), b Launched, ...;
/// Karpenter: <reason>`. `claims` is `Err` with why they could not be read.
pub fn report(nodepool: &str, claims: Result<&[Claim], &str>, karpenter: Option<&str>) -> String {
    let claims = match claims {
        Ok([]) => "no NodeClaim".to_string(),
        Ok(cs) => {
            let mut named: Vec<String> = cs.iter().take(MAX_CLAIMS).map(Claim::state).collect();
            if cs.len() > MAX_CLAIMS {
                named.push(format!("{} more", cs.len() - MAX_CLAIMS));
            }
            format!("NodeClaims {}", named.join(", "))
        }
        Err(why) => format!("NodeClaims unreadable ({})", shorten(why, 200)),
    };
    match karpenter {
        Some(k) => format!(
            "Karpenter NodePool {nodepool}: {claims}; Karpenter: {}",
            karpenter_reason(k, nodepool)
        ),
        None => format!("Karpenter NodePool {nodepool}: {claims}"),
    }
}

#[cfg(test)]
#[path = "whole_groups_tests.rs"]
mod tests;

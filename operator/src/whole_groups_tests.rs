//! The capacity rules and the message, from NodeClaims and an Event as Karpenter v1.8.0's
//! KWOK provider wrote them on the local control plane.

use super::*;
use serde_json::json;

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn a_partly_placed_group_waits_for_the_bound_then_is_removed() {
    let bound = S(300);
    assert_eq!(
        verdict(1, Some(1_000), 1_000, bound),
        Verdict::Waiting { left: S(300) }
    );
    assert_eq!(
        verdict(1, Some(1_000), 250_000, bound),
        Verdict::Waiting {
            left: Duration::from_millis(51_000)
        }
    );
    assert_eq!(verdict(1, Some(1_000), 301_000, bound), Verdict::Remove);
    assert_eq!(verdict(3, Some(0), i64::MAX, bound), Verdict::Remove);
}

#[test]
fn a_group_holding_no_node_or_with_no_refused_rank_is_not_partial() {
    // Nothing placed: no accelerator is held, so waiting costs nothing.
    assert_eq!(verdict(0, Some(0), 1_000_000, S(300)), Verdict::NotPartial);
    // Every rank placed, or the scheduler has not answered yet.
    assert_eq!(verdict(2, None, 1_000_000, S(300)), Verdict::NotPartial);
    // A clock behind the transition (skew) only waits longer.
    assert_eq!(
        verdict(1, Some(10_000), 0, S(1)),
        Verdict::Waiting { left: S(11) }
    );
}

#[test]
fn retries_wait_at_least_the_configured_time_and_double_to_the_cap() {
    assert_eq!(retry_delay(1, S(120), 0.0), S(120));
    assert_eq!(retry_delay(1, S(120), 1.0), S(150));
    assert_eq!(retry_delay(2, S(120), 0.0), S(240));
    assert_eq!(retry_delay(3, S(300), 0.0), S(1200));
    assert_eq!(retry_delay(10, S(300), 0.0), RETRY_CAP);
    assert_eq!(
        retry_delay(u32::MAX, S(300), 1.0),
        RETRY_CAP + RETRY_CAP / 4
    );
    // Below the floor: the floor. Beyond the cap: still honoured.
    assert_eq!(retry_delay(1, S(0), 0.0), MIN_RETRY);
    assert_eq!(retry_delay(5, S(7200), 0.0), S(7200));
    for j in [0.0, 0.4, 1.0, 9.0, -2.0] {
        let d = retry_delay(2, S(100), j);
        assert!(d >= S(200) && d <= S(250), "{d:?} for jitter {j}");
    }
}

fn claim(name: &str, node: Option<&str>, conds: serde_json::Value) -> Claim {
    Claim::from_object(&json!({
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "h100"}},
        "status": {"nodeName": node, "conditions": conds}
    }))
    .expect("named")
}

fn cond(t: &str, s: &str, reason: &str, msg: &str) -> serde_json::Value {
    json!({"type": t, "status": s, "reason": reason, "message": msg,
           "lastTransitionTime": "2026-11-30T13:11:40Z"})
}

#[test]
fn a_claim_says_its_first_unfinished_stage_and_why() {
    let done = claim(
        "h100-4dzmc",
        Some("thirsty-poincare-2530638985"),
        json!([
            cond("Launched", "True", "Launched", ""),
            cond("Registered", "True", "Registered", ""),
            cond("Initialized", "True", "Initialized", ""),
            cond("Ready", "True", "Ready", ""),
        ]),
    );
    assert_eq!(
        done.state(),
        "h100-4dzmc Initialized (node thirsty-poincare-2530638985)"
    );
    let registering = claim(
        "h100-fh79l",
        None,
        json!([
            cond(
                "Initialized",
                "Unknown",
                "AwaitingReconciliation",
                "object is awaiting reconciliation"
            ),
            cond(
                "Registered",
                "Unknown",
                "NodeNotFound",
                "Node not registered with cluster"
            ),
            cond("Launched", "True", "Launched", ""),
        ]),
    );
    assert_eq!(
        registering.state(),
        "h100-fh79l Launched, Registered=Unknown (NodeNotFound: Node not registered with cluster)"
    );
    let refused = claim(
        "h100-x",
        None,
        json!([cond("Launched", "False", "InsufficientCapacity", "")]),
    );
    assert_eq!(
        refused.state(),
        "h100-x Launched=False (InsufficientCapacity)"
    );
    let fresh = claim("h100-y", None, json!([]));
    assert_eq!(fresh.state(), "h100-y Launched not yet");
    assert!(Claim::from_object(&json!({"status": {}})).is_none());
}

/// Karpenter's FailedScheduling message for a rank the `h100` limit left out (captured).
const EVENT: &str = "Failed to schedule pod, did not tolerate taint (taint=amd.com/gpu=present:NoSchedule); incompatible requirements, key karpenter.sh/nodepool, karpenter.sh/nodepool In [h100] not in karpenter.sh/nodepool In [l4-x4]; all available instance types exceed limits for nodepool (NodePool=h100); incompatible requirements, key karpenter.sh/nodepool, karpenter.sh/nodepool In [h100] not in karpenter.sh/nodepool In [cpu]";

#[test]
fn karpenters_message_is_cut_to_the_nodepools_clauses() {
    assert_eq!(
        karpenter_reason(EVENT, "h100"),
        "all available instance types exceed limits for nodepool (NodePool=h100)"
    );
    // Nothing names the NodePool: the message itself, shortened.
    let other = karpenter_reason(
        "Failed to schedule pod, no instance type satisfied resources",
        "h100",
    );
    assert_eq!(other, "no instance type satisfied resources");
    let long = "x".repeat(2000);
    assert!(karpenter_reason(&long, "h100").len() <= 403);
}

#[test]
fn the_report_names_every_claim_and_karpenters_reason() {
    let a = claim(
        "h100-a",
        Some("n1"),
        json!([
            cond("Launched", "True", "", ""),
            cond("Registered", "True", "", ""),
            cond("Initialized", "True", "", ""),
        ]),
    );
    let b = claim(
        "h100-b",
        None,
        json!([
            cond("Launched", "True", "", ""),
            cond("Registered", "Unknown", "NodeNotFound", "")
        ]),
    );
    assert_eq!(
        report("h100", Ok(&[a.clone(), b]), Some(EVENT)),
        "Karpenter NodePool h100: NodeClaims h100-a Initialized (node n1), h100-b Launched, \
         Registered=Unknown (NodeNotFound); Karpenter: all available instance types exceed \
         limits for nodepool (NodePool=h100)"
    );
    assert_eq!(
        report("h100", Ok(&[]), None),
        "Karpenter NodePool h100: no NodeClaim"
    );
    assert_eq!(
        report("h100", Err("forbidden"), None),
        "Karpenter NodePool h100: NodeClaims unreadable (forbidden)"
    );
    let many: Vec<Claim> = (0..11).map(|_| a.clone()).collect();
    assert!(report("h100", Ok(&many), None).ends_with(", 3 more"));
}

//! Health rules of groups, from pods and nodes written as a kubelet and the node-lifecycle
//! controller would leave them.

use super::*;
use serde_json::json;

const T0: &str = "2026-01-01T00:00:00Z";

fn at(secs: i64) -> Timestamp {
    let t0: Timestamp = T0.parse().expect("valid time");
    Timestamp::from_second(t0.as_second() + secs).expect("valid time")
}

/// A rank of group `h-0` of 2 on `node`: phase, Ready (with its transition second) and
/// restarts. Its container started at second -1 (before any `since` of these tests: a
/// NotReady rank with `since >= 0` fell from Ready; see [`loading`]).
fn pod(rank: u32, node: &str, phase: &str, ready: bool, since: i64, restarts: i32) -> Pod {
    sized(rank, 2, node, phase, ready, since, restarts)
}

/// [`pod`] of a group of `size`.
fn sized(
    rank: u32,
    size: u32,
    node: &str,
    phase: &str,
    ready: bool,
    since: i64,
    restarts: i32,
) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("m-h-0-{rank}"),
            "labels": {
                labels::GROUP: "0",
                labels::GROUP_ID: "h-0",
                labels::TEMPLATE_HASH: "h",
                labels::GROUP_SIZE: size.to_string(),
            }
        },
        "spec": {"nodeName": node, "containers": []},
        "status": {
            "phase": phase,
            "conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": at(since).to_string(),
            }],
            "containerStatuses": [{
                "name": "engine", "image": "i", "imageID": "", "ready": ready,
                "restartCount": restarts,
                "state": {"running": {"startedAt": at(-1).to_string()}},
            }]
        }
    }))
    .expect("valid pod")
}

/// A rank still loading: NotReady since the kubelet first saw it (second `since`), its
/// container started a second later, never Ready since.
fn loading(rank: u32, size: u32, node: &str, since: i64) -> Pod {
    let mut p = sized(rank, size, node, "Running", false, since, 0);
    if let Some(cs) = p
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
    {
        cs[0].state = serde_json::from_value(json!({
            "running": {"startedAt": at(since + 1).to_string()}
        }))
        .expect("state");
    }
    p
}

fn running(rank: u32, node: &str) -> Pod {
    pod(rank, node, "Running", true, 0, 0)
}

struct World {
    now: i64,
    lost: BTreeMap<String, Timestamp>,
    partial: BTreeSet<String>,
}

impl World {
    fn at(now: i64) -> World {
        World {
            now,
            lost: BTreeMap::new(),
            partial: BTreeSet::new(),
        }
    }

    fn inputs(&self) -> HealthInputs<'_> {
        HealthInputs {
            now: at(self.now),
            lost_nodes: &self.lost,
            unreachable_timeout: Duration::from_secs(60),
            not_ready_timeout: Duration::from_secs(120),
            capacity_pending_timeout: Duration::from_secs(300),
            partially_created: &self.partial,
        }
    }

    fn judge(&self, pods: &[Pod]) -> (ObservedGroup, Option<Duration>) {
        let found = find_groups(pods, &self.inputs());
        assert_eq!(found.groups.len(), 1);
        (found.groups[0].observed.clone(), found.recheck)
    }
}

#[test]
fn a_healthy_group_is_ready_and_needs_no_recheck() {
    let (g, recheck) = World::at(500).judge(&[running(0, "a"), running(1, "b")]);
    assert!(g.ready && g.broken.is_none() && !g.incomplete);
    assert_eq!(recheck, None);
}

#[test]
fn a_node_lost_past_the_bound_breaks_the_group() {
    let pods = [running(0, "a"), running(1, "b")];
    let mut w = World::at(100);
    w.lost.insert("b".into(), at(70));
    // 30 s into the 60 s bound: still whole, look again in 30 s.
    let (g, recheck) = w.judge(&pods);
    assert_eq!(g.broken, None);
    assert_eq!(recheck, Some(Duration::from_secs(30)));
    assert!(w.inputs().dead_nodes().is_empty());
    w.now = 130;
    let (g, recheck) = w.judge(&pods);
    assert_eq!(g.broken, Some(Fault::NodeLost));
    assert!(!g.ready);
    assert_eq!(recheck, None);
    assert_eq!(w.inputs().dead_nodes(), BTreeSet::from(["b".to_string()]));
}

#[test]
fn a_restarted_rank_breaks_the_group() {
    let pods = [running(0, "a"), pod(1, "b", "Running", true, 0, 1)];
    let (g, _) = World::at(10).judge(&pods);
    assert_eq!(g.broken, Some(Fault::RankRestarted));
}

#[test]
fn a_rank_not_ready_past_the_bound_breaks_a_serving_group_only() {
    let serving = [running(0, "a"), pod(1, "b", "Running", false, 100, 0)];
    let (g, recheck) = World::at(200).judge(&serving);
    assert_eq!(g.broken, None);
    assert_eq!(recheck, Some(Duration::from_secs(20)));
    let (g, _) = World::at(220).judge(&serving);
    assert_eq!(g.broken, Some(Fault::RankNotReady));
    // Every rank still loading its weights, for a long time: not a fault.
    let still_loading = [loading(0, 2, "a", 0), loading(1, 2, "b", 0)];
    let (g, recheck) = World::at(3600).judge(&still_loading);
    assert_eq!(g.broken, None);
    assert_eq!(recheck, None);
}

/// Table: groups with no Ready rank left. (group, now, fault, recheck)
#[test]
fn a_rank_that_fell_from_ready_is_bounded_even_when_no_rank_is_ready() {
    type Case = (&'static str, Vec<Pod>, i64, Option<Fault>, Option<u64>);
    let cases: Vec<Case> = vec![
        (
            "one-pod group, NotReady since 100: 20 s left",
            vec![sized(0, 1, "a", "Running", false, 100, 0)],
            200,
            None,
            Some(20),
        ),
        (
            "one-pod group, NotReady past the bound",
            vec![sized(0, 1, "a", "Running", false, 100, 0)],
            220,
            Some(Fault::RankNotReady),
            None,
        ),
        (
            "every rank fell from Ready",
            vec![
                pod(0, "a", "Running", false, 100, 0),
                pod(1, "b", "Running", false, 150, 0),
            ],
            230,
            Some(Fault::RankNotReady),
            Some(40),
        ),
        (
            "one rank fell, the other still loads",
            vec![pod(0, "a", "Running", false, 100, 0), loading(1, 2, "b", 0)],
            210,
            None,
            Some(10),
        ),
        (
            "one-pod group still loading after an hour",
            vec![loading(0, 1, "a", 0)],
            3600,
            None,
            None,
        ),
    ];
    for (what, pods, now, fault, recheck) in cases {
        let (g, r) = World::at(now).judge(&pods);
        assert_eq!(g.broken, fault, "{what}");
        assert!(!g.ready, "{what}");
        assert_eq!(r, recheck.map(Duration::from_secs), "{what}");
    }
}

#[test]
fn missing_ranks_of_a_group_that_never_started_are_only_incomplete() {
    let pending = [pod(0, "a", "Pending", false, 0, 0)];
    let (g, _) = World::at(10).judge(&pending);
    assert_eq!(g.broken, None);
    assert!(g.incomplete && !g.ready);
    // Once a rank ran, a missing rank means the group lost it...
    let started = [running(0, "a")];
    let (g, _) = World::at(10).judge(&started);
    assert_eq!(g.broken, Some(Fault::RankMissing));
    // ...unless this operator saw the group's creation fail part-way.
    let mut w = World::at(10);
    w.partial.insert("h-0".into());
    let (g, _) = w.judge(&started);
    assert_eq!(g.broken, None);
    assert!(g.incomplete);
    // A dead rank is a failure even in a group never completed.
    let mut dead = pod(0, "a", "Failed", false, 0, 0);
    dead.metadata.name = Some("m-h-0-0".into());
    let (g, _) = w.judge(&[dead]);
    assert_eq!(g.broken, Some(Fault::RankFailed));
}

#[test]
fn unreachable_nodes_are_recognised_by_taint_or_ready() {
    let node =
        |v: serde_json::Value| -> NodeFacts { serde_json::from_value(v).expect("valid node") };
    let healthy = node(json!({
        "metadata": {"name": "a"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    }));
    assert_eq!(node_lost_since(&healthy), None);
    let unknown = node(json!({
        "metadata": {"name": "a"},
        "status": {"conditions": [{
            "type": "Ready", "status": "Unknown", "lastTransitionTime": at(5).to_string()
        }]}
    }));
    assert_eq!(node_lost_since(&unknown), Some(at(5)));
    let tainted = node(json!({
        "metadata": {"name": "a"},
        "spec": {"taints": [{
            "key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
            "timeAdded": at(3).to_string()
        }]},
        "status": {"conditions": [{
            "type": "Ready", "status": "Unknown", "lastTransitionTime": at(5).to_string()
        }]}
    }));
    assert_eq!(node_lost_since(&tainted), Some(at(3)));
}

/// A rank the scheduler could not place since `since` (no node: the autoscaler has not
/// provided one).
fn unschedulable(rank: u32, since: i64) -> Pod {
    let mut p = pod(rank, "", "Pending", false, since, 0);
    if let Some(spec) = p.spec.as_mut() {
        spec.node_name = None;
    }
    if let Some(status) = p.status.as_mut() {
        status.container_statuses = None;
        status.conditions = Some(vec![serde_json::from_value(json!({
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available",
            "lastTransitionTime": at(since).to_string(),
        }))
        .expect("condition")]);
    }
    p
}

#[test]
fn a_group_only_partly_placed_past_the_bound_is_capacity_pending() {
    // Rank 0 got a node and waits for its peer; rank 1 found none since t=100.
    let half = [loading(0, 2, "a", 90), unschedulable(1, 100)];
    let (g, recheck) = World::at(200).judge(&half);
    assert_eq!(g.broken, None);
    assert!(!g.ready);
    assert_eq!(
        recheck,
        Some(Duration::from_secs(200)),
        "300 s bound from t=100"
    );
    let (g, recheck) = World::at(400).judge(&half);
    assert_eq!(g.broken, Some(Fault::CapacityPending));
    assert_eq!(recheck, None);
    assert_eq!(Fault::CapacityPending.reason(), "CapacityPending");

    // No rank placed: the group holds no node and waits as long as it takes.
    let none = [unschedulable(0, 0), unschedulable(1, 0)];
    let (g, recheck) = World::at(3600).judge(&none);
    assert_eq!(g.broken, None);
    assert_eq!(recheck, None);

    // Both placed (the second after a wait): nothing pending, nothing to bound.
    let whole = [loading(0, 2, "a", 90), loading(1, 2, "b", 500)];
    let (g, _) = World::at(3600).judge(&whole);
    assert_eq!(g.broken, None);
}

#[test]
fn a_partly_placed_group_reports_its_waiting_rank() {
    let half = [loading(0, 2, "a", 90), unschedulable(1, 100)];
    let w = World::at(200);
    let found = find_groups(&half, &w.inputs());
    let p = found.groups[0].partial.clone().expect("partial");
    assert_eq!(
        p.verdict,
        crate::whole_groups::Verdict::Waiting {
            left: Duration::from_secs(200)
        }
    );
    assert_eq!((p.placed, p.size), (1, 2));
    assert_eq!(p.pending_pod, "m-h-0-1");
    assert_eq!(p.since, at(100));
    let w = World::at(400);
    let found = find_groups(&half, &w.inputs());
    let p = found.groups[0].partial.clone().expect("partial");
    assert_eq!(p.verdict, crate::whole_groups::Verdict::Remove);
    // Nothing placed: not partial.
    let none = [unschedulable(0, 0), unschedulable(1, 0)];
    assert!(find_groups(&none, &w.inputs()).groups[0].partial.is_none());
}

/// A rank the scheduler bound to `node` at second `bound` (PodScheduled turned True then),
/// loading since.
fn bound_at(rank: u32, node: &str, bound: i64) -> Pod {
    let mut p = loading(rank, 2, node, bound);
    if let Some(cs) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        cs.push(
            serde_json::from_value(json!({
                "type": "PodScheduled", "status": "True",
                "lastTransitionTime": at(bound).to_string(),
            }))
            .expect("condition"),
        );
    }
    p
}

/// Table: the capacity bound counts from the moment the group became partial (one rank
/// bound while another is not), not from the pods' creation. Nodes that take longer than
/// the bound to boot must not get the group removed as its first rank binds.
/// (case, pods, now, fault, verdict)
#[test]
fn the_capacity_bound_counts_from_when_the_group_became_partial() {
    use crate::whole_groups::Verdict;
    let wait = |s: u64| {
        Some(Verdict::Waiting {
            left: Duration::from_secs(s),
        })
    };
    type Case = (&'static str, Vec<Pod>, i64, Option<Fault>, Option<Verdict>);
    let cases: Vec<Case> = vec![
        (
            "both pending since 0, rank 0 bound at 400 (slow node boot): 250 s left",
            vec![bound_at(0, "a", 400), unschedulable(1, 0)],
            450,
            None,
            wait(250),
        ),
        (
            "the same group 300 s after the bind",
            vec![bound_at(0, "a", 400), unschedulable(1, 0)],
            700,
            Some(Fault::CapacityPending),
            Some(Verdict::Remove),
        ),
        (
            "rank 1 found unschedulable after rank 0 bound: counts from rank 1",
            vec![bound_at(0, "a", 50), unschedulable(1, 100)],
            350,
            None,
            wait(50),
        ),
        (
            "the earliest bind counts when several ranks hold nodes",
            [
                bound_at(0, "a", 400),
                bound_at(1, "b", 420),
                unschedulable(2, 0),
            ]
            .into_iter()
            .map(|mut p| {
                if let Some(l) = p.metadata.labels.as_mut() {
                    l.insert(labels::GROUP_SIZE.into(), "3".into());
                }
                p
            })
            .collect(),
            710,
            Some(Fault::CapacityPending),
            Some(Verdict::Remove),
        ),
    ];
    for (what, pods, now, fault, verdict) in cases {
        let w = World::at(now);
        let found = find_groups(&pods, &w.inputs());
        assert_eq!(found.groups.len(), 1, "{what}");
        let g = &found.groups[0];
        assert_eq!(g.observed.broken, fault, "{what}");
        assert_eq!(g.partial.as_ref().map(|p| p.verdict), verdict, "{what}");
    }
}

fn partial(verdict: Verdict) -> Partial {
    Partial {
        verdict,
        placed: 1,
        size: 2,
        pending_pod: "r1-h-1-1".into(),
        since: "2026-11-30T13:11:40Z".parse::<Timestamp>().expect("time"),
    }
}

#[test]
fn messages_name_the_group_the_rank_the_bound_and_the_state() {
    let w = partial(Verdict::Waiting {
        left: Duration::from_secs(5),
    });
    assert_eq!(
        describe("h-1", &w, Duration::from_secs(30), Some("Karpenter NodePool h100: no NodeClaim")),
        "group h-1: 1 of 2 ranks on nodes, r1-h-1-1 unschedulable since 2026-11-30T13:11:40Z; \
         the group is removed whole if still partial 30s after that (capacityPendingTimeoutSeconds); \
         Karpenter NodePool h100: no NodeClaim"
    );
    let r = describe(
        "h-1",
        &partial(Verdict::Remove),
        Duration::from_secs(30),
        None,
    );
    assert!(
        r.ends_with("removing the group whole to free its nodes"),
        "{r}"
    );
}

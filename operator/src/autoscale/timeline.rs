//! The cold-start timeline of a wake-up from zero by held requests: request seen (the
//! front's first held request), scale decision, nodes created (when a node autoscaler
//! made the group's nodes after the request), pods scheduled, ranks joined, engine
//! ready, first token (the front's first answer to a held request). The autoscaler keeps
//! one per waking model, fills it from the pod cache and the fronts at each (fast) step,
//! and once complete records it as a `ScaledFromZero` Event and
//! `status.lastScaleFromZero`, so a user sees where the minutes went.
//!
//! Pure: pods and readings in, phases out.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::ScaleFromZero;
use crate::desired::labels;

/// A wake-up in progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Wake {
    pub seen: Timestamp,
    pub decided: Timestamp,
    /// The newest node of the first scheduled group, if created after `seen` (to the second).
    pub nodes_created: Option<Timestamp>,
    pub scheduled: Option<Timestamp>,
    /// Every worker's Ready condition (a one-node group: first seen Running).
    pub joined: Option<Timestamp>,
    /// The leader's Ready condition.
    pub ready: Option<Timestamp>,
    /// When a front sent the first held request to the group that answered it.
    pub front_ready: Option<Timestamp>,
    pub first_token: Option<Timestamp>,
}

/// Seconds since the epoch (the front's clock) as a timestamp.
pub fn from_epoch(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Timestamp::from_millisecond((secs * 1000.0) as i64).ok()
}

fn condition(p: &Pod, type_: &str) -> Option<Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn all<'a>(pods: &[&'a Pod], f: impl Fn(&'a Pod) -> Option<Timestamp>) -> Option<Timestamp> {
    pods.iter()
        .map(|p| f(p))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

impl Wake {
    pub fn new(seen: Timestamp, decided: Timestamp) -> Self {
        Wake {
            // The front's clock may run ahead of the operator's: never after the decision.
            seen: seen.min(decided),
            decided,
            nodes_created: None,
            scheduled: None,
            joined: None,
            ready: None,
            front_ready: None,
            first_token: None,
        }
    }

    /// Fills the pod phases from the model's pods (the first whole group to reach each
    /// phase); `now` stands for "Running" of a one-node group, which has no condition.
    /// `node_created` tells when a node was created (the node cache), for the nodes the
    /// first scheduled group landed on.
    pub fn observe_pods(
        &mut self,
        pods: &[Arc<Pod>],
        now: Timestamp,
        node_created: &dyn Fn(&str) -> Option<Timestamp>,
    ) {
        let mut groups: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            if let Some(g) = p.labels().get(labels::GROUP_ID) {
                groups.entry(g.as_str()).or_default().push(p);
            }
        }
        for members in groups.values() {
            let size = members[0]
                .labels()
                .get(labels::GROUP_SIZE)
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(1);
            if members.len() != size {
                continue;
            }
            let rank = |p: &Pod| p.labels().get(labels::RANK).cloned().unwrap_or_default();
            let (leaders, workers): (Vec<&Pod>, Vec<&Pod>) =
                members.iter().partition(|p| rank(p) == "0");
            let first = |slot: &mut Option<Timestamp>, t: Option<Timestamp>| {
                if let Some(t) = t {
                    *slot = Some(slot.map_or(t, |s| s.min(t)));
                }
            };
            let scheduled = all(members, |p| condition(p, "PodScheduled"));
            if let Some(t) = scheduled.filter(|t| self.scheduled.is_none_or(|s| *t < s)) {
                self.scheduled = Some(t);
                self.nodes_created = members
                    .iter()
                    .filter_map(|p| node_created(p.spec.as_ref()?.node_name.as_deref()?))
                    .max()
                    // Creation times have whole seconds: a node made in the request's
                    // second was made for it.
                    .filter(|c| c.as_second() >= self.seen.as_second());
            }
            let joined = if workers.is_empty() {
                let running = members
                    .iter()
                    .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
                (running && self.joined.is_none()).then_some(now)
            } else {
                all(&workers, |p| condition(p, "Ready"))
            };
            first(&mut self.joined, joined);
            first(&mut self.ready, all(&leaders, |p| condition(p, "Ready")));
        }
    }

    /// The fronts' first answer to a held request and when its group was picked, if they
    /// belong to this wake-up.
    pub fn observe_answer(&mut self, first_answer: Option<Timestamp>, picked: Option<Timestamp>) {
        if self.first_token.is_none() {
            self.first_token = first_answer.filter(|t| *t >= self.seen);
            self.front_ready = picked.filter(|t| *t >= self.seen);
        }
    }

    /// Engine ready and ranks joined as they happened. The kubelet writes a pod's Ready
    /// condition on its probe periods (the engine's startup probe polls every 10 s), so on
    /// real nodes a leader whose group a front already serves may read Ready seconds
    /// later, and a worker after its leader: the engine was ready when the front (probing
    /// the leader's `/readyz`, which asks every rank) first sent to it, if that was
    /// sooner, and every rank had joined by then at the latest.
    fn ready_and_joined(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        let earliest = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let ready = earliest(self.ready, self.front_ready);
        (ready, earliest(self.joined, ready))
    }

    /// Every phase, once known.
    pub fn done(&self) -> Option<ScaleFromZero> {
        let s = |t: Timestamp| t.to_string();
        Some(ScaleFromZero {
            request_seen: s(self.seen),
            scale_decision: s(self.decided),
            nodes_created: self.nodes_created.map(s),
            pods_scheduled: s(self.scheduled?),
            ranks_joined: s(self.ready_and_joined().1?),
            engine_ready: s(self.ready_and_joined().0?),
            first_token: s(self.first_token?),
        })
    }

    /// The Event's note: each phase's offset from the request.
    pub fn note(&self) -> String {
        let nodes = self.nodes_created.map(|t| ("nodes created", Some(t)));
        let (ready, joined) = self.ready_and_joined();
        let phases = [("scale decision", Some(self.decided))]
            .into_iter()
            .chain(nodes)
            .chain([
                ("pods scheduled", self.scheduled),
                ("ranks joined", joined),
                ("engine ready", ready),
                ("first token", self.first_token),
            ]);
        let parts: Vec<String> = phases
            .map(|(name, t)| match t {
                Some(t) => format!("{name} {:+.1}s", t.duration_since(self.seen).as_secs_f64()),
                None => format!("{name} unknown"),
            })
            .collect();
        format!("woken by held requests: request seen, {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn pod(gid: &str, rank: u32, size: u32, phase: &str, conds: &[(&str, &str)]) -> Pod {
        let conditions: Vec<serde_json::Value> = conds
            .iter()
            .map(|(t, at)| serde_json::json!({"type": t, "status": "True", "lastTransitionTime": at}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("m--{gid}-{rank}"), "labels": {
                labels::GROUP_ID: gid, labels::RANK: rank.to_string(),
                labels::GROUP_SIZE: size.to_string()}},
            "status": {"phase": phase, "conditions": conditions},
        }))
        .expect("pod")
    }

    #[test]
    fn a_two_node_group_fills_its_phases_from_conditions_and_waits_for_every_rank() {
        let mut w = Wake::new(ts("2026-12-05T01:00:00Z"), ts("2026-12-05T01:00:01Z"));
        let now = ts("2026-12-05T01:00:30Z");
        // One rank only: nothing yet.
        let leader = pod(
            "h-0",
            0,
            2,
            "Running",
            &[("PodScheduled", "2026-12-05T01:00:02Z")],
        );
        w.observe_pods(&[Arc::new(leader.clone())], now, &|_| None);
        assert_eq!(w.scheduled, None, "half a group is not scheduled");
        let worker = pod(
            "h-0",
            1,
            2,
            "Running",
            &[
                ("PodScheduled", "2026-12-05T01:00:03Z"),
                ("Ready", "2026-12-05T01:00:05Z"),
            ],
        );
        w.observe_pods(
            &[Arc::new(leader.clone()), Arc::new(worker.clone())],
            now,
            &|_| None,
        );
        assert_eq!(w.scheduled, Some(ts("2026-12-05T01:00:03Z")));
        assert_eq!(w.joined, Some(ts("2026-12-05T01:00:05Z")));
        assert_eq!(w.ready, None);
        assert!(w.done().is_none());
        let leader = pod(
            "h-0",
            0,
            2,
            "Running",
            &[
                ("PodScheduled", "2026-12-05T01:00:02Z"),
                ("Ready", "2026-12-05T01:00:09Z"),
            ],
        );
        w.observe_pods(&[Arc::new(leader), Arc::new(worker)], now, &|_| None);
        assert_eq!(w.ready, Some(ts("2026-12-05T01:00:09Z")));
        // An answer from before this wake-up is not its first token.
        w.observe_answer(Some(ts("2026-12-05T00:59:00Z")), None);
        assert!(w.done().is_none());
        w.observe_answer(Some(ts("2026-12-05T01:00:09.500Z")), None);
        let done = w.done().expect("complete");
        assert_eq!(done.first_token, "2026-12-05T01:00:09.5Z");
        assert_eq!(
            w.note(),
            "woken by held requests: request seen, scale decision +1.0s, pods scheduled +3.0s, ranks joined +5.0s, engine ready +9.0s, first token +9.5s"
        );
    }

    #[test]
    fn engine_ready_is_when_the_front_first_served_if_the_kubelet_reports_later() {
        // Seen on real kubelets: the front sent the held requests to the group at :12;
        // the kubelet wrote the leader's Ready at :18 (its startup probe's period) and
        // the worker's at :19.
        let mut w = Wake::new(ts("2026-12-05T01:00:00Z"), ts("2026-12-05T01:00:01Z"));
        let now = ts("2026-12-05T01:00:30Z");
        let rank = |r: u32, ready: &str| {
            pod(
                "h-0",
                r,
                2,
                "Running",
                &[("PodScheduled", "2026-12-05T01:00:02Z"), ("Ready", ready)],
            )
        };
        let pods = [
            rank(0, "2026-12-05T01:00:18Z"),
            rank(1, "2026-12-05T01:00:19Z"),
        ];
        w.observe_pods(&pods.clone().map(Arc::new), now, &|_| None);
        w.observe_answer(
            Some(ts("2026-12-05T01:00:12.700Z")),
            Some(ts("2026-12-05T01:00:12.100Z")),
        );
        let done = w.done().expect("complete");
        assert_eq!(
            (done.ranks_joined.as_str(), done.engine_ready.as_str()),
            ("2026-12-05T01:00:12.1Z", "2026-12-05T01:00:12.1Z")
        );
        assert!(w
            .note()
            .contains("ranks joined +12.1s, engine ready +12.1s, first token +12.7s"));

        // Without the front's time: the leader's Ready, and the ranks joined by then.
        let mut w = Wake::new(ts("2026-12-05T01:00:00Z"), ts("2026-12-05T01:00:01Z"));
        w.observe_pods(&pods.map(Arc::new), now, &|_| None);
        w.observe_answer(Some(ts("2026-12-05T01:00:18.500Z")), None);
        let done = w.done().expect("complete");
        assert_eq!(
            (done.ranks_joined.as_str(), done.engine_ready.as_str()),
            ("2026-12-05T01:00:18Z", "2026-12-05T01:00:18Z")
        );
    }

    #[test]
    fn a_one_node_group_joins_when_first_seen_running() {
        let mut w = Wake::new(ts("2026-12-05T01:00:05Z"), ts("2026-12-05T01:00:01Z"));
        assert_eq!(
            w.seen, w.decided,
            "a front clock ahead is clamped to the decision"
        );
        let p = pod(
            "h-0",
            0,
            1,
            "Pending",
            &[("PodScheduled", "2026-12-05T01:00:02Z")],
        );
        w.observe_pods(&[Arc::new(p.clone())], ts("2026-12-05T01:00:02Z"), &|_| {
            None
        });
        assert_eq!(w.joined, None);
        let p = pod(
            "h-0",
            0,
            1,
            "Running",
            &[("PodScheduled", "2026-12-05T01:00:02Z")],
        );
        w.observe_pods(&[Arc::new(p.clone())], ts("2026-12-05T01:00:03Z"), &|_| {
            None
        });
        w.observe_pods(&[Arc::new(p.clone())], ts("2026-12-05T01:00:04Z"), &|_| {
            None
        });
        assert_eq!(
            w.joined,
            Some(ts("2026-12-05T01:00:03Z")),
            "the first sighting"
        );
        assert_eq!(from_epoch(1.5), Some(ts("1970-01-01T00:00:01.5Z")));
        assert_eq!(from_epoch(f64::NAN), None);
    }

    #[test]
    fn nodes_created_is_the_newest_node_of_the_first_scheduled_group_made_after_the_request() {
        let on = |mut p: Pod, node: &str| {
            p.spec = Some(
                serde_json::from_value(serde_json::json!({
                "containers": [], "nodeName": node}))
                .expect("spec"),
            );
            p
        };
        let created = |n: &str| match n {
            "old" => Some(ts("2026-12-05T00:00:00Z")),
            "new-a" => Some(ts("2026-12-05T01:00:20Z")),
            "new-b" => Some(ts("2026-12-05T01:00:25Z")),
            _ => None,
        };
        let sched = [("PodScheduled", "2026-12-05T01:00:40Z")];
        let group = |a: &str, b: &str| {
            [
                on(pod("h-0", 0, 2, "Running", &sched), a),
                on(pod("h-0", 1, 2, "Running", &sched), b),
            ]
        };
        // Karpenter made both nodes after the request: the later one counts.
        let mut w = Wake::new(ts("2026-12-05T01:00:00Z"), ts("2026-12-05T01:00:01Z"));
        w.observe_pods(
            &group("new-a", "new-b").map(Arc::new),
            ts("2026-12-05T01:00:41Z"),
            &created,
        );
        assert_eq!(w.nodes_created, Some(ts("2026-12-05T01:00:25Z")));
        assert!(
            w.note()
                .contains("scale decision +1.0s, nodes created +25.0s, pods scheduled +40.0s"),
            "{}",
            w.note()
        );
        // Nodes in place before the request: no such phase, in the status or the note.
        let mut w = Wake::new(ts("2026-12-05T01:00:00Z"), ts("2026-12-05T01:00:01Z"));
        w.observe_pods(
            &group("old", "old").map(Arc::new),
            ts("2026-12-05T01:00:41Z"),
            &created,
        );
        assert_eq!(w.nodes_created, None);
        assert!(!w.note().contains("nodes created"), "{}", w.note());
        // A node the cache does not know (yet) is not guessed at.
        let mut w = Wake::new(ts("2026-12-05T01:00:00Z"), ts("2026-12-05T01:00:01Z"));
        w.observe_pods(
            &group("gone", "gone").map(Arc::new),
            ts("2026-12-05T01:00:41Z"),
            &created,
        );
        assert_eq!(w.nodes_created, None);
    }
}

//! Which milestones a pod has passed: first seen, bound to a node, Ready. Kept apart
//! from the watch loop so that the rules (each milestone reported once, in order, a
//! pod seen already Ready reports all three at once) are tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// What the watcher needs from one pod event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
}

impl Observed {
    pub fn of(p: &Pod) -> Observed {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Observed {
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            ready,
            labels: p.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

/// Milestones already reported for one pod.
#[derive(Debug, Default)]
pub struct Milestones {
    seen: bool,
    bound: bool,
    ready: bool,
}

impl Milestones {
    /// The milestones this observation passes for the first time, in order.
    pub fn advance(&mut self, o: &Observed) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.seen {
            self.seen = true;
            out.push("seen");
        }
        if !self.bound && o.node.is_some() {
            self.bound = true;
            out.push("bound");
        }
        // Ready is reported once; a pod that later turns unready stays counted.
        if !self.ready && o.ready {
            self.ready = true;
            out.push("ready");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(node: Option<&str>, ready: bool) -> Observed {
        Observed {
            name: "p".into(),
            uid: "u".into(),
            node: node.map(String::from),
            ready,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn milestones_are_reported_once_and_in_order() {
        let mut m = Milestones::default();
        assert_eq!(m.advance(&obs(None, false)), vec!["seen"]);
        assert!(m.advance(&obs(None, false)).is_empty());
        assert_eq!(m.advance(&obs(Some("n"), false)), vec!["bound"]);
        assert_eq!(m.advance(&obs(Some("n"), true)), vec!["ready"]);
        assert!(m.advance(&obs(Some("n"), false)).is_empty());
        assert!(m.advance(&obs(Some("n"), true)).is_empty());
    }

    #[test]
    fn a_pod_first_seen_ready_passes_every_milestone_at_once() {
        let mut m = Milestones::default();
        assert_eq!(
            m.advance(&obs(Some("n"), true)),
            vec!["seen", "bound", "ready"]
        );
    }
}

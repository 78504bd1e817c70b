//! A Node as the operator keeps it: what pool grouping, group judgement and capacity read,
//! and nothing else.
//!
//! At 5,000 nodes a cached k8s-openapi `Node`, even stripped of images and managedFields,
//! cost about 4.3 KB, most of it the label map: a B-tree of a dozen owned Strings per node
//! (heaptrack, issue 12: 21 MB of the operator's 53 MB live heap). `NodeFacts` is
//! deserialized straight from the API server's JSON, so the parts nobody reads are never
//! built, and its label and allocatable strings are interned: every node of a pool carries
//! the same keys and nearly the same values, so a node costs its name, its hostname and a
//! few pointers.
//!
//! It implements `kube::Resource` (kind Node) so the watcher and reflector store it as they
//! would a Node.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::core::ClusterResourceScope;
use kube::Resource;
use serde::Deserialize;

/// An interned string: cloning shares it.
pub type Shared = Arc<str>;

/// Labels sorted by key, their strings interned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSet(Box<[(Shared, Shared)]>);

impl LabelSet {
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[i].1)
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The labels whose key `keep` accepts; the strings stay shared.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> LabelSet {
        LabelSet(self.0.iter().filter(|(k, _)| keep(k)).cloned().collect())
    }
}

/// The Node facts planning reads.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    /// Name, resourceVersion (the watcher reads it) and creationTimestamp only.
    metadata: ObjectMeta,
    labels: LabelSet,
    taints: Box<[Taint]>,
    unschedulable: bool,
    /// Extended resources (names with a `/`) and memory, sorted by name.
    allocatable: Box<[(Shared, Shared)]>,
    ready: Option<Ready>,
}

/// The node's Ready condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ready {
    /// Status is "True".
    pub is_true: bool,
    /// Its last transition.
    pub since: Option<Timestamp>,
}

impl NodeFacts {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// When the Node object was created (a node autoscaler's node: when it was made).
    pub fn created(&self) -> Option<Timestamp> {
        self.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }

    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// Allocatable quantity of an extended resource or of memory, as written.
    pub fn allocatable(&self, resource: &str) -> Option<&str> {
        let i = self
            .allocatable
            .binary_search_by(|(k, _)| (**k).cmp(resource))
            .ok()?;
        Some(&self.allocatable[i].1)
    }

    /// Whole devices of an extended resource the node can allocate ("8"); `None` when the
    /// node has none or the quantity is not a whole count.
    pub fn devices(&self, resource: &str) -> Option<u32> {
        self.allocatable(resource)?.trim().parse().ok()
    }

    /// Allocatable extended resources and memory in name order.
    pub fn allocatable_all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.allocatable.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn ready(&self) -> Option<&Ready> {
        self.ready.as_ref()
    }

    /// Schedulable and Ready.
    pub fn usable(&self) -> bool {
        !self.unschedulable && self.ready.as_ref().is_some_and(|r| r.is_true)
    }

    fn build(wire: Wire) -> NodeFacts {
        let mut strings = STRINGS.lock().unwrap_or_else(|e| e.into_inner());
        let mut labels: Vec<(Shared, Shared)> = wire
            .metadata
            .labels
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (strings.intern(k), strings.intern(v)))
            .collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let status = wire.status.unwrap_or_default();
        let mut allocatable: Vec<(Shared, Shared)> = status
            .allocatable
            .unwrap_or_default()
            .iter()
            .filter(|(k, _)| k.contains('/') || *k == "memory")
            .map(|(k, v)| (strings.intern(k), strings.intern(&v.0)))
            .collect();
        allocatable.sort_by(|a, b| a.0.cmp(&b.0));
        drop(strings);
        let spec = wire.spec.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| Ready {
                is_true: c.status == "True",
                since: c.last_transition_time.map(|t| t.0),
            });
        NodeFacts {
            metadata: ObjectMeta {
                name: wire.metadata.name,
                resource_version: wire.metadata.resource_version,
                creation_timestamp: wire.metadata.creation_timestamp,
                ..Default::default()
            },
            labels: LabelSet(labels.into()),
            taints: spec.taints.unwrap_or_default().into(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable: allocatable.into(),
            ready,
        }
    }
}

impl From<&Node> for NodeFacts {
    fn from(node: &Node) -> NodeFacts {
        let status = node.status.as_ref();
        NodeFacts::build(Wire {
            metadata: WireMeta {
                name: node.metadata.name.clone(),
                resource_version: node.metadata.resource_version.clone(),
                creation_timestamp: node.metadata.creation_timestamp.clone(),
                labels: node.metadata.labels.clone(),
            },
            spec: node.spec.as_ref().map(|s| WireSpec {
                unschedulable: s.unschedulable,
                taints: s.taints.clone(),
            }),
            status: status.map(|s| WireStatus {
                allocatable: s.allocatable.clone(),
                conditions: s.conditions.as_ref().map(|cs| {
                    cs.iter()
                        .map(|c| WireCondition {
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            last_transition_time: c.last_transition_time.clone(),
                        })
                        .collect()
                }),
            }),
        })
    }
}

impl<'de> Deserialize<'de> for NodeFacts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Wire::deserialize(d).map(NodeFacts::build)
    }
}

impl Resource for NodeFacts {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Node".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "nodes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The JSON shape of the fields read; serde skips every other field unparsed.
#[derive(Deserialize, Default)]
struct Wire {
    metadata: WireMeta,
    #[serde(default)]
    spec: Option<WireSpec>,
    #[serde(default)]
    status: Option<WireStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<Time>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct WireSpec {
    #[serde(default)]
    unschedulable: Option<bool>,
    #[serde(default)]
    taints: Option<Vec<Taint>>,
}

#[derive(Deserialize, Default)]
struct WireStatus {
    #[serde(default)]
    allocatable: Option<BTreeMap<String, Quantity>>,
    #[serde(default)]
    conditions: Option<Vec<WireCondition>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    last_transition_time: Option<Time>,
}

/// The process's interned label and quantity strings.
static STRINGS: LazyLock<Mutex<Interner>> = LazyLock::new(Default::default);

/// Interned strings. Strings no node holds any more (a deleted node's hostname) are
/// swept whenever the set has doubled since the last sweep, so churn does not grow it.
#[derive(Default)]
struct Interner {
    set: HashSet<Shared>,
    swept_at: usize,
}

impl Interner {
    fn intern(&mut self, s: &str) -> Shared {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        let shared: Shared = s.into();
        self.set.insert(shared.clone());
        if self.set.len() > 2 * self.swept_at.max(1024) {
            self.set.retain(|s| Arc::strong_count(s) > 1);
            self.swept_at = self.set.len();
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    const FULL: &str = r#"{
      "metadata": {"name": "n", "resourceVersion": "7", "labels": {"b": "2", "a": "1"},
                   "annotations": {"big": "x"}, "managedFields": [{"manager": "m"}]},
      "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}],
               "providerID": "p"},
      "status": {
        "allocatable": {"nvidia.com/gpu": "8", "memory": "2Ti", "cpu": "192"},
        "capacity": {"nvidia.com/gpu": "8"},
        "images": [{"names": ["a"], "sizeBytes": 1}],
        "conditions": [
          {"type": "DiskPressure", "status": "False"},
          {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:40Z",
           "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
      }
    }"#;

    #[test]
    fn keeps_what_planning_reads_and_drops_the_rest() {
        let f: NodeFacts = serde_json::from_str(FULL).expect("parses");
        assert_eq!(f.name(), "n");
        assert_eq!(f.resource_version().as_deref(), Some("7"));
        assert_eq!(
            f.labels().iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2")]
        );
        assert_eq!(f.label("b"), Some("2"));
        assert_eq!(f.label("c"), None);
        assert!(f.unschedulable() && !f.usable());
        assert_eq!(f.taints().len(), 1);
        assert_eq!(f.allocatable("nvidia.com/gpu"), Some("8"));
        assert_eq!(f.allocatable("memory"), Some("2Ti"));
        assert_eq!(f.allocatable("cpu"), None, "only what planning reads");
        assert_eq!(f.devices("nvidia.com/gpu"), Some(8));
        assert_eq!(f.devices("memory"), None, "2Ti is no device count");
        let ready = f.ready().expect("ready condition");
        assert!(ready.is_true);
        assert_eq!(
            ready.since,
            Some("2026-01-01T00:00:00Z".parse().expect("ts"))
        );
        assert!(f.meta().annotations.is_none() && f.meta().managed_fields.is_none());
    }

    #[test]
    fn built_from_a_node_or_from_json_alike() {
        let node: Node = serde_json::from_str(FULL).expect("node");
        let from_json: NodeFacts = serde_json::from_str(FULL).expect("facts");
        assert_eq!(NodeFacts::from(&node), from_json);
    }

    #[test]
    fn nodes_share_their_label_strings() {
        let a: NodeFacts = serde_json::from_str(FULL).expect("a");
        let b: NodeFacts = serde_json::from_str(FULL).expect("b");
        assert!(Arc::ptr_eq(&a.labels.0[0].1, &b.labels.0[0].1));
    }

    #[test]
    fn strings_no_node_holds_are_swept() {
        let mut i = Interner::default();
        let kept = i.intern("kept");
        for n in 0..10_000 {
            let _ = i.intern(&format!("host-{n}"));
        }
        assert!(i.set.len() <= 2 * 1024 + 1, "swept: {}", i.set.len());
        assert!(Arc::ptr_eq(&i.intern("kept"), &kept));
    }

    #[test]
    fn a_node_without_status_or_spec_is_not_usable() {
        let f: NodeFacts = serde_json::from_str(r#"{"metadata": {"name": "x"}}"#).expect("parses");
        assert!(!f.usable());
        assert_eq!(f.ready(), None);
        assert!(f.labels().is_empty());
    }
}

//! The controller's side of `whole_groups.rs` (whole groups or nothing; the condition reason
//! `CapacityPending`): reading what the node
//! autoscaler says about a group it provided only partly, and remembering removals so the
//! group is recreated only after a backoff.
//!
//! What is read, only while a group is partly placed (rare, so the extra reads cost
//! little): the Karpenter NodePool from the `karpenter.sh/nodepool` label of a placed
//! rank's node (Node cache), that NodePool's NodeClaims (list, cluster-scoped), and
//! Karpenter's FailedScheduling Event on the unplaced rank (list in the model's
//! namespace). Without Karpenter, or when a read fails, the message says less; nothing
//! here stops a reconcile. The backoff lives in memory: after an operator restart the
//! first retry comes without waiting, then the backoff starts over.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::decide::groups::FoundGroup;
use crate::inventory::karpenter::NODEPOOL_LABEL;
use crate::inventory::NodeFacts;
use crate::whole_groups::{report, retry_delay, Claim};

/// A model whose partly placed group was removed.
#[derive(Clone, Debug)]
pub struct Removed {
    pub removals: u32,
    /// What the condition said when the group was removed.
    pub message: String,
    next: Instant,
    /// `next` as a wall-clock time for the message (a fixed time, so the status does not
    /// change every reconcile).
    pub next_at: Timestamp,
}

impl Removed {
    /// Time left before groups may be created again; `None` when they may.
    pub fn wait(&self) -> Option<Duration> {
        let left = self.next.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

/// A model's removals of partly placed groups since its ranks last all found nodes (held
/// in the model's memory, memory.rs).
#[derive(Clone, Debug, Default)]
pub struct CapacityRetry {
    removed: Option<Removed>,
}

impl CapacityRetry {
    pub fn get(&self) -> Option<&Removed> {
        self.removed.as_ref()
    }

    /// Records a removal and returns the wait before groups are created again.
    pub fn removed(&mut self, message: String, retry: Duration) -> Duration {
        let entry = self.removed.get_or_insert_with(|| Removed {
            removals: 0,
            message: String::new(),
            next: Instant::now(),
            next_at: Timestamp::now(),
        });
        entry.removals += 1;
        entry.message = message;
        let wait = retry_delay(
            entry.removals,
            retry,
            crate::decide::create_backoff::jitter(),
        );
        entry.next = Instant::now() + wait;
        let now = Timestamp::now();
        entry.next_at =
            Timestamp::from_second(now.as_second().saturating_add(wait.as_secs() as i64))
                .unwrap_or(now);
        wait
    }

    /// Every rank of the model found a node: forget the removals.
    pub fn settled(&mut self) {
        self.removed = None;
    }
}

fn nodeclaims() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"),
        "nodeclaims",
    )
}

/// The Karpenter NodePool of the nodes the group's placed ranks hold, if any.
fn nodepool_of(nodes: &Store<NodeFacts>, group: &FoundGroup<'_>) -> Option<String> {
    group.pods.iter().find_map(|p| {
        let node = p.spec.as_ref()?.node_name.as_deref()?;
        let node = nodes.get(&ObjectRef::<NodeFacts>::new(node))?;
        node.label(NODEPOOL_LABEL).map(str::to_string)
    })
}

/// Karpenter's latest FailedScheduling message for pod `name`.
async fn karpenter_event(client: &Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Pod,involvedObject.name={name},reason=FailedScheduling"
    ));
    let events = match api.list(&lp).await {
        Ok(l) => l.items,
        Err(e) => {
            tracing::debug!(error = %e, pod = name, "cannot read the pod's scheduling Events");
            return None;
        }
    };
    events
        .into_iter()
        .filter(|e| {
            e.reporting_component.as_deref() == Some("karpenter")
                || e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("karpenter")
        })
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
        .and_then(|e| e.message)
}

/// What the autoscaler says about the group: its NodePool's NodeClaims and Karpenter's
/// reason for the unplaced rank. `None` when the group's nodes are not Karpenter's.
/// Takes the client and the Node cache, not the controller's context: the context holds
/// this module's retry memory (memory.rs), and this module does not reach back into it.
pub async fn autoscaler_state(
    client: &Client,
    nodes: &Store<NodeFacts>,
    ns: &str,
    group: &FoundGroup<'_>,
) -> Option<String> {
    let np = nodepool_of(nodes, group)?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &nodeclaims());
    let lp = ListParams::default().labels(&format!("{NODEPOOL_LABEL}={np}"));
    let claims: Result<Vec<Claim>, String> = api
        .list(&lp)
        .await
        .map(|l| {
            let mut cs: Vec<Claim> = l
                .items
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .filter_map(|v| Claim::from_object(&v))
                .collect();
            cs.sort_by(|a, b| a.name.cmp(&b.name));
            cs
        })
        .map_err(|e| e.to_string());
    let pending = group.partial.as_ref().map(|p| p.pending_pod.as_str())?;
    let event = karpenter_event(client, ns, pending).await;
    Some(report(
        &np,
        claims.as_deref().map_err(String::as_str),
        event.as_deref(),
    ))
}

/// The condition message while recreation waits after a removal.
pub fn describe_backoff(r: &Removed) -> String {
    format!(
        "a partly placed group was removed (removal {}), creating it again at {}; when removed: {}",
        r.removals, r.next_at, r.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_accumulate_and_settling_forgets_them() {
        let mut c = CapacityRetry::default();
        assert!(c.get().is_none());
        let first = c.removed("one".into(), Duration::from_secs(40));
        assert!(first >= Duration::from_secs(40) && first <= Duration::from_secs(50));
        let second = c.removed("two".into(), Duration::from_secs(40));
        assert!(second >= Duration::from_secs(80));
        let r = c.get().expect("recorded").clone();
        assert_eq!((r.removals, r.message.as_str()), (2, "two"));
        assert!(r.wait().is_some());
        let msg = describe_backoff(&r);
        assert!(
            msg.contains(&format!(
                "(removal 2), creating it again at {}; when removed: two",
                r.next_at
            )),
            "{msg}"
        );
        assert!(r.next_at > Timestamp::now());
        c.settled();
        assert!(c.get().is_none());
    }
}

//! The pod cache: one watch of pods (per watched namespace, or one cluster-wide) that both
//! the reconcile and the autoscaler read, instead of listing pods from the API server on
//! every reconcile and every scale-up step.
//!
//! Pods are stripped before caching ([`strip`]) to what group judgement, scraping and the
//! capacity check read, and indexed two ways: by model (the `app.kubernetes.io/instance`
//! label of pods this operator manages) and by node (accelerators that bound,
//! non-terminated pods request, per resource name). So a reconcile finds its pods, and a
//! capacity check the free accelerators of a pool's nodes, without scanning the cluster.
//! Those two indexes, kept as events arrive, are what a kube-runtime reflector `Store`
//! lacks (it holds objects by key only), so this cache is its own; lists are folded into
//! one step by `watch::changes`, and pods are handed out as `Arc<Pod>`, never copied.
//!
//! Why a cache is safe for the decisions taken from it. A watch delivers events in
//! resourceVersion order, so the cache is always the true state at some past version,
//! only possibly older than this operator's own last writes. What an old view can do:
//! - **Miss pods just created.** Reconcile would create them again. Names are
//!   deterministic and creation is server-side apply, so that is never a second pod, only
//!   a repeated write; and [`crate::controller::expect::Expectations`] skips re-creating a pod created
//!   within the last seconds that the cache has not shown yet.
//! - **Show pods as they were.** A group may look broken (a rank NotReady or unscheduled
//!   past its bound) that has healed since, or a surplus group may look not ready and be
//!   picked for a scale-down. Deletion is the only write that cannot be undone, so the
//!   reconcile never deletes on the cache's word: when it is about to delete anything it
//!   lists the model's pods from the API server (a quorum read) and decides again from
//!   that (controller/reconcile.rs). Deletions are rare; a steady state lists nothing.
//! - **Count capacity wrongly.** The autoscaler's room estimate is only an estimate: the
//!   scheduler has the last word, and a group that does not fit stays Pending.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, ResourceRequirements};
use kube::runtime::{watcher, WatchStreamExt};

use super::watch::{changes, Change};
use kube::{Api, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::desired::labels;

/// Pod events forwarded to one controller, to map to their owning model.
pub type OwnedEvents = mpsc::Receiver<Result<Pod, watcher::Error>>;

/// Whether a resource name is an accelerator's: extended resources are
/// `<domain>/<name>` (nvidia.com/gpu, amd.com/gpu, huawei.com/Ascend910); cpu, memory and
/// ephemeral-storage have no domain.
fn is_extended(resource: &str) -> bool {
    resource.contains('/')
}

/// Keeps only what the operator reads of a pod: name, namespace, labels, owner
/// references, creation and deletion timestamps; nodeName and the containers' extended
/// resource requests and limits; phase, pod IP, the Ready and PodScheduled conditions
/// and the restart counts.
/// Everything else (env, command, volumes, managedFields, annotations) can be large and is
/// read by no one here.
pub fn strip(pod: &mut Pod) {
    let m = &mut pod.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.generate_name = None;
    m.finalizers = None;
    if let Some(spec) = pod.spec.take() {
        let containers = spec
            .containers
            .into_iter()
            .map(|c| {
                let keep = |m: Option<std::collections::BTreeMap<String, _>>| {
                    m.map(|m| {
                        m.into_iter()
                            .filter(|(k, _): &(String, _)| is_extended(k))
                            .collect()
                    })
                };
                Container {
                    name: c.name,
                    resources: c.resources.map(|r| ResourceRequirements {
                        requests: keep(r.requests),
                        limits: keep(r.limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect::<Vec<_>>();
        pod.spec = Some(PodSpec {
            containers: shrunk(containers),
            node_name: spec.node_name,
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            // Group judgement reads Ready (status, since when) and PodScheduled (the
            // scheduler's reason and message); the other conditions were a third of a
            // cached pod.
            conditions: status
                .conditions
                .map(|cs| {
                    cs.into_iter()
                        .filter(|c| c.type_ == "Ready" || c.type_ == "PodScheduled")
                        .map(|mut c| {
                            c.last_probe_time = None;
                            if c.type_ == "Ready" {
                                c.message = None;
                            }
                            c
                        })
                        .collect::<Vec<_>>()
                })
                .map(shrunk),
            container_statuses: status
                .container_statuses
                .map(|cs| {
                    cs.into_iter()
                        .map(|c| k8s_openapi::api::core::v1::ContainerStatus {
                            name: c.name,
                            restart_count: c.restart_count,
                            ready: c.ready,
                            // When the container started running: a rank Ready and then
                            // NotReady since is told from one still loading (decide/groups.rs).
                            // And the reason and exit code of the last termination: a
                            // crash-looping group's Degraded message names them
                            // (decide/mod.rs `last_termination`).
                            state: c.state.and_then(|s| {
                                let terminated = s.terminated.map(termination);
                                (s.running.is_some() || terminated.is_some()).then(|| {
                                    k8s_openapi::api::core::v1::ContainerState {
                                        running: s.running,
                                        terminated,
                                        ..Default::default()
                                    }
                                })
                            }),
                            last_state: c.last_state.and_then(|s| {
                                s.terminated
                                    .map(|t| k8s_openapi::api::core::v1::ContainerState {
                                        terminated: Some(termination(t)),
                                        ..Default::default()
                                    })
                            }),
                            ..Default::default()
                        })
                        .collect::<Vec<_>>()
                })
                .map(shrunk),
            ..Default::default()
        });
    }
}

/// A container's termination as the cache keeps it: reason and exit code only.
fn termination(
    t: k8s_openapi::api::core::v1::ContainerStateTerminated,
) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    k8s_openapi::api::core::v1::ContainerStateTerminated {
        reason: t.reason,
        exit_code: t.exit_code,
        ..Default::default()
    }
}

/// The vector without the spare room a filtering collect keeps: it reuses the list's
/// buffer, sized for what the API server sent (every condition, every container field).
fn shrunk<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

/// Whether a pod holds its node's resources: bound and neither Succeeded nor Failed.
fn holds_node(pod: &Pod) -> Option<&str> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Extended resources a pod requests, per name (requests, else limits, of each container).
fn extended_requests(pod: &Pod) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let Some(r) = c.resources.as_ref() else {
            continue;
        };
        let names: BTreeSet<&String> = r
            .requests
            .iter()
            .chain(r.limits.iter())
            .flat_map(|m| m.keys())
            .collect();
        for name in names {
            let q = r
                .requests
                .as_ref()
                .and_then(|m| m.get(name))
                .or_else(|| r.limits.as_ref().and_then(|m| m.get(name)));
            let n = q.and_then(|q| q.0.trim().parse::<u32>().ok()).unwrap_or(0);
            match out.iter_mut().find(|(k, _)| k == name) {
                Some((_, v)) => *v += n,
                None => out.push((name.clone(), n)),
            }
        }
    }
    out
}

/// The model a managed pod belongs to.
fn model_of(pod: &Pod) -> Option<&str> {
    let l = pod.metadata.labels.as_ref()?;
    (l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER))
        .then(|| l.get(labels::INSTANCE).map(String::as_str))
        .flatten()
}

type Key = (String, String);

/// One watch's pods and their indexes.
#[derive(Default)]
struct Shard {
    /// Shared: a reconcile or a scrape takes the model's pods without copying them (a
    /// `Pod` is about 2 KiB inline even stripped); and a map holds up to twice its
    /// entries in slots, so the slot is a pointer.
    pods: HashMap<Key, Arc<Pod>>,
    /// (namespace, model) -> pod names.
    by_model: HashMap<Key, BTreeSet<String>>,
    /// node -> resource -> accelerators requested by pods holding the node.
    used: HashMap<String, HashMap<String, u32>>,
}

impl Shard {
    fn index(&mut self, pod: &Pod, sign: i64) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        if let Some(model) = model_of(pod) {
            let key = (ns, model.to_string());
            if sign > 0 {
                self.by_model.entry(key).or_default().insert(name);
            } else if let Some(set) = self.by_model.get_mut(&key) {
                set.remove(&name);
                if set.is_empty() {
                    self.by_model.remove(&key);
                }
            }
        }
        if let Some(node) = holds_node(pod) {
            let requests = extended_requests(pod);
            if requests.is_empty() {
                return;
            }
            let per_node = self.used.entry(node.to_string()).or_default();
            for (res, n) in requests {
                let v = per_node.entry(res).or_default();
                *v = if sign > 0 {
                    v.saturating_add(n)
                } else {
                    v.saturating_sub(n)
                };
            }
            per_node.retain(|_, v| *v > 0);
            if per_node.is_empty() {
                self.used.remove(node);
            }
        }
    }

    fn apply(&mut self, pod: Pod) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        if let Some(old) = self.pods.remove(&key) {
            self.index(&old, -1);
        }
        self.index(&pod, 1);
        self.pods.insert(key, Arc::new(pod));
    }

    fn delete(&mut self, pod: &Pod) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        if let Some(old) = self.pods.remove(&key) {
            self.index(&old, -1);
        }
    }
}

/// Managed pods a relist found new, changed or gone, compared with what the cache held:
/// the changes a broken watch missed, so their models are reconciled (a first list
/// forwards nothing: every model is reconciled at start anyway).
fn relist_changes(old: &Shard, new: &Shard) -> Vec<Pod> {
    if old.pods.is_empty() {
        return Vec::new();
    }
    let changed = new.pods.iter().filter(|(k, p)| {
        model_of(p).is_some()
            && old.pods.get(*k).map(|o| &o.metadata.resource_version)
                != Some(&p.metadata.resource_version)
    });
    let gone = old
        .pods
        .iter()
        .filter(|(k, p)| model_of(p).is_some() && !new.pods.contains_key(*k));
    changed.chain(gone).map(|(_, p)| (**p).clone()).collect()
}

/// The shared pod cache. Cheap to clone.
#[derive(Clone)]
pub struct PodCache {
    shards: Arc<Vec<RwLock<Shard>>>,
    ready: watch::Receiver<usize>,
}

impl PodCache {
    /// A cache filled from given pods, ready at once (tests and benchmarks).
    pub fn from_pods(pods: impl IntoIterator<Item = Pod>) -> PodCache {
        let mut shard = Shard::default();
        for mut p in pods {
            strip(&mut p);
            shard.apply(p);
        }
        let (_tx, ready) = watch::channel(1);
        PodCache {
            shards: Arc::new(vec![RwLock::new(shard)]),
            ready,
        }
    }

    /// Waits until every watch has listed once. Errors if the watches stopped first.
    pub async fn wait_ready(&self) -> Result<(), watch::error::RecvError> {
        let n = self.shards.len();
        let mut rx = self.ready.clone();
        rx.wait_for(|listed| *listed >= n).await.map(|_| ())
    }

    /// The managed pods of a model, as last seen (shared, not copied).
    pub fn model_pods(&self, namespace: &str, model: &str) -> Vec<Arc<Pod>> {
        let key = (namespace.to_string(), model.to_string());
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let Ok(s) = shard.read() else { continue };
            for name in s.by_model.get(&key).into_iter().flatten() {
                if let Some(p) = s.pods.get(&(namespace.to_string(), name.clone())) {
                    out.push(Arc::clone(p));
                }
            }
        }
        out
    }

    /// Accelerators of `resource` that bound, non-terminated pods request on `node`.
    pub fn used_on(&self, node: &str, resource: &str) -> u32 {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .filter_map(|s| s.used.get(node).and_then(|m| m.get(resource)).copied())
            .fold(0u32, u32::saturating_add)
    }

    /// The models (namespace, name) with managed pods bound to `node`. A scan of the
    /// cache: called only when a node is lost or comes back, which is rare.
    pub fn models_on(&self, node: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for shard in self.shards.iter() {
            let Ok(s) = shard.read() else { continue };
            for ((ns, _), p) in &s.pods {
                let bound = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
                if let (Some(model), Some(true)) = (model_of(p), bound.map(|b| b == node)) {
                    out.insert((ns.clone(), model.to_string()));
                }
            }
        }
        out
    }

    /// Pods in the cache (for the operator's own metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .map(|s| s.pods.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts one pod watch per `Api` (one per watched namespace, or one cluster-wide). Returns
/// the cache and, per `Api`, the stream of managed pods' changes for that namespace's
/// controller to map to their models.
pub fn watch_pods(apis: Vec<Api<Pod>>) -> (PodCache, Vec<OwnedEvents>) {
    let shards: Arc<Vec<RwLock<Shard>>> =
        Arc::new(apis.iter().map(|_| RwLock::new(Shard::default())).collect());
    let (ready_tx, ready) = watch::channel(0usize);
    let ready_tx = Arc::new(ready_tx);
    let mut receivers = Vec::new();
    for (i, api) in apis.into_iter().enumerate() {
        // Enough to absorb a burst while the controller is busy; the watch waits beyond it.
        let (tx, rx) = mpsc::channel(4096);
        receivers.push(rx);
        let shards = shards.clone();
        let ready_tx = ready_tx.clone();
        let stream = changes(
            watcher(api, super::watch::config())
                .modify(strip)
                .backoff(super::watch::backoff()),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut listed = false;
            while let Some(change) = stream.next().await {
                let forward = match change {
                    Ok(Change::Listed(pods)) => {
                        let mut fresh = Shard::default();
                        for p in pods {
                            fresh.apply(p);
                        }
                        let changed = match shards[i].write() {
                            Ok(mut s) => {
                                let changed = relist_changes(&s, &fresh);
                                *s = fresh;
                                changed
                            }
                            Err(_) => Vec::new(),
                        };
                        if !listed {
                            listed = true;
                            ready_tx.send_modify(|n| *n += 1);
                        }
                        changed
                    }
                    Ok(Change::Applied(p)) => {
                        let f = model_of(&p).is_some().then(|| p.clone());
                        if let Ok(mut s) = shards[i].write() {
                            s.apply(p);
                        }
                        f.into_iter().collect()
                    }
                    Ok(Change::Deleted(p)) => {
                        if let Ok(mut s) = shards[i].write() {
                            s.delete(&p);
                        }
                        model_of(&p).is_some().then_some(p).into_iter().collect()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch error");
                        Vec::new()
                    }
                };
                // The store is updated first, so the reconcile this wakes reads the change.
                for p in forward {
                    let _ = tx.send(Ok(p)).await;
                }
            }
        });
    }
    (PodCache { shards, ready }, receivers)
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;

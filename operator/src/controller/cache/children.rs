//! The child cache: what the operator has made besides pods (Services, NetworkPolicies,
//! KEDA ScaledObjects), kept current by metadata-only watches of the objects it manages
//! (label `app.kubernetes.io/managed-by=deepseek-operator`). A reconcile reads the live
//! digest annotations from here instead of a list and two gets per model from the API
//! server: at 1,000 models those reads were most of the operator's requests (issue 12).
//!
//! Only metadata is watched, and only a [`Child`] kept of it: name, namespace, the one
//! annotation a reconcile compares (`SPEC_DIGEST`), the model it belongs to: the decision
//! "apply or not" reads nothing else. A reflector `Store` would keep whole objects by key;
//! this keeps the model index and digests, and tells a relist's changes from the
//! operator's own writes (written through), so it is its own, on `watch::changes`.
//!
//! Why a cache is safe here. Every write is a server-side apply (creates or updates, so
//! never "AlreadyExists") or a delete that treats 404 as done; so an old view costs at
//! most a repeated, idempotent write, never a wrong one:
//! - an object missing from the cache (not seen yet) is applied again;
//! - an object shown with an old digest is applied again;
//! - an object shown that was deleted since: its Delete event re-triggers the model,
//!   which then finds it gone and applies it.
//!
//! Successful writes are written through ([`ChildCache::applied`], [`ChildCache::deleted`]),
//! so the operator's own writes neither repeat before their watch event arrives nor
//! trigger a reconcile of their own. Changes by others (an object deleted or edited, a
//! relist finding what a broken watch missed) trigger the owning model's reconcile.
//!
//! KEDA is optional: until its ScaledObject API is served (looked for every `RECHECK`),
//! [`ChildCache::scaled_object`] answers [`Seen::Absent`], and after the API goes away
//! again too; while the first list of a found API is under way it answers
//! [`Seen::Unknown`] and the caller asks the API server, as it did before this cache.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, GroupVersionKind};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};

use super::watch::{changes, Change};
use kube::{Api, Client, Resource};
use tokio::sync::{mpsc, watch};

use crate::api::DeepSeekModel;
use crate::controller::scope::Scope;
pub use crate::decide::ownership::controller_uid;
use crate::desired::{keda, labels};

/// How often to look again for KEDA's ScaledObject API when it is not served.
const RECHECK: Duration = Duration::from_secs(30);

/// Models whose children others changed, for one controller to reconcile.
pub type ChildEvents = mpsc::Receiver<ObjectRef<DeepSeekModel>>;

/// The kinds of children cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Service,
    NetworkPolicy,
    ScaledObject,
}

/// What the cache knows of one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// Listed: the object as last seen, or `None` when it does not exist.
    Listed(Option<Child>),
    /// Not listed yet: ask the API server.
    Unknown,
    /// The kind's API is not served (KEDA not installed): no such object can exist.
    Absent,
}

/// What the cache keeps of a child: what a reconcile compares and whom a change wakes.
/// (Whole `ObjectMeta`s in the maps were most of the cache's size, issue 12.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub namespace: String,
    pub name: String,
    /// The `SPEC_DIGEST` annotation.
    pub digest: Option<String>,
    /// Labelled `app.kubernetes.io/managed-by=deepseek-operator` (every watched one is).
    pub managed: bool,
    /// The instance label: a model's Services are found by it.
    instance: Option<String>,
    /// The controlling DeepSeekModel owner's name.
    owner: Option<String>,
    /// The controlling owner's uid, whatever its kind: a model applies or deletes only the
    /// children it controls (`apply::check_ours`).
    pub controller_uid: Option<String>,
}

impl Child {
    pub fn from_meta(meta: &ObjectMeta) -> Child {
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).cloned();
        let kind = DeepSeekModel::kind(&());
        Child {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            digest: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::SPEC_DIGEST))
                .cloned(),
            managed: label(labels::MANAGED_BY).as_deref() == Some(labels::MANAGER),
            instance: label(labels::INSTANCE),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == kind)
                .map(|o| o.name.clone()),
            controller_uid: controller_uid(meta).map(str::to_string),
        }
    }

    /// What exists under `name`, read from the API server: for a child the cache cannot
    /// vouch for (not listed yet, or possibly someone else's, which the cache does not
    /// watch), before `apply::check_ours`. `what` names it in the error.
    pub async fn read<K>(
        api: &kube::Api<K>,
        name: &str,
        what: &str,
    ) -> Result<Option<Child>, crate::controller::error::Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let meta = api.get_metadata_opt(name).await.map_err(|source| {
            crate::controller::error::Error::Read {
                what: what.to_string(),
                source,
            }
        })?;
        Ok(meta.map(|m| Child::from_meta(&m.metadata)))
    }

    /// Whether the model with uid `owner` controls this child.
    pub fn controlled_by(&self, owner: &str) -> bool {
        self.controller_uid.as_deref() == Some(owner)
    }

    fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }

    /// The model the child belongs to: its controlling owner, else its instance label.
    pub fn model(&self) -> Option<ObjectRef<DeepSeekModel>> {
        let name = self.owner.as_deref().or(self.instance.as_deref())?;
        Some(ObjectRef::new(name).within(&self.namespace))
    }
}

type Key = (String, String);

/// One watch's objects (one namespace, or every namespace when `namespace` is `None`).
#[derive(Default)]
struct Shard {
    namespace: Option<String>,
    listed: bool,
    objects: HashMap<Key, Child>,
    /// (namespace, instance label) -> names: a model's Services.
    by_model: HashMap<Key, BTreeSet<String>>,
}

impl Shard {
    fn index(&mut self, child: &Child, add: bool) {
        let Some(model) = child.instance.clone() else {
            return;
        };
        let k = (child.namespace.clone(), model);
        if add {
            self.by_model
                .entry(k)
                .or_default()
                .insert(child.name.clone());
        } else if let Some(set) = self.by_model.get_mut(&k) {
            set.remove(&child.name);
            if set.is_empty() {
                self.by_model.remove(&k);
            }
        }
    }

    /// Inserts an object; returns whether its digest is new (a change the model must see).
    fn insert(&mut self, child: Child) -> bool {
        let k = child.key();
        let old = self.objects.remove(&k);
        let changed = old.as_ref().map(|o| &o.digest) != Some(&child.digest);
        if let Some(old) = old {
            self.index(&old, false);
        }
        self.index(&child, true);
        self.objects.insert(k, child);
        changed
    }

    /// Removes an object; returns it if it was there.
    fn remove(&mut self, k: &Key) -> Option<Child> {
        let old = self.objects.remove(k)?;
        self.index(&old, false);
        Some(old)
    }

    /// Replaces the contents with a relist's; returns the models whose children it found
    /// new, changed or gone (none on the first list: every model is reconciled at start).
    fn relist(&mut self, listed: Vec<Child>) -> Vec<ObjectRef<DeepSeekModel>> {
        let first = !self.listed;
        let mut old = std::mem::take(&mut self.objects);
        self.by_model.clear();
        let mut touched = Vec::new();
        for child in listed {
            let before = old.remove(&child.key());
            if !first && before.as_ref().map(|b| &b.digest) != Some(&child.digest) {
                touched.extend(child.model());
            }
            self.insert(child);
        }
        if !first {
            touched.extend(old.values().filter_map(Child::model));
        }
        self.objects.shrink_to_fit();
        self.listed = true;
        touched
    }
}

/// One kind's shards.
#[derive(Clone, Default)]
struct Kind {
    shards: Arc<Vec<RwLock<Shard>>>,
}

impl Kind {
    fn new(scope: &Scope) -> Kind {
        let namespaces: Vec<Option<String>> = match scope {
            Scope::All => vec![None],
            Scope::Namespaces(ns) => ns.iter().cloned().map(Some).collect(),
        };
        Kind {
            shards: Arc::new(
                namespaces
                    .into_iter()
                    .map(|namespace| {
                        RwLock::new(Shard {
                            namespace,
                            ..Default::default()
                        })
                    })
                    .collect(),
            ),
        }
    }

    /// Runs `f` on the shard that holds `ns`.
    fn with<T>(&self, ns: &str, f: impl FnOnce(&Shard) -> T) -> Option<T> {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .find(|s| s.namespace.as_deref().is_none_or(|n| n == ns))
            .map(|s| f(&s))
    }

    fn with_mut<T>(&self, ns: &str, f: impl FnOnce(&mut Shard) -> T) -> Option<T> {
        self.shards
            .iter()
            .filter_map(|s| s.write().ok())
            .find(|s| s.namespace.as_deref().is_none_or(|n| n == ns))
            .map(|mut s| f(&mut s))
    }

    fn get(&self, ns: &str, name: &str) -> Seen {
        let k = (ns.to_string(), name.to_string());
        self.with(ns, |s| {
            if s.listed {
                Seen::Listed(s.objects.get(&k).cloned())
            } else {
                Seen::Unknown
            }
        })
        .unwrap_or(Seen::Unknown)
    }

    fn unlist(&self) {
        for s in self.shards.iter() {
            if let Ok(mut s) = s.write() {
                let namespace = s.namespace.take();
                *s = Shard {
                    namespace,
                    ..Default::default()
                };
            }
        }
    }
}

/// The shared child cache. Cheap to clone.
#[derive(Clone)]
pub struct ChildCache {
    services: Kind,
    policies: Kind,
    scaled: Kind,
    /// Whether KEDA's ScaledObject API is served (as last discovered).
    keda: Arc<AtomicBool>,
    /// A ScaledObject was applied while discovery had not found KEDA yet (installed after
    /// the operator started): until discovery catches up, lookups ask the API server
    /// instead of answering "no such object", so that one can still be deleted.
    keda_applied: Arc<AtomicBool>,
    /// Typed watches (Services, NetworkPolicies) that have listed once.
    ready: watch::Receiver<usize>,
}

impl ChildCache {
    /// A cache that has listed nothing (every lookup `Unknown`; KEDA `Absent`).
    pub fn unlisted(scope: &Scope) -> ChildCache {
        let (_tx, ready) = watch::channel(0);
        ChildCache {
            services: Kind::new(scope),
            policies: Kind::new(scope),
            scaled: Kind::new(scope),
            keda: Arc::default(),
            keda_applied: Arc::default(),
            ready,
        }
    }

    fn kind(&self, kind: ChildKind) -> &Kind {
        match kind {
            ChildKind::Service => &self.services,
            ChildKind::NetworkPolicy => &self.policies,
            ChildKind::ScaledObject => &self.scaled,
        }
    }

    /// Waits until the Service and NetworkPolicy watches have listed once.
    pub async fn wait_ready(&self) -> Result<(), watch::error::RecvError> {
        let n = self.services.shards.len() + self.policies.shards.len();
        let mut rx = self.ready.clone();
        rx.wait_for(|listed| *listed >= n).await.map(|_| ())
    }

    /// The model's Services (by instance label), or `None` before the first list.
    pub fn services_of(&self, ns: &str, model: &str) -> Option<Vec<Child>> {
        let k = (ns.to_string(), model.to_string());
        self.services.with(ns, |s| {
            s.listed.then(|| {
                s.by_model
                    .get(&k)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| s.objects.get(&(ns.to_string(), n.clone())).cloned())
                    .collect()
            })
        })?
    }

    /// One Service by name (a model's front has no instance label: controller/apply/front.rs).
    pub fn service(&self, ns: &str, name: &str) -> Seen {
        self.services.get(ns, name)
    }

    pub fn network_policy(&self, ns: &str, name: &str) -> Seen {
        self.policies.get(ns, name)
    }

    pub fn scaled_object(&self, ns: &str, name: &str) -> Seen {
        if !self.keda.load(Ordering::Relaxed) {
            if self.keda_applied.load(Ordering::Relaxed) {
                return Seen::Unknown;
            }
            return Seen::Absent;
        }
        self.scaled.get(ns, name)
    }

    /// Writes through an object the operator applied (the API server's answer), so the
    /// next reconcile does not apply it again before the watch shows it.
    pub fn applied(&self, kind: ChildKind, meta: &ObjectMeta) {
        if kind == ChildKind::ScaledObject {
            self.keda_applied.store(true, Ordering::Relaxed);
        }
        let child = Child::from_meta(meta);
        let ns = child.namespace.clone();
        self.kind(kind).with_mut(&ns, |s| {
            if s.listed {
                s.insert(child);
            }
        });
    }

    /// Writes through an object the operator deleted.
    pub fn deleted(&self, kind: ChildKind, ns: &str, name: &str) {
        let k = (ns.to_string(), name.to_string());
        self.kind(kind).with_mut(ns, |s| s.remove(&k));
    }

    /// A cache holding `objects`, every kind listed and KEDA served (unit tests).
    #[cfg(test)]
    pub fn listed(objects: Vec<(ChildKind, ObjectMeta)>) -> ChildCache {
        let c = ChildCache::unlisted(&Scope::All);
        c.keda.store(true, Ordering::Relaxed);
        for kind in [
            ChildKind::Service,
            ChildKind::NetworkPolicy,
            ChildKind::ScaledObject,
        ] {
            let of_kind = objects
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, m)| Child::from_meta(m))
                .collect();
            c.kind(kind).with_mut("", |s| s.relist(of_kind));
        }
        c
    }
}

fn selector() -> watcher::Config {
    crate::controller::cache::watch::config().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGER
    ))
}

/// Applies a watch's events to shard `i` until the stream ends (`None`) or yields an
/// error (returned). Forwards the models whose children others changed.
async fn follow<K, S>(
    stream: &mut Pin<&mut S>,
    kind: &Kind,
    i: usize,
    tx: &mpsc::Sender<ObjectRef<DeepSeekModel>>,
    on_listed: &mut (dyn FnMut() + Send),
) -> Option<watcher::Error>
where
    S: Stream<Item = Result<Change<PartialObjectMeta<K>>, watcher::Error>>,
{
    while let Some(change) = stream.next().await {
        let touched: Vec<ObjectRef<DeepSeekModel>> = match change {
            Err(e) => return Some(e),
            Ok(Change::Listed(objects)) => {
                let listed = objects
                    .iter()
                    .map(|o| Child::from_meta(&o.metadata))
                    .collect();
                let touched = match kind.shards[i].write() {
                    Ok(mut s) => s.relist(listed),
                    Err(_) => Vec::new(),
                };
                on_listed();
                touched
            }
            Ok(Change::Applied(o)) => {
                let child = Child::from_meta(&o.metadata);
                let model = child.model();
                let changed = kind.shards[i].write().is_ok_and(|mut s| s.insert(child));
                model.filter(|_| changed).into_iter().collect()
            }
            Ok(Change::Deleted(o)) => {
                let k = Child::from_meta(&o.metadata).key();
                let gone = kind.shards[i].write().ok().and_then(|mut s| s.remove(&k));
                gone.as_ref().and_then(Child::model).into_iter().collect()
            }
        };
        // The shard is updated first, so the reconcile this wakes reads the change.
        for m in touched {
            let _ = tx.send(m).await;
        }
    }
    None
}

/// Starts the watches: Services and NetworkPolicies per scope `Api`, ScaledObjects once
/// KEDA's API is served. Returns the cache and, per scope `Api` (the controllers' order),
/// the models whose children others changed.
pub fn watch_children(client: &Client, scope: &Scope) -> (ChildCache, Vec<ChildEvents>) {
    let (ready_tx, ready) = watch::channel(0usize);
    let ready_tx = Arc::new(ready_tx);
    let mut cache = ChildCache::unlisted(scope);
    cache.ready = ready;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..cache.services.shards.len() {
        // Enough for a relist's burst; the watch waits beyond it.
        let (tx, rx) = mpsc::channel(1024);
        senders.push(tx);
        receivers.push(rx);
    }
    spawn_typed::<Service>(client, scope, &cache.services, &senders, &ready_tx);
    spawn_typed::<NetworkPolicy>(client, scope, &cache.policies, &senders, &ready_tx);
    tokio::spawn(watch_scaled_objects(
        client.clone(),
        scope.clone(),
        cache.clone(),
        senders,
    ));
    (cache, receivers)
}

/// One metadata watch of `K` per scope `Api`, each counted in `ready_tx` once listed.
fn spawn_typed<K>(
    client: &Client,
    scope: &Scope,
    kind: &Kind,
    senders: &[mpsc::Sender<ObjectRef<DeepSeekModel>>],
    ready_tx: &Arc<watch::Sender<usize>>,
) where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // `Api<PartialObjectMeta<K>>` asks for metadata only.
    for (i, api) in scope
        .apis::<PartialObjectMeta<K>>(client)
        .into_iter()
        .enumerate()
    {
        let (kind, tx, ready_tx) = (kind.clone(), senders[i].clone(), ready_tx.clone());
        tokio::spawn(async move {
            let stream = changes(watcher(api, selector()).backoff(super::watch::backoff()));
            let mut stream = std::pin::pin!(stream);
            let mut once = Some(());
            let mut on_listed = || {
                if once.take().is_some() {
                    ready_tx.send_modify(|n| *n += 1);
                }
            };
            while let Some(e) = follow(&mut stream, &kind, i, &tx, &mut on_listed).await {
                tracing::warn!(kind = %K::kind(&()), error = %e, "child watch error");
            }
        });
    }
}

fn keda_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk(keda::GROUP, keda::VERSION, keda::KIND)
}

async fn keda_served(client: &Client) -> bool {
    kube::discovery::pinned_kind(client, &keda_gvk())
        .await
        .is_ok()
}

/// Looks for KEDA's API, watches ScaledObjects while it is served, and starts over when
/// it goes away. Ends when every controller is gone.
async fn watch_scaled_objects(
    client: Client,
    scope: Scope,
    cache: ChildCache,
    senders: Vec<mpsc::Sender<ObjectRef<DeepSeekModel>>>,
) {
    let closed = || senders.iter().all(|s| s.is_closed());
    loop {
        while !keda_served(&client).await {
            tokio::time::sleep(RECHECK).await;
            if closed() {
                return;
            }
        }
        tracing::info!("KEDA's ScaledObject API found: caching the operator's ScaledObjects");
        cache.keda.store(true, Ordering::Relaxed);
        let resource = keda::api_resource();
        let apis: Vec<Api<PartialObjectMeta<DynamicObject>>> = match &scope {
            Scope::All => vec![Api::all_with(client.clone(), &resource)],
            Scope::Namespaces(ns) => ns
                .iter()
                .map(|n| Api::namespaced_with(client.clone(), n, &resource))
                .collect(),
        };
        let watches = apis.into_iter().enumerate().map(|(i, api)| {
            let (client, kind, tx) = (client.clone(), cache.scaled.clone(), senders[i].clone());
            async move {
                let stream = changes(
                    watcher(api, selector()).backoff(super::watch::backoff()),
                );
                let mut stream = std::pin::pin!(stream);
                while let Some(e) = follow(&mut stream, &kind, i, &tx, &mut || {}).await {
                    if !keda_served(&client).await {
                        return;
                    }
                    tracing::warn!(error = %e, "ScaledObject watch error (RBAC: scaledobjects list/watch?)");
                }
            }
        });
        futures::future::join_all(watches).await;
        // Ended: the API went away (or every controller is gone).
        cache.keda.store(false, Ordering::Relaxed);
        cache.keda_applied.store(false, Ordering::Relaxed);
        cache.scaled.unlist();
        if closed() {
            return;
        }
        tracing::info!("KEDA's ScaledObject API is gone");
    }
}

#[cfg(test)]
#[path = "children_tests.rs"]
mod tests;

//! `deepseek-operator run`: wires watches, the Node cache, leader election and the HTTP
//! endpoints around the reconciler, and shuts down gracefully on SIGTERM.
//!
//! In namespaced mode (`--namespaces a,b`) one controller runs per namespace, each
//! watching models, pods and services of its namespace only; they share the context, the
//! Node cache and the shutdown. Simpler than merging namespaced streams into one
//! controller, and each namespace's watches need only that namespace's Role.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use deepseek_planner::Catalog;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{
    controller, predicates, reflector, reflector::ObjectRef, watcher, Controller, Predicate,
    WatchStreamExt,
};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use crate::api::DeepSeekModel;
use crate::config::OperatorConfig;
use crate::controller::cache::children;
use crate::controller::cache::nodes;
use crate::controller::cache::pods;
use crate::controller::context::Context;
use crate::controller::http::{self, HttpState};
use crate::controller::leader::{self, LeaderOptions};
use crate::controller::metrics::Metrics;
use crate::controller::reconcile::{error_policy, reconcile};
use crate::controller::scope::Scope;
use crate::desired::labels;

/// What wakes a model's reconcile: its spec (`metadata.generation`), labels and
/// annotations (the KEDA query annotation is read by the reconcile). Not status: every
/// status write (the autoscaler's, the reconcile's own) used to cost a full reconcile.
pub fn reconcile_trigger(m: &DeepSeekModel) -> Option<u64> {
    predicates::generation
        .combine(predicates::labels)
        .combine(predicates::annotations)
        .hash_property(m)
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config_file: Option<String>,
    pub metrics_bind: SocketAddr,
    pub leader_election: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration_seconds: u64,
    /// The namespaces to watch.
    pub scope: Scope,
    /// Reconciles running at once per controller (`--reconcile-concurrency`): bounded,
    /// as a pool change re-plans every model at once.
    pub reconcile_concurrency: u16,
}

fn load_config(path: Option<&str>) -> anyhow::Result<OperatorConfig> {
    match path {
        None => Ok(OperatorConfig::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("failed to read config {p}"))?;
            OperatorConfig::from_yaml(&text).map_err(anyhow::Error::msg)
        }
    }
}

fn load_catalog(cfg: &OperatorConfig) -> anyhow::Result<Catalog> {
    let read = |p: &Option<String>| -> anyhow::Result<Option<String>> {
        p.as_ref()
            .map(|p| {
                std::fs::read_to_string(p).with_context(|| format!("failed to read catalog {p}"))
            })
            .transpose()
    };
    let models = read(&cfg.catalog_models_file)?;
    let accels = read(&cfg.catalog_accelerators_file)?;
    Catalog::from_yaml(models.as_deref(), accels.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let config = Arc::new(load_config(opts.config_file.as_deref())?);
    let catalog = Arc::new(load_catalog(&config)?);
    let client = Client::try_default()
        .await
        .context("failed to build a Kubernetes client")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    http::serve(
        opts.metrics_bind,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    )
    .await
    .with_context(|| format!("failed to bind {}", opts.metrics_bind))?;
    tracing::info!(addr = %opts.metrics_bind, "serving /healthz, /readyz and /metrics");
    crate::controller::heap_trim::spawn(crate::controller::heap_trim::PERIOD);

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let shutdown = move || {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let mut leadership = None;
    if opts.leader_election {
        // A standby is healthy and ready; it just does not reconcile.
        ready.store(true, Ordering::Relaxed);
        let mut rx = leader::elect(
            client.clone(),
            LeaderOptions {
                namespace: opts.lease_namespace.clone(),
                lease_name: opts.lease_name.clone(),
                identity: opts.identity.clone(),
                timing: leader::Timing::from_seconds(opts.lease_duration_seconds)
                    .map_err(anyhow::Error::msg)?,
            },
        )
        .await
        .context("failed to start leader election")?;
        tracing::info!(identity = %opts.identity, "waiting for the leader lease");
        loop {
            if *rx.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { anyhow::bail!("leader election stopped") },
                _ = shutdown() => return Ok(()),
            }
        }
        tracing::info!(identity = %opts.identity, "acquired the leader lease");
        metrics.leader.set(1);
        leadership = Some(rx);
    } else {
        metrics.leader.set(1);
    }

    // Nodes: cached and grouped into pools; a change of pools re-plans every model.
    let (trigger_tx, trigger_rx) = mpsc::channel::<()>(16);
    let (lost_tx, mut lost_rx) = mpsc::channel::<String>(1024);
    let (node_reader, mut pools) = nodes::watch_nodes(
        client.clone(),
        catalog.clone(),
        config.clone(),
        trigger_tx,
        lost_tx,
    );
    pools
        .changed()
        .await
        .context("the node watch stopped before listing the nodes")?;
    // Pods: one cache the reconcile and the autoscaler read (cache/pods.rs); reconciles
    // start only once it has listed, so an empty cache is never mistaken for no pods.
    let (pod_cache, mut pod_events) = pods::watch_pods(opts.scope.apis::<Pod>(&client));
    pod_cache
        .wait_ready()
        .await
        .context("the pod watch stopped before listing the pods")?;
    // Services, NetworkPolicies and ScaledObjects: read from the child cache, not per
    // reconcile from the API server (cache/children.rs); like pods, listed before reconciles.
    let (children, mut child_events) = children::watch_children(&client, &opts.scope);
    children
        .wait_ready()
        .await
        .context("the Service and NetworkPolicy watches stopped before listing")?;
    ready.store(true, Ordering::Relaxed);

    // A lagging receiver loses wake-ups; every model is still rechecked by its own requeue.
    let (wake, _) = tokio::sync::broadcast::channel(1024);
    let memory = crate::controller::memory::Memory::reporting_to(metrics.remembered_models.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        catalog,
        config,
        nodes: node_reader,
        pods: pod_cache,
        pools,
        metrics,
        events: crate::controller::events::EventWriter::new(
            client.clone(),
            labels::MANAGER,
            &opts.identity,
        ),
        scope: opts.scope.clone(),
        wake,
        children,
        memory,
    });

    // Losing the lease (or passing the renew deadline) ends `run` at once, with no
    // graceful shutdown: an in-flight reconcile must not get to write (leader.rs).
    let lost = async move {
        match leadership {
            Some(mut rx) => {
                let _ = rx.wait_for(|leading| !*leading).await;
            }
            None => futures::future::pending::<()>().await,
        }
    };
    let stop = shutdown();
    tracing::info!(scope = %opts.scope.describe(), "watching models");
    let stop = stop.shared();
    let models = opts.scope.apis::<DeepSeekModel>(&client);
    let deployments = opts.scope.apis::<Deployment>(&client);
    let owned = crate::controller::cache::watch::config().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGER
    ));
    // A change of pools re-plans every model of every controller.
    let mut triggers = Vec::new();
    let mut controllers = Vec::new();
    let mut stores = Vec::new();
    for (models, deployments) in models.into_iter().zip(deployments) {
        // The pod and child caches' watches come in the same namespace order as `models`.
        let pods = tokio_stream::wrappers::ReceiverStream::new(pod_events.remove(0));
        let children = tokio_stream::wrappers::ReceiverStream::new(child_events.remove(0));
        let (tx, rx) = mpsc::channel::<()>(16);
        triggers.push(tx);
        // The store sees every change (the autoscaler reads it); reconciles are triggered
        // only by what `reconcile_trigger` hashes, not by status writes.
        let writer = reflector::store::Writer::<DeepSeekModel>::default();
        let store = writer.as_reader();
        stores.push(store.clone());
        // managedFields are most of a cached model's size and nothing here reads them.
        let changes = watcher(models, crate::controller::cache::watch::config())
            .modify(|m| m.metadata.managed_fields = None)
            .backoff(crate::controller::cache::watch::backoff())
            .reflect(writer)
            .inspect_ok(forget_deleted(ctx.clone()))
            .applied_objects()
            .predicate_filter(reconcile_trigger, Default::default());
        controllers.push(
            Controller::for_stream(changes, store)
                .trigger_backoff(crate::controller::cache::watch::backoff())
                .with_config(
                    controller::Config::default().concurrency(opts.reconcile_concurrency.max(1)),
                )
                .owns_stream(pods)
                .reconcile_on(children)
                // The router of a disaggregated model.
                .owns(deployments, owned.clone())
                .reconcile_on(
                    tokio_stream::wrappers::BroadcastStream::new(ctx.wake.subscribe())
                        .filter_map(|r| futures::future::ready(r.ok())),
                )
                .reconcile_all_on(tokio_stream::wrappers::ReceiverStream::new(rx))
                .graceful_shutdown_on(stop.clone())
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|res| async move {
                    match res {
                        Ok((obj, _)) => tracing::debug!(model = %obj.name, "reconciled"),
                        Err(e) => tracing::debug!(error = %e, "reconcile error"),
                    }
                })
                .boxed(),
        );
    }
    let sweep = tokio::spawn(sweep_memory(ctx.clone(), stores.clone()));
    // The built-in autoscaler runs only here, on the leader, until the process ends.
    let autoscaler = tokio::spawn(crate::autoscale::run(ctx.clone(), stores));
    // A node lost or back: the models with pods on it judge their groups now.
    let wake_ctx = ctx.clone();
    let lost_nodes = tokio::spawn(async move {
        while let Some(node) = lost_rx.recv().await {
            for (ns, model) in wake_ctx.pods.models_on(&node) {
                let _ = wake_ctx
                    .wake
                    .send(ObjectRef::<DeepSeekModel>::new(&model).within(&ns));
            }
        }
    });
    let fan_out = tokio::spawn(async move {
        let mut rx = trigger_rx;
        while rx.recv().await.is_some() {
            for tx in &triggers {
                let _ = tx.try_send(());
            }
        }
    });
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = lost => {
            anyhow::bail!("lost the leader lease (or could not renew it in time); exiting so a fresh standby takes over");
        }
    }
    fan_out.abort();
    lost_nodes.abort();
    autoscaler.abort();
    sweep.abort();
    tracing::info!("shut down");
    Ok(())
}

/// Drops a deleted model's memory (memory.rs) when its deletion event arrives.
fn forget_deleted(ctx: Arc<Context>) -> impl FnMut(&watcher::Event<DeepSeekModel>) {
    move |event| {
        if let watcher::Event::Delete(model) = event {
            if let Some(uid) = model.uid() {
                ctx.memory.forget(&uid);
            }
        }
    }
}

/// Every `memory::SWEEP`, drops the memory of models the model caches no longer hold: a
/// relist reports no deletion event, and a pass that ended after one remembered again.
async fn sweep_memory(ctx: Arc<Context>, stores: Vec<reflector::Store<DeepSeekModel>>) {
    let mut tick = tokio::time::interval(crate::controller::memory::SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let listed_at = std::time::Instant::now();
        let live = stores
            .iter()
            .flat_map(|s| s.state())
            .filter_map(|m| m.uid())
            .collect();
        ctx.memory.keep_only(&live, listed_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(generation: i64, queue: u32, label: &str) -> DeepSeekModel {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "inference.deepseek-operator.dev/v1alpha1",
            "kind": "DeepSeekModel",
            "metadata": {"name": "m", "generation": generation, "labels": {"team": label}},
            "spec": {"model": "deepseek-r1"},
            "status": {"queueDepth": queue},
        }))
        .expect("model")
    }

    #[test]
    fn status_writes_do_not_wake_the_reconcile_but_spec_and_labels_do() {
        let base = reconcile_trigger(&model(1, 0, "a"));
        assert!(base.is_some());
        assert_eq!(reconcile_trigger(&model(1, 7, "a")), base, "status only");
        assert_ne!(reconcile_trigger(&model(2, 0, "a")), base, "spec change");
        assert_ne!(reconcile_trigger(&model(1, 0, "b")), base, "label change");
    }
}

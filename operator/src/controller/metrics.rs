//! Prometheus metrics of the operator itself: reconciles, errors by kind, reconcile
//! duration, API writes, and per-model desired/ready replicas and queue depth.
//!
//! Per-model series must go when the model goes. The controller is not called for a
//! deleted object (and the operator uses no finalizer just for this), so each per-model
//! family remembers when each label set was last set, and the autoscaler loop, which lists
//! the models every tick, drops the series of models no longer listed
//! ([`Metrics::forget_models`]).

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub namespace: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub verb: String,
    pub resource: String,
}

/// A per-model metric family that remembers when each model's series was last set.
pub struct ModelFamily<M> {
    family: Family<ModelLabels, M>,
    touched: Mutex<HashMap<ModelLabels, Instant>>,
}

impl<M: Default> ModelFamily<M> {
    fn new() -> Self {
        ModelFamily {
            family: Family::default(),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// The model's series, created if needed (same use as `Family::get_or_create`).
    pub fn get_or_create(&self, labels: &ModelLabels) -> impl Deref<Target = M> + '_ {
        if let Ok(mut t) = self.touched.lock() {
            t.insert(labels.clone(), Instant::now());
        }
        self.family.get_or_create(labels)
    }

    /// Removes the series of models not in `live`, except those set at or after `listed_at`
    /// (a model created after the list was taken). Returns how many were removed.
    fn forget(&self, live: &HashSet<ModelLabels>, listed_at: Instant) -> usize {
        let Ok(mut touched) = self.touched.lock() else {
            return 0;
        };
        let gone: Vec<ModelLabels> = touched
            .iter()
            .filter(|(l, at)| !live.contains(*l) && **at < listed_at)
            .map(|(l, _)| l.clone())
            .collect();
        for l in &gone {
            touched.remove(l);
            self.family.remove(l);
        }
        gone.len()
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub writes: Family<WriteLabels, Counter>,
    pub desired_replicas: ModelFamily<Gauge>,
    pub ready_replicas: ModelFamily<Gauge>,
    pub queue_depth: ModelFamily<Gauge<f64, AtomicU64>>,
    pub leader: Gauge,
    /// Reconciles that read the model's pods from the API server because they would delete.
    pub fresh_reads: Counter,
    /// Models the controller holds a memory of (memory.rs): follows the models, never
    /// grows with deleted ones.
    pub remembered_models: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("deepseek_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let writes = Family::<WriteLabels, Counter>::default();
        let desired_replicas = ModelFamily::<Gauge>::new();
        let ready_replicas = ModelFamily::<Gauge>::new();
        let queue_depth = ModelFamily::<Gauge<f64, AtomicU64>>::new();
        let leader = Gauge::default();
        let fresh_reads = Counter::default();
        let remembered_models = Gauge::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests sent to the API server",
            writes.clone(),
        );
        registry.register(
            "desired_replicas",
            "Desired replica groups per model",
            desired_replicas.family.clone(),
        );
        registry.register(
            "ready_replicas",
            "Ready replica groups per model",
            ready_replicas.family.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued + running requests per model",
            queue_depth.family.clone(),
        );
        registry.register(
            "reconcile_fresh_pod_reads",
            "Reconciles that listed the model's pods from the API server before deleting",
            fresh_reads.clone(),
        );
        registry.register(
            "remembered_models",
            "Models the controller remembers between passes (backoffs, expectations, status memo)",
            remembered_models.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            writes,
            desired_replicas,
            ready_replicas,
            queue_depth,
            leader,
            fresh_reads,
            remembered_models,
        }
    }
}

impl Metrics {
    pub fn write(&self, verb: &str, resource: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .inc();
    }

    /// Drops the per-model series of every model not in `live` (the models listed at
    /// `listed_at`); returns how many series were removed.
    pub fn forget_models(&self, live: &HashSet<ModelLabels>, listed_at: Instant) -> usize {
        self.desired_replicas.forget(live, listed_at)
            + self.ready_replicas.forget(live, listed_at)
            + self.queue_depth.forget(live, listed_at)
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records the reconcile duration when dropped, so early returns are measured too.
pub struct Timer {
    start: Instant,
    metrics: Arc<Metrics>,
}

impl Timer {
    pub fn start(metrics: Arc<Metrics>) -> Self {
        metrics.reconciles.inc();
        Timer {
            start: Instant::now(),
            metrics,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ns: &str, model: &str) -> ModelLabels {
        ModelLabels {
            namespace: ns.into(),
            model: model.into(),
        }
    }

    fn series_of(text: &str, model: &str) -> usize {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("model=\"{model}\"")))
            .count()
    }

    #[test]
    fn a_deleted_models_series_are_removed() {
        let m = Metrics::default();
        for name in ["kept", "deleted"] {
            m.desired_replicas.get_or_create(&labels("a", name)).set(2);
            m.ready_replicas.get_or_create(&labels("a", name)).set(1);
            m.queue_depth.get_or_create(&labels("a", name)).set(3.0);
        }
        let text = m.encode();
        assert_eq!(series_of(&text, "kept"), 3, "{text}");
        assert_eq!(series_of(&text, "deleted"), 3, "{text}");

        let listed_at = Instant::now();
        let live = HashSet::from([labels("a", "kept")]);
        assert_eq!(m.forget_models(&live, listed_at), 3);
        let text = m.encode();
        assert_eq!(series_of(&text, "kept"), 3, "{text}");
        assert_eq!(series_of(&text, "deleted"), 0, "{text}");
        // Nothing left to remove: a second pass is a no-op.
        assert_eq!(m.forget_models(&live, Instant::now()), 0);
    }

    #[test]
    fn a_series_set_after_the_list_is_kept() {
        let m = Metrics::default();
        let listed_at = Instant::now();
        // A model created (and reconciled) after the autoscaler listed the models.
        m.desired_replicas.get_or_create(&labels("a", "new")).set(1);
        assert_eq!(m.forget_models(&HashSet::new(), listed_at), 0);
        assert_eq!(series_of(&m.encode(), "new"), 1);
        // The next pass, whose list still lacks it, removes it.
        assert_eq!(m.forget_models(&HashSet::new(), Instant::now()), 1);
    }
}

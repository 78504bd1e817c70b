//! Prometheus metrics of the operator itself: reconciles, errors by kind, reconcile
//! duration, API writes, and per-model desired/ready replicas.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
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

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub writes: Family<WriteLabels, Counter>,
    pub desired_replicas: Family<ModelLabels, Gauge>,
    pub ready_replicas: Family<ModelLabels, Gauge>,
    pub queue_depth: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("deepseek_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let writes = Family::<WriteLabels, Counter>::default();
        let desired_replicas = Family::<ModelLabels, Gauge>::default();
        let ready_replicas = Family::<ModelLabels, Gauge>::default();
        let queue_depth = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
        let leader = Gauge::default();
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
            desired_replicas.clone(),
        );
        registry.register(
            "ready_replicas",
            "Ready replica groups per model",
            ready_replicas.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued + running requests per model",
            queue_depth.clone(),
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

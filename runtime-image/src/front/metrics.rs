//! The front's Prometheus series (prometheus-client, as the operator's): the held count
//! is what the operator reads to scale from zero at once, like a queue depth.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a request got 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The hold queue was full.
    QueueFull,
    /// It waited its whole bound with no group ready.
    WaitExpired,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::WaitExpired => "wait_expired",
        }
    }
}

type ByLabel = Family<Vec<(&'static str, String)>, Counter>;
type GaugeByLabel = Family<Vec<(&'static str, String)>, Gauge>;

/// Handles to every series (cheap clones of shared atomics).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Requests held now, waiting for a ready group.
    pub held: Gauge,
    /// Requests ever held.
    pub held_total: Counter,
    pub refused: ByLabel,
    pub forwarded: Counter,
    pub ready_backends: Gauge,
    outstanding: GaugeByLabel,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Arc::default(),
            held: Gauge::default(),
            held_total: Counter::default(),
            refused: ByLabel::default(),
            forwarded: Counter::default(),
            ready_backends: Gauge::default(),
            outstanding: GaugeByLabel::default(),
        };
        r.register(
            "dso_front_held_requests",
            "Requests held now, waiting for a ready replica group",
            m.held.clone(),
        );
        r.register(
            "dso_front_held_requests_seen",
            "Requests that had to be held (no group was ready when they arrived)",
            m.held_total.clone(),
        );
        r.register(
            "dso_front_refused",
            "Requests answered 503 with Retry-After, by reason (queue_full, wait_expired)",
            m.refused.clone(),
        );
        r.register(
            "dso_front_forwarded",
            "Requests forwarded to a replica group",
            m.forwarded.clone(),
        );
        r.register(
            "dso_front_ready_backends",
            "Replica groups ready to take requests",
            m.ready_backends.clone(),
        );
        r.register(
            "dso_front_outstanding_requests",
            "Requests forwarded to a group and not yet fully answered",
            m.outstanding.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = r;
        m
    }
}

impl Metrics {
    pub fn refuse(&self, why: Refusal) {
        self.refused
            .get_or_create(&vec![("reason", why.label().to_string())])
            .inc();
    }

    pub fn outstanding(&self, backend: &str) -> Gauge {
        self.outstanding
            .get_or_create(&vec![("backend", backend.to_string())])
            .clone()
    }

    pub fn forget_backend(&self, backend: &str) {
        self.outstanding
            .remove(&vec![("backend", backend.to_string())]);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = encode(&mut out, &r) {
            tracing::warn!("front: encoding metrics: {e}");
        }
        out
    }
}

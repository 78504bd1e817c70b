//! The sim's scheduler and token-timing model: a bounded running batch (further requests
//! queue), prefill at `prefill_tokens_per_s`, decode at `decode_tokens_per_s` per request,
//! all durations multiplied by `time_scale` (0 = no delays, for benchmarks).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deepseek_engine::SimProfile;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Static settings of one sim engine.
#[derive(Clone, Debug)]
pub struct SimSettings {
    pub served_model_name: String,
    pub max_model_len: u32,
    pub profile: SimProfile,
    pub time_scale: f64,
    /// Set when this server is one role of a prefill/decode-disaggregated model.
    pub pd_role: Option<deepseek_engine::PdRole>,
    /// Stands in for weight loading: the engine is unhealthy and refuses generation
    /// requests (503) for this long after it starts (zero: ready at once).
    pub load_delay: Duration,
}

/// Live counters, shared by request handlers and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub waiting: AtomicU64,
    pub running: AtomicU64,
    pub kv_tokens: AtomicU64,
    pub prompt_tokens_total: AtomicU64,
    pub generation_tokens_total: AtomicU64,
    pub requests_total: AtomicU64,
}

/// Whether the sim takes requests: a drain refuses new ones with 503 while the accepted
/// ones finish; a multi-node sim is healthy only while every rank is linked.
#[derive(Debug)]
pub struct Gate {
    draining: AtomicBool,
    linked: AtomicBool,
    /// False until the simulated weight loading (`SimSettings::load_delay`) is over.
    loaded: AtomicBool,
    /// Accepted generation requests not yet fully answered (streams until `[DONE]`).
    in_flight: AtomicU64,
}

impl Gate {
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// From now on new generation requests get 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn set_linked(&self, linked: bool) {
        self.linked.store(linked, Ordering::SeqCst);
    }

    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::SeqCst);
    }

    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// `/health`: weights loaded, every rank linked, not draining.
    pub fn healthy(&self) -> bool {
        self.loaded() && self.linked.load(Ordering::SeqCst) && !self.draining()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// One accepted request; dropping it (answer complete or client gone) releases it.
pub struct Admission(Arc<SimModel>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The sim engine's state.
pub struct SimModel {
    pub settings: SimSettings,
    pub counters: Counters,
    pub gate: Gate,
    /// Prefill role: KV caches computed and not yet taken by decode.
    pub rooms: Arc<super::pd::Rooms>,
    /// Decode role: fetches KV caches from prefill servers' bootstrap endpoints.
    pub client: reqwest::Client,
    slots: Semaphore,
}

impl SimModel {
    pub fn new(settings: SimSettings) -> Arc<Self> {
        let slots = settings.profile.max_running.max(1) as usize;
        let loaded = settings.load_delay.is_zero();
        Arc::new(SimModel {
            settings,
            counters: Counters::default(),
            gate: Gate {
                draining: AtomicBool::new(false),
                linked: AtomicBool::new(true),
                loaded: AtomicBool::new(loaded),
                in_flight: AtomicU64::new(0),
            },
            rooms: Arc::default(),
            client: reqwest::Client::new(),
            slots: Semaphore::new(slots),
        })
    }

    /// Counts the caller as waiting until the guard drops (decode waiting for its KV).
    pub fn waiting_guard(&self) -> impl Drop + '_ {
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        Gauge(&self.counters.waiting)
    }

    /// Accepts a new request unless a drain has begun. Counting before looking at the
    /// drain flag (both sequentially consistent) means a drain that sees no request in
    /// flight can never miss one that was let in.
    pub fn try_admit_request(self: &Arc<Self>) -> Option<Admission> {
        self.gate.in_flight.fetch_add(1, Ordering::SeqCst);
        let admission = Admission(self.clone());
        (!self.gate.draining()).then_some(admission)
    }

    /// KV cache capacity in tokens: every batch slot can hold a full context.
    pub fn kv_capacity(&self) -> u64 {
        u64::from(self.settings.profile.max_running.max(1))
            * u64::from(self.settings.max_model_len.max(1))
    }

    /// KV cache in use, 0-1.
    pub fn kv_usage(&self) -> f64 {
        let used = self.counters.kv_tokens.load(Ordering::Relaxed) as f64;
        (used / self.kv_capacity() as f64).clamp(0.0, 1.0)
    }

    /// Waits for a batch slot (counted as waiting meanwhile), then prefills the prompt.
    pub async fn admit(&self, prompt_tokens: u64) -> Running<'_> {
        self.admit_as(prompt_tokens, true).await
    }

    /// `admit`, with the prefill pause only when `prefill` (a decode server received the
    /// prompt's KV from prefill instead of computing it).
    pub async fn admit_as(&self, prompt_tokens: u64, prefill: bool) -> Running<'_> {
        let c = &self.counters;
        c.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Gauge(&c.waiting);
        // The semaphore is never closed, so acquire only fails if it were.
        let permit = self.slots.acquire().await.ok();
        drop(waiting);
        c.running.fetch_add(1, Ordering::Relaxed);
        c.kv_tokens.fetch_add(prompt_tokens, Ordering::Relaxed);
        if prefill {
            c.prompt_tokens_total
                .fetch_add(prompt_tokens, Ordering::Relaxed);
        }
        let run = Running {
            model: self,
            _permit: permit,
            kv_held: prompt_tokens,
        };
        if prefill {
            self.pause(prompt_tokens as f64 / self.settings.profile.prefill_tokens_per_s)
                .await;
        }
        run
    }

    async fn pause(&self, seconds: f64) {
        let s = seconds * self.settings.time_scale;
        if s > 0.0 && s.is_finite() {
            tokio::time::sleep(Duration::from_secs_f64(s)).await;
        }
    }
}

/// Decrements a gauge when dropped (a cancelled request leaves the queue).
struct Gauge<'a>(&'a AtomicU64);

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request in the running batch; dropping it frees the slot and its KV cache.
pub struct Running<'a> {
    model: &'a SimModel,
    _permit: Option<SemaphorePermit<'a>>,
    kv_held: u64,
}

impl Running<'_> {
    /// Generates one token (waits one decode step).
    pub async fn decode_one(&mut self) {
        let m = self.model;
        m.pause(1.0 / m.settings.profile.decode_tokens_per_s).await;
        m.counters.kv_tokens.fetch_add(1, Ordering::Relaxed);
        m.counters
            .generation_tokens_total
            .fetch_add(1, Ordering::Relaxed);
        self.kv_held += 1;
    }

    /// Marks the request finished successfully.
    pub fn finish(self) {
        self.model
            .counters
            .requests_total
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let c = &self.model.counters;
        c.running.fetch_sub(1, Ordering::Relaxed);
        c.kv_tokens.fetch_sub(self.kv_held, Ordering::Relaxed);
    }
}

/// Rough token count of a text (about 4 characters per token, at least 1).
pub fn count_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(max_running: u32) -> Arc<SimModel> {
        SimModel::new(SimSettings {
            served_model_name: "m".into(),
            max_model_len: 100,
            profile: SimProfile {
                prefill_tokens_per_s: 1000.0,
                decode_tokens_per_s: 100.0,
                max_running,
            },
            time_scale: 0.0,
            load_delay: Duration::ZERO,
            pd_role: None,
        })
    }

    #[tokio::test]
    async fn slots_bound_the_batch_and_release_kv() {
        let m = model(1);
        let mut first = m.admit(10).await;
        first.decode_one().await;
        assert_eq!(m.counters.running.load(Ordering::Relaxed), 1);
        assert_eq!(m.counters.kv_tokens.load(Ordering::Relaxed), 11);
        assert!((m.kv_usage() - 0.11).abs() < 1e-9);
        let m2 = m.clone();
        let queued = tokio::spawn(async move {
            let r = m2.admit(5).await;
            r.finish();
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while m.counters.waiting.load(Ordering::Relaxed) != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "request never queued"
            );
            tokio::task::yield_now().await;
        }
        first.finish();
        queued.await.expect("queued request runs");
        assert_eq!(m.counters.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(m.counters.running.load(Ordering::Relaxed), 0);
        assert_eq!(m.counters.kv_tokens.load(Ordering::Relaxed), 0);
        assert_eq!(m.counters.requests_total.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn token_count_is_positive() {
        assert_eq!(count_tokens(""), 1);
        assert_eq!(count_tokens("abcdefgh"), 2);
    }
}

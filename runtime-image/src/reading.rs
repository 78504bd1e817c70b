//! The last reading of the engine, refreshed in the background.
//!
//! Why: the autoscaler reads `/metrics` with a short timeout, and a saturated engine can
//! take seconds to answer its own `/metrics` and `/health`. Reading them inside the
//! request made exactly the busiest leaders time out, so their load counted as missing and
//! nothing scaled up at peak. Now `/metrics` answers at once from memory with the age of
//! the reading (`dso_metrics_age_seconds`), and the autoscaler decides what is stale.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deepseek_engine::metrics::{render_age, render_normalised, EngineLoad, NormalisedMetrics};

/// How often the background task reads the engine.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long one engine read may take before it is abandoned (the reading then ages).
pub const ENGINE_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/metrics` waits for the round it asked for before serving the last one:
/// well inside the autoscaler's scrape timeout.
pub const FRESH_WAIT: Duration = Duration::from_millis(300);

/// What the background task last saw.
#[derive(Default)]
pub struct Readings {
    inner: Mutex<Latest>,
    /// Counts finished rounds, so `/metrics` can wait for the next one.
    rounds: tokio::sync::watch::Sender<u64>,
    /// Wakes the background task for a round ahead of its period.
    pub wake: tokio::sync::Notify,
}

#[derive(Default, Clone, Copy)]
struct Latest {
    /// Group fields (ready, ranks), refreshed every round.
    status: NormalisedMetrics,
    /// The engine's load and when it was read successfully.
    load: Option<(EngineLoad, Instant)>,
}

impl Readings {
    /// Records one round: the group's status, and the engine's load when it answered.
    pub fn record(&self, status: NormalisedMetrics, load: Option<EngineLoad>, at: Instant) {
        let mut l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        l.status = status;
        l.status.engine_up = load.is_some();
        if let Some(load) = load {
            l.load = Some((load, at));
        }
        drop(l);
        self.rounds.send_modify(|n| *n += 1);
    }

    /// The number of rounds finished so far.
    pub fn round(&self) -> u64 {
        *self.rounds.borrow()
    }

    /// Resolves once a round after `seen` has finished.
    pub async fn after_round(&self, seen: u64) {
        let mut rx = self.rounds.subscribe();
        let _ = rx.wait_for(|n| *n > seen).await;
    }

    /// The launcher's `/metrics` text at `now`: the last load with its age; no load (and
    /// no age) before the engine first answered.
    pub fn render(&self, now: Instant) -> String {
        let l = *self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = l.status;
        match l.load {
            Some((load, at)) => {
                m.load = load;
                let age = now.saturating_duration_since(at).as_secs_f64();
                render_normalised(&m) + &render_age(age)
            }
            None => render_normalised(&m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepseek_engine::metrics::{parse_age, parse_normalised};

    #[test]
    fn serves_the_last_load_with_its_age_after_the_engine_stops_answering() {
        let r = Readings::default();
        let t0 = Instant::now();
        assert_eq!(parse_normalised(&r.render(t0)).load.queue_depth, None);
        assert_eq!(parse_age(&r.render(t0)), None);
        let load = EngineLoad {
            queue_depth: Some(7.0),
            running: Some(3.0),
            kv_cache_usage: None,
        };
        r.record(NormalisedMetrics::default(), Some(load), t0);
        r.record(
            NormalisedMetrics::default(),
            None,
            t0 + Duration::from_secs(4),
        );
        let text = r.render(t0 + Duration::from_secs(6));
        let m = parse_normalised(&text);
        assert_eq!(m.load.queue_depth, Some(7.0));
        assert!(!m.engine_up);
        assert_eq!(parse_age(&text), Some(6.0));
    }
}

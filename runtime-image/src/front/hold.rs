//! The hold queue's bound: at most `limit` requests wait for a ready group at once.
//! A request past the bound is refused at once (503 + Retry-After) rather than queued
//! without limit, so a front with no group never grows without bound.
//! It also keeps the last hold episode's times (when the first request of it was held,
//! when a held request was first sent to a group that then answered it, and when that
//! answer began) for the operator's cold-start timeline.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::gauge::Gauge;

pub struct Hold {
    limit: usize,
    held: Gauge,
    episode: Mutex<Episode>,
}

/// The last hold episode, in seconds since the Unix epoch: it starts when a request is
/// held while none was.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Episode {
    pub held_since: Option<f64>,
    /// When the front picked the group that answered the first held request: the group
    /// was ready by its own probe (the launcher's `/readyz`), which a kubelet may report
    /// as the pod's Ready condition only a probe period later.
    pub group_ready: Option<f64>,
    pub first_answer: Option<f64>,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One held request; dropping it (forwarded, refused or the client left) frees its place.
pub struct Held(Gauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Hold {
    /// `held` is the exported gauge, which is also the count the bound is checked on.
    pub fn new(limit: usize, held: Gauge) -> Self {
        Hold {
            limit,
            held,
            episode: Mutex::default(),
        }
    }

    /// A place in the queue, or `None` when `limit` requests are held already.
    pub fn enter(&self) -> Option<Held> {
        // inc returns the count before this request: atomic, so no two take the last place.
        let before = self.held.inc();
        if before >= self.limit as i64 {
            self.held.dec();
            return None;
        }
        if before == 0 {
            let mut e = self.episode.lock().unwrap_or_else(|e| e.into_inner());
            // A new episode, unless the last one's first request is still unanswered.
            if e.held_since.is_none() || e.first_answer.is_some() {
                *e = Episode {
                    held_since: Some(now()),
                    group_ready: None,
                    first_answer: None,
                };
            }
        }
        Some(Held(self.held.clone()))
    }

    /// A request that was held got its answer from a group it was sent to at `picked`
    /// (seconds since the epoch).
    pub fn answered(&self, picked: f64) {
        let mut e = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        if e.held_since.is_some() && e.first_answer.is_none() {
            e.group_ready = Some(picked);
            e.first_answer = Some(now());
        }
    }

    pub fn episode(&self) -> Episode {
        *self.episode.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn held(&self) -> i64 {
        self.held.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_exact_and_places_come_back() {
        let hold = Hold::new(2, Gauge::default());
        let a = hold.enter().expect("first place");
        let b = hold.enter().expect("second place");
        assert!(hold.enter().is_none(), "a third request is over the bound");
        assert_eq!(hold.held(), 2);
        drop(a);
        let c = hold.enter().expect("a freed place is taken again");
        drop((b, c));
        assert_eq!(hold.held(), 0);
        assert!(
            Hold::new(0, Gauge::default()).enter().is_none(),
            "size 0 holds nothing"
        );
    }

    #[test]
    fn an_episode_runs_from_the_first_held_request_to_the_first_answer() {
        let hold = Hold::new(5, Gauge::default());
        assert_eq!(hold.episode(), Episode::default());
        let a = hold.enter().expect("place");
        let e = hold.episode();
        assert!(e.held_since.is_some() && e.first_answer.is_none());
        let b = hold.enter().expect("place");
        assert_eq!(hold.episode(), e, "a second request joins the episode");
        drop((a, b));
        // Held again before any answer (both left): still the same episode.
        let c = hold.enter().expect("place");
        assert_eq!(hold.episode(), e);
        let picked = now();
        hold.answered(picked);
        let done = hold.episode();
        let since = e.held_since.unwrap_or(f64::MAX);
        assert!(done
            .first_answer
            .is_some_and(|t| t >= picked && picked >= since));
        assert_eq!(done.group_ready, Some(picked));
        drop(c);
        hold.answered(now());
        assert_eq!(hold.episode(), done, "only the first answer counts");
        let _d = hold.enter().expect("place");
        assert!(hold.episode().first_answer.is_none(), "a new episode");
    }
}

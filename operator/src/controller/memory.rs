//! What the controller remembers of each model between passes, in one map keyed by the
//! model's uid.
//!
//! A pass reads the model's memory into decide/mod.rs's `Recall` and records what applying the
//! decision met. Each part's meaning and rules stay in its own module; this one only holds
//! them together, so that a model has one entry and that entry goes with the model:
//! - busy_requeue.rs: the requeue of an unconverged model, backing off;
//! - expect.rs: pods created that the pod cache does not show yet;
//! - decide/create_backoff.rs: pod creations the API server refused, and when to try again;
//! - capacity_pending.rs: partly placed groups removed, and when to create them again;
//! - decide/crash_backoff.rs: crashed groups recreated lately;
//! - status_memo.rs: the status written that the model cache may not show yet.
//!
//! A deleted model is never reconciled again, so its entry is dropped by the model watch
//! (run.rs): at once on its deletion event, and by a sweep against the model caches that
//! catches what a relist (no deletion event) or a pass finishing after the deletion left.
//! Everything lives in the operator's process: a restarted operator starts from nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use crate::controller::busy_requeue::BusyRequeue;
use crate::controller::capacity_pending::CapacityRetry;
use crate::controller::expect::Expectations;
use crate::controller::status_memo::StatusMemo;
use crate::decide::crash_backoff::CrashMemory;
use crate::decide::create_backoff::CreationBackoff;

/// How often entries of models that left the model caches are swept.
pub const SWEEP: Duration = Duration::from_secs(60);

/// What the controller remembers of one model.
#[derive(Clone, Debug)]
pub struct Remembered {
    pub busy: BusyRequeue,
    pub expected: Expectations,
    pub creation: CreationBackoff,
    pub capacity: CapacityRetry,
    pub crashes: CrashMemory,
    pub written: StatusMemo,
    /// When a pass last used it: a sweep keeps entries used after its listing.
    touched: Instant,
}

impl Remembered {
    fn new(now: Instant) -> Self {
        Remembered {
            busy: Default::default(),
            expected: Default::default(),
            creation: Default::default(),
            capacity: Default::default(),
            crashes: Default::default(),
            written: Default::default(),
            touched: now,
        }
    }
}

/// Every model's memory, keyed by uid (a model deleted and created again under its name
/// starts from nothing).
#[derive(Default)]
pub struct Memory {
    models: Mutex<HashMap<String, Remembered>>,
    /// How many models are remembered (`deepseek_operator_remembered_models`).
    size: Gauge,
}

impl Memory {
    /// A memory that reports its size to `size`.
    pub fn reporting_to(size: Gauge) -> Self {
        Memory {
            models: Mutex::default(),
            size,
        }
    }

    fn report(&self, len: usize) {
        self.size.set(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// Runs `f` on the model's memory (created empty if there is none). `f` must not
    /// block: every model's pass goes through this lock.
    pub fn with<R>(&self, uid: &str, f: impl FnOnce(&mut Remembered) -> R) -> R {
        // A pass that panicked while holding the lock left at worst one model's memory
        // half-updated, which its next pass corrects: keep going.
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = models
            .entry(uid.to_string())
            .or_insert_with(|| Remembered::new(now));
        entry.touched = now;
        let out = f(entry);
        self.report(models.len());
        out
    }

    /// The model is gone.
    pub fn forget(&self, uid: &str) {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        models.remove(uid);
        self.report(models.len());
    }

    /// Drops the memory of every model not in `live` (the uids the model caches held at
    /// `listed_at`), unless a pass used it after the listing; returns how many went.
    pub fn keep_only(&self, live: &HashSet<String>, listed_at: Instant) -> usize {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        let before = models.len();
        models.retain(|uid, m| live.contains(uid) || m.touched >= listed_at);
        self.report(models.len());
        before - models.len()
    }

    /// How many models are remembered.
    pub fn len(&self) -> usize {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    /// A model with something in every part of its memory.
    fn remember_all(m: &Memory, uid: &str) {
        m.with(uid, |r| {
            r.busy.next(1);
            r.expected
                .created([format!("{uid}--h-0-0")], Instant::now());
            r.creation.failed(Default::default(), "quota".into());
            r.capacity
                .removed("partial".into(), Duration::from_secs(30));
            r.crashes
                .recreated(Timestamp::now(), Duration::from_secs(600));
            r.written.wrote(1, 2, Instant::now());
        });
    }

    #[test]
    fn each_model_has_one_entry_and_a_deleted_models_entry_is_gone() {
        let m = Memory::default();
        remember_all(&m, "a");
        remember_all(&m, "b");
        assert_eq!(m.len(), 2);
        assert!(m.with("a", |r| r.creation.get().is_some()));
        assert!(
            m.with("c", |r| r.creation.get().is_none()
                && r.crashes.get().is_empty()),
            "another model remembers nothing"
        );
        m.forget("a");
        m.forget("c");
        assert_eq!(m.len(), 1, "deleted models' entries are gone");
        assert_eq!(m.size.get(), 1, "the gauge follows");
        assert!(
            m.with("a", |r| r.creation.get().is_none()
                && r.capacity.get().is_none()
                && r.crashes.get().is_empty()
                && r.written.recent_plan(Instant::now()).is_none()),
            "a model created again under the same uid starts from nothing"
        );
    }

    #[test]
    fn a_sweep_drops_models_the_caches_no_longer_hold_but_not_newer_passes() {
        let m = Memory::default();
        remember_all(&m, "gone");
        remember_all(&m, "live");
        // Listed after both passes.
        let listed_at = Instant::now() + Duration::from_secs(1);
        let live = HashSet::from(["live".to_string()]);
        assert_eq!(m.keep_only(&live, listed_at), 1);
        assert_eq!(m.len(), 1);
        assert!(m.with("live", |r| r.creation.get().is_some()), "kept");

        // A pass that ran after the listing (a model the listing had not seen yet).
        let listed_at = Instant::now();
        remember_all(&m, "new");
        assert_eq!(m.keep_only(&live, listed_at), 0);
        assert_eq!(m.len(), 2);
    }
}

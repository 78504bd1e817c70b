//! How the operator's watches list and back off, so an API server outage costs seconds
//! after the server is back, not minutes.
//!
//! Two things made a 10 s outage cost the operator up to two minutes: the watches resumed
//! from resource versions the restarted server's fresh watch cache no longer had (410
//! Expired, again and again), and kube-runtime's default backoff, doubling to 30 s and
//! beyond with jitter, put each retry further out. Lists here are quorum reads
//! (`MostRecent`), so a relist starts from a version the new server has, and retries back
//! off from 250 ms to at most 4 s, with jitter.

use std::time::Duration;

use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, ListSemantic};

const MIN: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(4);

/// Objects per list page. Each page is read whole and deserialized in full (managedFields,
/// images and all) before the watch strips it, so the page is the start's memory peak:
/// at kube's default of 500 Nodes it was 11 of 16 MB of heap, and glibc keeps the freed
/// pages in the process (issue 12). 100 costs a few more list requests at start.
const PAGE: u32 = 100;

/// A watcher configuration with quorum lists of [`PAGE`] objects a page.
pub fn config() -> watcher::Config {
    watcher::Config::default()
        .list_semantic(ListSemantic::MostRecent)
        .page_size(PAGE)
}

/// Exponential backoff from [`MIN`] to [`MAX`] with up to 25 % jitter; reset by the
/// stream on the first success.
#[derive(Clone, Debug)]
pub struct CappedBackoff {
    next: Duration,
    seed: u64,
}

impl Default for CappedBackoff {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(1);
        CappedBackoff {
            next: MIN,
            seed: seed | 1,
        }
    }
}

impl Iterator for CappedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        // xorshift: jitter so many watches do not retry in lockstep.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = base.mul_f64((self.seed % 1000) as f64 / 4000.0);
        Some((base + jitter).min(MAX))
    }
}

impl Backoff for CappedBackoff {
    fn reset(&mut self) {
        self.next = MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = CappedBackoff::default();
        let delays: Vec<Duration> = b.by_ref().take(12).collect();
        assert!(delays[0] >= MIN && delays[0] < MIN * 2, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX), "{delays:?}");
        assert!(
            delays[11] >= MAX.mul_f64(0.99),
            "reaches the cap: {delays:?}"
        );
        b.reset();
        assert!(b.next().is_some_and(|d| d < MIN * 2));
    }

    #[test]
    fn lists_are_quorum_reads_in_small_pages() {
        assert_eq!(config().list_semantic, ListSemantic::MostRecent);
        assert_eq!(config().page_size, Some(PAGE));
    }
}

//! How the operator's watches list and back off, so an API server outage costs seconds
//! after the server is back, not minutes.
//!
//! Two things made a 10 s outage cost the operator up to two minutes: the watches resumed
//! from resource versions the restarted server's fresh watch cache no longer had (410
//! Expired, again and again), and kube-runtime's default backoff, doubling to 30 s and
//! beyond with jitter, put each retry further out. Lists here are quorum reads
//! (`MostRecent`), so a relist starts from a version the new server has, and retries back
//! off from 125-250 ms to at most 4 s, with jitter (backon's exponential builder, which
//! kube-runtime's watcher takes).

use std::time::Duration;

use kube::runtime::watcher::{self, ExponentialBackoff, ListSemantic};

const MIN: Duration = Duration::from_millis(125);
/// The delay before jitter stops doubling here; with jitter a retry waits at most 4 s.
const CAP: Duration = Duration::from_secs(2);

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

/// Exponential backoff from [`MIN`], doubling, with jitter of up to the delay itself
/// (backon's), so at most twice [`CAP`]: the retries of many watches spread out. The
/// watch stream resets it on its first success.
pub fn backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(MIN)
        .with_max_delay(CAP)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_at_most_4s_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut b = backoff();
        let delays: Vec<Duration> = b.by_ref().take(12).collect();
        assert!(delays[0] >= MIN && delays[0] <= MIN * 2, "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(4)),
            "{delays:?}"
        );
        assert!(delays[11] >= CAP, "reaches the cap: {delays:?}");
        b.reset();
        assert!(b.next().is_some_and(|d| d <= MIN * 2));
    }

    #[test]
    fn lists_are_quorum_reads_in_small_pages() {
        assert_eq!(config().list_semantic, ListSemantic::MostRecent);
        assert_eq!(config().page_size, Some(PAGE));
    }
}

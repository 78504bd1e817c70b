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
//!
//! [`changes`] folds a (re)list's events into one [`Change::Listed`] for the caches that
//! keep indexes a reflector `Store` does not (pods by model and by node, children by
//! model with their digests): each then swaps in what was listed in one step, and
//! compares it with what it held to find what a broken watch missed.

use std::time::Duration;

use futures::{future, Stream, StreamExt};
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

/// What a watch means to a cache once a relist is one step.
#[derive(Debug, PartialEq)]
pub enum Change<K> {
    /// A list (the first, or after the watch broke) ended: every object there is now.
    Listed(Vec<K>),
    Applied(K),
    Deleted(K),
}

/// The watch's events as [`Change`]s: `Init`, its `InitApply`s and `InitDone` become one
/// `Listed`, so no cache shows a half-listed state and each handles a relist once.
pub fn changes<K, S>(events: S) -> impl Stream<Item = Result<Change<K>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    events
        .scan(None::<Vec<K>>, |listing, event| {
            let change = match event {
                Err(e) => Some(Err(e)),
                Ok(watcher::Event::Init) => {
                    *listing = Some(Vec::new());
                    None
                }
                Ok(watcher::Event::InitApply(o)) => {
                    listing.get_or_insert_with(Vec::new).push(o);
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(Ok(Change::Listed(listing.take().unwrap_or_default())))
                }
                Ok(watcher::Event::Apply(o)) => Some(Ok(Change::Applied(o))),
                Ok(watcher::Event::Delete(o)) => Some(Ok(Change::Deleted(o))),
            };
            future::ready(Some(change))
        })
        .filter_map(future::ready)
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

    #[tokio::test]
    async fn a_relist_is_one_change_and_events_between_lists_pass_through() {
        use watcher::Event::*;
        let events = vec![
            Ok(Init),
            Ok(InitApply(1)),
            Ok(InitApply(2)),
            Ok(InitDone),
            Ok(Apply(3)),
            Ok(Delete(1)),
            Err(watcher::Error::NoResourceVersion),
            // A relist after the watch broke: nothing of it shows before it is done.
            Ok(Init),
            Ok(InitApply(2)),
            Ok(InitDone),
            // An empty list is a list too: everything went away.
            Ok(Init),
            Ok(InitDone),
        ];
        let got: Vec<_> = changes(futures::stream::iter(events)).collect().await;
        let got: Vec<Option<Change<i32>>> = got.into_iter().map(Result::ok).collect();
        assert_eq!(
            got,
            vec![
                Some(Change::Listed(vec![1, 2])),
                Some(Change::Applied(3)),
                Some(Change::Deleted(1)),
                None,
                Some(Change::Listed(vec![2])),
                Some(Change::Listed(vec![])),
            ]
        );
    }
}

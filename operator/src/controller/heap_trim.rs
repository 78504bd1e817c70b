//! Gives freed heap back to the OS now and then, where the C library's allocator keeps it.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena for reuse, and
//! returns it to the OS only from the top of a heap. After a burst (1,000 models
//! converging at once: pages of Nodes and pods decoded and dropped, status and pod
//! patches built and sent), the operator's resident memory stayed near twice its live
//! heap for as long as it ran (issue 12). `malloc_trim(0)` releases the free pages of
//! every arena; it walks the free lists, which at this heap size takes milliseconds.
//!
//! Only in builds against glibc: tests, benches, a `cargo install` on a glibc host, and
//! the operator image that `scripts/images` builds here (glibc-linked on a Debian base:
//! no musl target is installed here). The root `Dockerfile`'s image is a static musl
//! binary, whose allocator returns freed memory itself, so there it is compiled out.

use std::time::Duration;

/// How often the heap is trimmed: often enough that a burst's garbage does not stay
/// resident for long, rarely enough that the walk costs nothing to speak of.
pub const PERIOD: Duration = Duration::from_secs(30);

/// Starts trimming every `period`, for the life of the runtime.
pub fn spawn(period: Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // On a blocking thread: the walk holds each arena's lock while it runs.
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim takes no pointer and only touches the allocator's
                // own state, under its own locks.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = period;
}

//! State shared by the launcher's HTTP server and its process supervision.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

/// What the launcher knows about its group and its engine.
#[derive(Debug)]
pub struct LauncherState {
    pub rank: u32,
    pub group_size: u32,
    /// Ranks joined at the leader, with the launcher URL each registered (leader only;
    /// the leader itself has no URL here).
    joined: Mutex<BTreeMap<u32, Option<String>>>,
    /// Leader: its prepare steps are done, so joins are accepted.
    pub rendezvous_open: AtomicBool,
    /// This rank is part of the group (leader: always; worker: after the leader's ack).
    pub member: AtomicBool,
    /// Every rank has joined (leader: its own count; worker: as the leader reported).
    pub group_complete: AtomicBool,
    /// The serve process (if any) is running.
    pub serving: AtomicBool,
    /// The engine has answered its health endpoint at least once: start-up is over, so
    /// liveness now follows the engine.
    pub engine_up: AtomicBool,
    /// Bearer token of the group port: the leader accepts joins, and every rank serves
    /// its rank health and drain, only from callers that present it. Empty: refuse all.
    pub group_token: String,
    /// Base URL of the local engine's HTTP server, if this rank serves HTTP.
    pub engine_url: Option<String>,
    /// Worker: the leader launcher's base URL.
    pub leader_url: Option<String>,
    /// A drain was requested (SIGTERM, SIGINT or `/drain`).
    drain: watch::Sender<bool>,
    /// This rank's engine has stopped after a drain (or never started).
    stopped: watch::Sender<bool>,
    /// Where start-up and drain events are appended (tests).
    trace: Option<PathBuf>,
}

impl LauncherState {
    pub fn new(
        rank: u32,
        group_size: u32,
        engine_url: Option<String>,
        leader_url: Option<String>,
        trace: Option<PathBuf>,
    ) -> Self {
        let leader = rank == 0;
        LauncherState {
            rank,
            group_size,
            joined: Mutex::new(if leader {
                BTreeMap::from([(0, None)])
            } else {
                BTreeMap::new()
            }),
            rendezvous_open: AtomicBool::new(false),
            member: AtomicBool::new(leader),
            group_complete: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            engine_up: AtomicBool::new(false),
            group_token: String::new(),
            engine_url,
            leader_url: if leader { None } else { leader_url },
            drain: watch::Sender::new(false),
            stopped: watch::Sender::new(false),
            trace,
        }
    }

    /// The same state with the group token `token`.
    pub fn with_group_token(mut self, token: impl Into<String>) -> Self {
        self.group_token = token.into();
        self
    }

    /// Whether `given` is the group token (compared in constant time).
    pub fn token_matches(&self, given: &str) -> bool {
        let (a, b) = (self.group_token.as_bytes(), given.as_bytes());
        !a.is_empty()
            && a.len() == b.len()
            && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Records a rank (and its launcher URL) at the leader; returns the joined ranks.
    pub fn join(&self, rank: u32, url: Option<String>) -> Vec<u32> {
        let mut j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        j.insert(rank, url);
        let ranks: Vec<u32> = j.keys().copied().collect();
        drop(j);
        if self.all_joined() {
            self.group_complete.store(true, Ordering::SeqCst);
        }
        ranks
    }

    /// Replaces the joined set (workers, from the leader's answer).
    pub fn set_joined(&self, ranks: &[u32]) {
        let mut j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        *j = ranks.iter().map(|r| (*r, None)).collect();
    }

    pub fn joined(&self) -> Vec<u32> {
        let j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        j.keys().copied().collect()
    }

    /// `(rank, launcher URL)` of every joined worker that gave one.
    pub fn worker_urls(&self) -> Vec<(u32, String)> {
        let j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        j.iter()
            .filter(|(r, _)| **r != self.rank)
            .filter_map(|(r, u)| Some((*r, u.clone()?)))
            .collect()
    }

    pub fn all_joined(&self) -> bool {
        self.joined().len() as u32 >= self.group_size
    }

    /// Ranks that have not joined yet.
    pub fn missing(&self) -> Vec<u32> {
        let j = self.joined();
        (0..self.group_size).filter(|r| !j.contains(r)).collect()
    }

    /// Starts a drain (idempotent).
    pub fn request_drain(&self) {
        self.drain.send_if_modified(|d| !std::mem::replace(d, true));
    }

    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Resolves once a drain is requested.
    pub async fn drain_requested(&self) {
        let mut rx = self.drain.subscribe();
        // The sender lives as long as `self`, so this only ends on a drain.
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Marks this rank's engine stopped; `/drain` callers are answered.
    pub fn mark_stopped(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.stopped.send_replace(true);
    }

    pub fn engine_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves once this rank's engine has stopped.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Appends `<rank> <event>` to the trace file, if any, in one write so that ranks
    /// sharing the file keep their order.
    pub fn trace(&self, event: &str) {
        tracing::info!(rank = self.rank, "{event}");
        let Some(path) = &self.trace else { return };
        let line = format!("{} {event}\n", self.rank);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("cannot append to the stage trace {}: {e}", path.display());
        }
    }
}

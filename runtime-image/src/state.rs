//! State shared by the launcher's HTTP server and its process supervision.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the launcher knows about its group and its engine.
#[derive(Debug)]
pub struct LauncherState {
    pub rank: u32,
    pub group_size: u32,
    /// Ranks joined at the leader (leader: authoritative; worker: as last acknowledged).
    joined: Mutex<BTreeSet<u32>>,
    /// This rank is part of the group (leader: always; worker: after the leader's ack).
    pub member: AtomicBool,
    /// The serve process (if any) is running.
    pub serving: AtomicBool,
    /// SIGTERM/SIGINT received.
    pub draining: AtomicBool,
    /// Base URL of the local engine's HTTP server, if this rank serves HTTP.
    pub engine_url: Option<String>,
}

impl LauncherState {
    pub fn new(rank: u32, group_size: u32, engine_url: Option<String>) -> Self {
        let leader = rank == 0;
        LauncherState {
            rank,
            group_size,
            joined: Mutex::new(if leader {
                BTreeSet::from([0])
            } else {
                BTreeSet::new()
            }),
            member: AtomicBool::new(leader),
            serving: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            engine_url,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Records a rank at the leader; returns the joined set.
    pub fn join(&self, rank: u32) -> Vec<u32> {
        let mut j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        j.insert(rank);
        j.iter().copied().collect()
    }

    /// Replaces the joined set (workers, from the leader's answer).
    pub fn set_joined(&self, ranks: &[u32]) {
        let mut j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        *j = ranks.iter().copied().collect();
    }

    pub fn joined(&self) -> Vec<u32> {
        let j = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        j.iter().copied().collect()
    }

    pub fn all_joined(&self) -> bool {
        self.joined().len() as u32 >= self.group_size
    }

    /// Ranks that have not joined yet.
    pub fn missing(&self) -> Vec<u32> {
        let j = self.joined();
        (0..self.group_size).filter(|r| !j.contains(r)).collect()
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

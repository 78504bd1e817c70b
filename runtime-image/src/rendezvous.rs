//! Rendezvous of a replica group: workers register with the leader's launcher; the leader
//! waits, up to a deadline, until every rank has joined.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::server::{local_client, JoinRequest, JoinResponse};
use crate::state::LauncherState;

#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    #[error("rendezvous timed out after {waited:?}: ranks {missing:?} of a group of {group_size} never joined (joined: {joined:?})")]
    LeaderTimeout {
        waited: Duration,
        missing: Vec<u32>,
        joined: Vec<u32>,
        group_size: u32,
    },
    #[error("rendezvous timed out after {waited:?}: rank {rank} could not join the leader at {url}: {last_error}")]
    WorkerTimeout {
        waited: Duration,
        rank: u32,
        url: String,
        last_error: String,
    },
}

/// Leader: waits until all ranks joined or `timeout` passes.
pub async fn wait_for_group(
    state: &LauncherState,
    timeout: Duration,
) -> Result<(), RendezvousError> {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if state.all_joined() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(RendezvousError::LeaderTimeout {
                waited: timeout,
                missing: state.missing(),
                joined: state.joined(),
                group_size: state.group_size,
            });
        }
        tick.tick().await;
    }
}

/// Worker: registers with the leader at `leader_url`, retrying until `timeout`.
pub async fn join_leader(
    state: Arc<LauncherState>,
    leader_url: &str,
    timeout: Duration,
) -> Result<(), RendezvousError> {
    let url = format!("{leader_url}/rendezvous/join");
    let client = local_client(Duration::from_secs(2));
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = client
            .post(&url)
            .json(&JoinRequest { rank: state.rank })
            .send()
            .await;
        let last_error = match attempt {
            Ok(r) if r.status().is_success() => match r.json::<JoinResponse>().await {
                Ok(ans) => {
                    state.set_joined(&ans.joined);
                    state.member.store(true, Ordering::SeqCst);
                    tracing::info!(rank = state.rank, joined = ?ans.joined, "joined the leader");
                    return Ok(());
                }
                Err(e) => format!("bad answer: {e}"),
            },
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(RendezvousError::WorkerTimeout {
                waited: timeout,
                rank: state.rank,
                url,
                last_error,
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

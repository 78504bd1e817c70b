//! Rendezvous of a replica group: the leader opens it once its head is up, workers
//! register with the leader's launcher, and every rank waits, up to a deadline, until all
//! ranks have joined. On a drain, a worker waits for the leader's engine to stop first.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use deepseek_engine::{JOIN_PATH, RENDEZVOUS_PATH};

use crate::server::{local_client, JoinRequest, RendezvousStatus};
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
            state.group_complete.store(true, Ordering::SeqCst);
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

/// Retries `attempt` with backoff until it returns `Ok(Some(_))` or `timeout` passes;
/// `Ok(None)` and `Err(last error)` both mean "not yet".
async fn retry<T, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut last_error = String::from("no answer yet");
    loop {
        match attempt().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = e,
        }
        if start.elapsed() >= timeout {
            return Err(last_error);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Worker: registers with the leader's group server at `leader_url` (giving `own_url`,
/// its own group server, where the leader checks this rank's health), retrying until the leader has opened the rendezvous or
/// `timeout` passes.
pub async fn join_leader(
    state: Arc<LauncherState>,
    leader_url: &str,
    own_url: &str,
    timeout: Duration,
) -> Result<(), RendezvousError> {
    let url = format!("{leader_url}{JOIN_PATH}");
    let client = local_client(Duration::from_secs(2));
    let request = JoinRequest {
        rank: state.rank,
        launcher_url: Some(own_url.to_string()),
    };
    let joined = retry(timeout, || async {
        let r = client
            .post(&url)
            .bearer_auth(&state.group_token)
            .json(&request)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            return Err(format!("HTTP {status}: {body}"));
        }
        let ans = r
            .json::<RendezvousStatus>()
            .await
            .map_err(|e| format!("bad answer: {e}"))?;
        Ok(Some(ans.joined))
    })
    .await
    .map_err(|last_error| RendezvousError::WorkerTimeout {
        waited: timeout,
        rank: state.rank,
        url: url.clone(),
        last_error,
    })?;
    state.set_joined(&joined);
    state.member.store(true, Ordering::SeqCst);
    Ok(())
}

/// The leader's rendezvous status, or why it could not be read.
async fn leader_status(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<RendezvousStatus, String> {
    let r = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status()));
    }
    r.json::<RendezvousStatus>()
        .await
        .map_err(|e| format!("bad answer: {e}"))
}

/// Worker: waits until the leader reports every rank joined, or `timeout` passes.
pub async fn await_group(
    state: &LauncherState,
    leader_url: &str,
    timeout: Duration,
) -> Result<(), RendezvousError> {
    let url = format!("{leader_url}{RENDEZVOUS_PATH}");
    let client = local_client(Duration::from_secs(2));
    let joined = retry(timeout, || async {
        let s = leader_status(&client, &url, &state.group_token).await?;
        Ok((s.joined.len() as u32 >= s.group_size).then_some(s.joined))
    })
    .await
    .map_err(|last_error| RendezvousError::WorkerTimeout {
        waited: timeout,
        rank: state.rank,
        url: url.clone(),
        last_error: format!("the group did not complete: {last_error}"),
    })?;
    state.set_joined(&joined);
    state.group_complete.store(true, Ordering::SeqCst);
    Ok(())
}

/// Worker, draining: resolves once the leader's engine has stopped or its launcher is
/// gone (nothing answers), or after `bound`. Returns whether the leader was seen done.
pub async fn leader_drained(leader_url: &str, token: &str, bound: Duration) -> bool {
    let url = format!("{leader_url}{RENDEZVOUS_PATH}");
    let client = local_client(Duration::from_secs(1));
    let start = Instant::now();
    loop {
        match client.get(&url).bearer_auth(token).send().await {
            Err(e) if e.is_connect() => return true,
            Ok(r) => {
                if let Ok(s) = r.json::<RendezvousStatus>().await {
                    if s.engine_stopped {
                        return true;
                    }
                }
            }
            Err(_) => {}
        }
        if start.elapsed() >= bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

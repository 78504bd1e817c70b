//! The sim's group link: in a multi-node group each worker rank holds one TCP connection
//! to the leader's `--dist-init-addr`, as a real engine's ranks hold their collective
//! links. The leader is healthy only while every worker is linked, and a worker that
//! leaves breaks the engine (the leader exits with an error and its in-flight requests
//! are cut), so a test sees what stopping a worker too early does to a real group.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::model::SimModel;

/// This rank's place in a multi-node sim group.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub nnodes: u32,
    pub node_rank: u32,
    /// `host:port` the leader listens on and workers dial.
    pub dist_init_addr: String,
}

/// Leader: accepts worker links on `listener`; marks the model linked once all
/// `nnodes - 1` workers are, and returns (with the reason) when a linked worker leaves.
pub async fn lead(listener: TcpListener, spec: GroupSpec, model: Arc<SimModel>) -> String {
    let expected = spec.nnodes.saturating_sub(1) as usize;
    model.gate.set_linked(expected == 0);
    let linked = Arc::new(Mutex::new(BTreeSet::new()));
    let (left_tx, mut left_rx) = mpsc::channel::<String>(4);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (linked, model, left_tx) = (linked.clone(), model.clone(), left_tx.clone());
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream);
                    let mut hello = String::new();
                    let rank = match lines.read_line(&mut hello).await {
                        Ok(n) if n > 0 => hello.trim().strip_prefix("rank ").and_then(|r| r.parse::<u32>().ok()),
                        _ => None,
                    };
                    let Some(rank) = rank else {
                        tracing::warn!("sim: ignoring a group link from {peer} without a rank");
                        return;
                    };
                    let count = {
                        let mut l = linked.lock().unwrap_or_else(|e| e.into_inner());
                        l.insert(rank);
                        l.len()
                    };
                    tracing::info!(rank, "sim: rank linked ({count} of {expected})");
                    model.gate.set_linked(count >= expected);
                    // The worker never sends more: the read ends when its process does.
                    let mut rest = Vec::new();
                    let _ = lines.read_to_end(&mut rest).await;
                    let _ = left_tx.send(format!("rank {rank} left the group")).await;
                });
            }
            Some(reason) = left_rx.recv() => {
                model.gate.set_linked(false);
                return reason;
            }
        }
    }
}

/// Worker: dials the leader until it answers, then holds the link; returns (with the
/// reason) when the leader closes it.
pub async fn follow(spec: GroupSpec) -> String {
    let mut backoff = Duration::from_millis(50);
    let mut stream = loop {
        match TcpStream::connect(&spec.dist_init_addr).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::debug!(
                    "sim: leader at {} not reachable yet: {e}",
                    spec.dist_init_addr
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    };
    if let Err(e) = stream
        .write_all(format!("rank {}\n", spec.node_rank).as_bytes())
        .await
    {
        return format!("cannot link to the leader: {e}");
    }
    tracing::info!(
        rank = spec.node_rank,
        "sim: linked to the leader at {}",
        spec.dist_init_addr
    );
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    "the leader closed the group link".into()
}

//! Ray cluster steps for multi-node vLLM (leader runs the head, workers join and block).

use crate::env::POD_IP_PLACEHOLDER;
use crate::{CommandLine, RAY_PORT};

/// `ray start --head` on the leader; returns once the head is up (Ray daemonises).
pub fn head() -> CommandLine {
    CommandLine::new("ray")
        .arg("start")
        .arg("--head")
        .arg(format!("--port={RAY_PORT}"))
        .arg(format!("--node-ip-address={POD_IP_PLACEHOLDER}"))
}

/// `ray start --address=<leader>:6379 --block` on a worker: the worker pod's lifetime.
pub fn worker(leader: &str) -> CommandLine {
    CommandLine::new("ray")
        .arg("start")
        .arg(format!("--address={leader}:{RAY_PORT}"))
        .arg(format!("--node-ip-address={POD_IP_PLACEHOLDER}"))
        .arg("--block")
}

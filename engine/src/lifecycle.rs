//! The drain and start-order contract between the controller (which writes the pod's
//! probes, preStop hook and grace period) and the launcher (which serves them).
//!
//! A multi-node group serves through its leader only; the workers hold shards of the same
//! model. So a drain must end on the leader before any worker stops: the leader's preStop
//! runs [`DRAIN_COMMAND`], which calls [`DRAIN_PATH`] on the group port with the group
//! token; that makes the engine refuse new requests and blocks until the
//! in-flight ones finish (at most the drain bound plus [`STOP_MARGIN_SECONDS`]); a worker
//! that receives SIGTERM keeps its engine up until the leader's engine has stopped or the
//! same bound passes. [`termination_grace_period_seconds`] covers both waits, so the
//! kubelet never kills a rank that is still needed.

/// Default drain bound in seconds: how long in-flight requests get once a drain begins
/// (`DSO_DRAIN_SECONDS` overrides it per pod).
pub const DEFAULT_DRAIN_SECONDS: u64 = 30;

/// Seconds a process gets to exit after its drain bound before it is killed.
pub const STOP_MARGIN_SECONDS: u64 = 5;

/// HTTP path on the group port ([`crate::GROUP_PORT`]) that starts a drain and answers
/// once this rank's engine has stopped. The leader pod's preStop hook runs
/// [`DRAIN_COMMAND`], which calls it with the group token; a client cannot reach it.
pub const DRAIN_PATH: &str = "/drain";

/// The leader pod's `lifecycle.preStop.exec.command`: the launcher's `drain` subcommand
/// calls [`DRAIN_PATH`] on this pod's group port with the group token from the
/// environment, and exits once the engine has stopped.
pub const DRAIN_COMMAND: [&str; 2] = ["deepseek-launcher", "drain"];

/// HTTP path on the group port where a worker joins the leader's rendezvous.
pub const JOIN_PATH: &str = "/rendezvous/join";

/// HTTP path on the group port of the leader's rendezvous status (workers poll it).
pub const RENDEZVOUS_PATH: &str = "/rendezvous";

/// HTTP path on the launcher port of the liveness (and startup) probe: 200 while the
/// rank starts (until its engine first answered its health endpoint) and while it
/// drains; afterwards 200 only if the engine answers its own health endpoint within
/// [`LIVENESS_ENGINE_TIMEOUT_MS`], so the kubelet restarts a hung engine.
pub const LIVENESS_PATH: &str = "/healthz";

/// How long the liveness check waits for the engine's health endpoint.
pub const LIVENESS_ENGINE_TIMEOUT_MS: u64 = 3000;

/// `timeoutSeconds` of the liveness probe: the engine's bound plus a second.
pub const LIVENESS_PROBE_TIMEOUT_SECONDS: i32 = (LIVENESS_ENGINE_TIMEOUT_MS / 1000) as i32 + 1;

/// HTTP path on the launcher port of the readiness probe: 200 when this rank is joined and
/// healthy and (leader) every rank of the group is.
pub const READINESS_PATH: &str = "/readyz";

/// `timeoutSeconds` the readiness probe needs: the leader's `/readyz` asks its engine and
/// then every worker (0.7 s each at most), which can exceed the kubelet's default of 1 s.
pub const READINESS_PROBE_TIMEOUT_SECONDS: i32 = 2;

/// HTTP path on the group port that reports one rank's own state (joined, engine up)
/// without asking the rest of the group; the leader reads it from every worker.
pub const RANK_HEALTH_PATH: &str = "/rankz";

/// The pod's `terminationGracePeriodSeconds` for a drain bound of `drain_seconds`: the
/// leader's drain (bound + margin), a worker's wait for it (the same, plus one poll), and
/// the worker's own engine stop (margin), plus slack for the kubelet.
pub const fn termination_grace_period_seconds(drain_seconds: u64) -> i64 {
    let total = 2 * (drain_seconds + STOP_MARGIN_SECONDS) + STOP_MARGIN_SECONDS + 5;
    if total > i64::MAX as u64 {
        i64::MAX
    } else {
        total as i64
    }
}

/// [`termination_grace_period_seconds`] of the default drain bound.
pub const TERMINATION_GRACE_PERIOD_SECONDS: i64 =
    termination_grace_period_seconds(DEFAULT_DRAIN_SECONDS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_outlasts_leader_drain_then_worker_stop() {
        for drain in [0, 1, 30, 600] {
            let grace = termination_grace_period_seconds(drain) as u64;
            let leader = drain + STOP_MARGIN_SECONDS;
            let worker = leader + 1 + STOP_MARGIN_SECONDS;
            assert!(grace > worker, "drain {drain}: grace {grace} <= {worker}");
        }
        assert_eq!(TERMINATION_GRACE_PERIOD_SECONDS, 80);
    }
}

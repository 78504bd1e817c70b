//! The order in which one rank of a group starts: which steps run before the rendezvous,
//! which after, and when the engine serves.
//!
//! Multi-node engines need their leader's side up first (vLLM's Ray head, which workers
//! dial) and must not start serving before every rank is present (SGLang's ranks block in
//! their distributed init, vLLM's executor places work on every node). So: the leader
//! runs its prepare steps (the head) and only then opens the rendezvous; workers join,
//! every rank waits until the group is complete, and only then starts its serve step.
//! The launcher executes exactly this list, so a table test of it pins the behaviour.

use serde::{Deserialize, Serialize};

use crate::{CommandLine, LaunchSteps, Role};

/// One stage of a rank's start-up, executed in order by the launcher.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// Run a command to completion (e.g. `ray start --head`).
    Prepare(CommandLine),
    /// Leader: start accepting joins (before this, joins are refused and retried).
    OpenRendezvous,
    /// Worker: register with the leader, retrying until it accepts.
    JoinLeader,
    /// Wait until every rank of the group has joined.
    AwaitGroup,
    /// Start the long-running process of this rank (engine, or a Ray worker).
    Serve(CommandLine),
}

impl Stage {
    /// A short name for logs and the stage trace.
    pub fn name(&self) -> String {
        match self {
            Stage::Prepare(c) => format!("prepare {}", c.program),
            Stage::OpenRendezvous => "open-rendezvous".into(),
            Stage::JoinLeader => "join-leader".into(),
            Stage::AwaitGroup => "await-group".into(),
            Stage::Serve(c) => format!("serve {}", c.program),
        }
    }
}

impl LaunchSteps {
    /// The stages of a rank with `role`, in the order they must happen.
    pub fn order(&self, role: Role) -> Vec<Stage> {
        let prepare = self.prepare.iter().cloned().map(Stage::Prepare);
        let mut out: Vec<Stage> = match role {
            Role::Leader => prepare
                .chain([Stage::OpenRendezvous, Stage::AwaitGroup])
                .collect(),
            Role::Worker => std::iter::once(Stage::JoinLeader)
                .chain(prepare)
                .chain([Stage::AwaitGroup])
                .collect(),
        };
        out.extend(self.serve.iter().cloned().map(Stage::Serve));
        out
    }
}

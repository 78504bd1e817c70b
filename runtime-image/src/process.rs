//! Starting rendered command lines as child processes and signalling them.

use std::process::Stdio;

use deepseek_engine::sim::LAUNCHER_PROGRAM;
use deepseek_engine::CommandLine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Starts `cmd` with `extra_env` added; `deepseek-launcher` resolves to this executable.
pub fn spawn(cmd: &CommandLine, extra_env: &[(String, String)]) -> std::io::Result<Child> {
    let program = if cmd.program == LAUNCHER_PROGRAM {
        std::env::current_exe()?
    } else {
        cmd.program.clone().into()
    };
    tracing::info!(command = %cmd.to_shell(), "starting");
    let mut c = Command::new(program);
    c.args(&cmd.args)
        .envs(extra_env.iter().cloned())
        .envs(cmd.env.iter().cloned())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c.spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", cmd.program)))
}

/// Sends `sig` to a running child (no-op once it has exited).
pub fn signal(child: &Child, sig: Signal) {
    if let Some(id) = child.id().and_then(|id| i32::try_from(id).ok()) {
        if let Err(e) = kill(Pid::from_raw(id), sig) {
            tracing::warn!("cannot send {sig} to pid {id}: {e}");
        }
    }
}

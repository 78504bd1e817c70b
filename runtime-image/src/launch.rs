//! The main launch: config -> checks -> render -> launcher server -> the rank's stages in
//! `LaunchSteps::order` (leader: prepare, open the rendezvous, await the group, serve;
//! worker: join, await the group, serve) -> drain on SIGTERM, SIGINT or `/drain`.
//!
//! A drain ends on the leader first: the leader's engine refuses new requests and finishes
//! the accepted ones; a worker keeps its engine (a shard of the same model) up until the
//! leader's has stopped, so no accepted request loses a rank mid-flight.

use std::future::IntoFuture;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use deepseek_engine::{
    env, render_with, Engine, LaunchConfig, LaunchSteps, RenderOptions, Role, Stage,
    STOP_MARGIN_SECONDS,
};
use nix::sys::signal::Signal;
use tokio::process::Child;

use crate::cli::LaunchArgs;
use crate::state::LauncherState;
use crate::{hardware, process, rendezvous, server};

/// Everything a launch needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct Launch {
    pub cfg: LaunchConfig,
    pub rank: u32,
    pub leader: String,
    pub bind: IpAddr,
    pub launcher_port: u16,
    pub group_port: u16,
    /// The group token (see `server::group_router`).
    pub group_token: String,
    pub engine_port: u16,
    pub leader_port: u16,
    pub dist_port: u16,
    pub rendezvous_timeout: Duration,
    pub drain: Duration,
    pub dev_dir: PathBuf,
    pub trace_stages: Option<PathBuf>,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("{name} must be a non-negative number of seconds, got {v}"))
}

impl Launch {
    /// Resolves flags/env into a launch, validating the config.
    pub fn from_args(a: &LaunchArgs) -> anyhow::Result<Launch> {
        let json = a.config_json.as_deref().with_context(|| {
            format!(
                "no launch config: set {} or --config-json",
                env::LAUNCH_CONFIG
            )
        })?;
        let mut cfg = LaunchConfig::from_json(json)?;
        if let Some(e) = &a.engine {
            cfg.engine = serde_json::from_value::<Engine>(serde_json::Value::String(e.clone()))
                .with_context(|| format!("unknown engine {e:?}"))?;
        }
        deepseek_engine::validate(&cfg)?;
        let bind = a.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let leader = match &a.leader {
            Some(l) => l.clone(),
            None if cfg.nodes > 1 && a.rank > 0 => {
                bail!(
                    "rank {} of a {}-node group needs {} or --leader",
                    a.rank,
                    cfg.nodes,
                    env::LEADER_ADDRESS
                )
            }
            None => loopback_if_unspecified(bind).to_string(),
        };
        let group_token = match a.group_token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ if cfg.nodes > 1 => bail!(
                "a {}-node group needs its group token in {} or --group-token",
                cfg.nodes,
                env::GROUP_TOKEN
            ),
            // A single rank has no peers: a token of its own keeps the group port closed
            // (a drain then comes by SIGTERM).
            _ => random_token()?,
        };
        Ok(Launch {
            cfg,
            rank: a.rank,
            leader,
            bind,
            launcher_port: a.launcher_port,
            group_port: a.group_port,
            group_token,
            engine_port: a.engine_port,
            leader_port: a.leader_port,
            dist_port: a.dist_port,
            rendezvous_timeout: seconds("rendezvous timeout", a.rendezvous_timeout)?,
            drain: seconds("drain seconds", a.drain_seconds)?,
            dev_dir: a.dev_dir.clone(),
            trace_stages: a.trace_stages.clone(),
        })
    }

    /// The rendered steps with `$(DSO_POD_IP)` replaced by the bind address.
    pub fn steps(&self) -> anyhow::Result<LaunchSteps> {
        let opts = RenderOptions {
            engine_port: self.engine_port,
            dist_port: self.dist_port,
        };
        let steps = render_with(&self.cfg, self.rank, &self.leader, &opts)?;
        let ip = self.bind.to_string();
        let vars = [("DSO_POD_IP", ip.as_str())];
        Ok(LaunchSteps {
            prepare: steps.prepare.iter().map(|c| c.expand(&vars)).collect(),
            serve: steps.serve.map(|c| c.expand(&vars)),
        })
    }

    /// Fails when the container sees fewer accelerators than the plan needs.
    pub fn check_hardware(&self) -> Result<u32, hardware::HardwareError> {
        hardware::check(&self.cfg, &self.dev_dir, &|k| std::env::var(k).ok())
    }

    /// Environment added to every child.
    fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            env::DRAIN_SECONDS.to_string(),
            self.drain.as_secs_f64().to_string(),
        )];
        if let Ok(path) = std::env::var(env::HF_TOKEN_FILE) {
            match std::fs::read_to_string(&path) {
                Ok(token) => env.push(("HF_TOKEN".into(), token.trim().to_string())),
                Err(e) => tracing::warn!("cannot read the Hugging Face token file {path}: {e}"),
            }
        }
        env
    }
}

/// 32 random bytes from the kernel, hex-encoded.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?,
        &mut bytes,
    )
    .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn loopback_if_unspecified(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

pub fn url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// Requests a drain on SIGTERM or SIGINT.
fn drain_on_signals(state: Arc<LauncherState>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => state.trace("SIGTERM"),
            _ = int.recv() => state.trace("SIGINT"),
        }
        state.request_drain();
    });
    Ok(())
}

fn stop_margin() -> Duration {
    Duration::from_secs(STOP_MARGIN_SECONDS)
}

/// Runs the launch; returns the process exit code.
pub async fn run(launch: Launch) -> anyhow::Result<i32> {
    let steps = launch.steps()?;
    launch.check_hardware()?;
    let leader = launch.rank == 0;
    let local_host = loopback_if_unspecified(launch.bind).to_string();
    let engine_url =
        (leader && steps.serve.is_some()).then(|| url(&local_host, launch.engine_port));
    let state = Arc::new(
        LauncherState::new(
            launch.rank,
            launch.cfg.nodes,
            engine_url,
            Some(url(&launch.leader, launch.leader_port)),
            launch.trace_stages.clone(),
        )
        .with_group_token(launch.group_token.clone()),
    );
    drain_on_signals(state.clone())?;

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(launch.bind, launch.launcher_port))
            .await
            .with_context(|| {
                format!(
                    "cannot bind the launcher to {}:{}",
                    launch.bind, launch.launcher_port
                )
            })?;
    let group_listener =
        tokio::net::TcpListener::bind(SocketAddr::new(launch.bind, launch.group_port))
            .await
            .with_context(|| {
                format!(
                    "cannot bind the launcher's group port to {}:{}",
                    launch.bind, launch.group_port
                )
            })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain_wait = launch.drain + stop_margin();
    let serve = |listener, router, mut stop: tokio::sync::watch::Receiver<bool>| {
        tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .into_future(),
        )
    };
    let public = serve(
        listener,
        server::router(state.clone(), drain_wait),
        stop_rx.clone(),
    );
    let group = serve(
        group_listener,
        server::group_router(state.clone(), drain_wait),
        stop_rx,
    );
    let code = supervise(&launch, &steps, &state).await;
    state.mark_stopped();
    let _ = stop_tx.send(true);
    // A pending `/drain` (the preStop hook) gets its answer before the servers stop.
    let _ = tokio::time::timeout(stop_margin(), async {
        let _ = tokio::join!(public, group);
    })
    .await;
    if std::process::id() == 1 {
        let left = wait_until_alone(Path::new("/proc"), stop_margin()).await;
        if left > 0 {
            tracing::warn!("{left} other process(es) still running in this container at exit");
        }
    }
    code
}

/// As the container's PID 1, the launcher's exit ends the container and the kernel kills
/// every process left in it, the preStop hook's `deepseek-launcher drain` included: it got
/// its answer but had not exited yet, so the kubelet saw the hook "exit with 137" and
/// reported FailedPreStopHook for a drain that worked (seen on a real kubelet node). So
/// PID 1 waits, at most `limit`, until no other process is left in its PID namespace.
/// Returns how many were still there.
pub async fn wait_until_alone(proc_dir: &Path, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let others = other_processes(proc_dir);
        if others == 0 || tokio::time::Instant::now() >= deadline {
            return others;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes in `proc_dir` (a procfs of this PID namespace) other than PID 1.
fn other_processes(proc_dir: &Path) -> usize {
    std::fs::read_dir(proc_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != 1)
                .count()
        })
        .unwrap_or(0)
}

/// How a stage ended.
enum Outcome {
    Done,
    /// A drain was requested before the rank served.
    Drained,
}

async fn supervise(
    launch: &Launch,
    steps: &LaunchSteps,
    state: &Arc<LauncherState>,
) -> anyhow::Result<i32> {
    let env = launch.child_env();
    let own_url = url(
        &loopback_if_unspecified(launch.bind).to_string(),
        launch.group_port,
    );
    let mut serve: Option<Child> = None;
    for stage in steps.order(Role::of_rank(launch.rank)) {
        let outcome = match &stage {
            Stage::Prepare(cmd) => {
                let mut child = process::spawn(cmd, &env)?;
                tokio::select! {
                    status = child.wait() => {
                        let status = status?;
                        if !status.success() {
                            bail!("prepare step `{}` failed: {status}", cmd.to_shell());
                        }
                        Outcome::Done
                    }
                    () = state.drain_requested() => {
                        stop(&mut child, stop_margin()).await;
                        Outcome::Drained
                    }
                }
            }
            Stage::OpenRendezvous => {
                state.rendezvous_open.store(true, Ordering::SeqCst);
                Outcome::Done
            }
            Stage::JoinLeader => {
                let leader_url = url(&launch.leader, launch.leader_port);
                tokio::select! {
                    r = rendezvous::join_leader(state.clone(), &leader_url, &own_url, launch.rendezvous_timeout) => {
                        r?;
                        Outcome::Done
                    }
                    () = state.drain_requested() => Outcome::Drained,
                }
            }
            Stage::AwaitGroup => {
                let waited = async {
                    if state.is_leader() {
                        rendezvous::wait_for_group(state, launch.rendezvous_timeout).await
                    } else {
                        let leader_url = url(&launch.leader, launch.leader_port);
                        rendezvous::await_group(state, &leader_url, launch.rendezvous_timeout).await
                    }
                };
                tokio::select! {
                    r = waited => { r?; Outcome::Done }
                    () = state.drain_requested() => Outcome::Drained,
                }
            }
            Stage::Serve(cmd) => {
                serve = Some(process::spawn(cmd, &env)?);
                state.serving.store(true, Ordering::SeqCst);
                Outcome::Done
            }
        };
        match outcome {
            Outcome::Done => state.trace(&stage.name()),
            Outcome::Drained => {
                state.trace("drained before serving");
                return Ok(0);
            }
        }
    }

    let Some(child) = serve.as_mut() else {
        state.drain_requested().await;
        return Ok(0);
    };
    tokio::select! {
        status = child.wait() => {
            state.serving.store(false, Ordering::SeqCst);
            let status = status?;
            tracing::error!("the engine exited unexpectedly: {status}");
            Ok(status.code().filter(|c| *c != 0).unwrap_or(1))
        }
        () = state.drain_requested() => {
            drain(launch, state, child).await;
            Ok(0)
        }
    }
}

/// Drains a serving rank. Leader: the engine refuses new requests and finishes the
/// accepted ones (SIGTERM), for at most the drain bound. Worker: the engine stays up
/// until the leader's has stopped (or the same bound passes), then stops.
async fn drain(launch: &Launch, state: &LauncherState, child: &mut Child) {
    state.trace("draining");
    if !state.is_leader() {
        let leader_url = url(&launch.leader, launch.leader_port);
        // The leader may take its whole bound plus margin; one poll more covers the gap.
        let bound = launch.drain + stop_margin() + Duration::from_secs(1);
        tokio::select! {
            done = rendezvous::leader_drained(&leader_url, &state.group_token, bound) => {
                if done {
                    state.trace("leader drained");
                } else {
                    tracing::warn!("the leader was still draining after {bound:?}: stopping anyway");
                }
            }
            status = child.wait() => {
                tracing::info!("the engine exited while waiting for the leader: {status:?}");
            }
        }
        stop(child, stop_margin()).await;
    } else {
        stop(child, launch.drain + stop_margin()).await;
    }
    state.mark_stopped();
    state.trace("engine stopped");
}

/// Sends SIGTERM and waits up to `limit` for the child to exit, then SIGKILLs it.
async fn stop(child: &mut Child, limit: Duration) {
    if let Ok(Some(status)) = child.try_wait() {
        tracing::info!("child already exited: {status}");
        return;
    }
    process::signal(child, Signal::SIGTERM);
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => tracing::info!("child exited after SIGTERM: {status}"),
        Ok(Err(e)) => tracing::warn!("waiting for the child failed: {e}"),
        Err(_) => {
            tracing::warn!("child still running {limit:?} after SIGTERM: killing it");
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
mod pid1_tests {
    use super::*;

    #[tokio::test]
    async fn pid_1_waits_until_the_hooks_process_is_gone_and_no_longer() {
        let proc_dir = std::env::temp_dir().join(format!("dso-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&proc_dir);
        for entry in ["1", "self", "sys", "42"] {
            std::fs::create_dir_all(proc_dir.join(entry)).expect("fake proc entry");
        }
        // The hook's process (42) exits a moment after its answer.
        let hook = proc_dir.join("42");
        let gone = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            std::fs::remove_dir(hook).expect("hook exits");
        });
        let start = tokio::time::Instant::now();
        assert_eq!(wait_until_alone(&proc_dir, Duration::from_secs(5)).await, 0);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        gone.await.expect("hook task");
        // A process that never exits: bounded by the limit.
        std::fs::create_dir_all(proc_dir.join("43")).expect("fake proc entry");
        assert_eq!(
            wait_until_alone(&proc_dir, Duration::from_millis(100)).await,
            1
        );
        let _ = std::fs::remove_dir_all(&proc_dir);
    }
}

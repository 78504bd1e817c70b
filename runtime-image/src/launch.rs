//! The main launch: config -> checks -> render -> launcher server -> prepare steps ->
//! rendezvous -> serve, with SIGTERM/SIGINT forwarded and drained.

use std::future::IntoFuture;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use deepseek_engine::{env, render_with, Engine, LaunchConfig, LaunchSteps, RenderOptions};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;

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
    pub engine_port: u16,
    pub leader_port: u16,
    pub rendezvous_timeout: Duration,
    pub drain: Duration,
    pub dev_dir: PathBuf,
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
        Ok(Launch {
            cfg,
            rank: a.rank,
            leader,
            bind,
            launcher_port: a.launcher_port,
            engine_port: a.engine_port,
            leader_port: a.leader_port,
            rendezvous_timeout: seconds("rendezvous timeout", a.rendezvous_timeout)?,
            drain: seconds("drain seconds", a.drain_seconds)?,
            dev_dir: a.dev_dir.clone(),
        })
    }

    /// The rendered steps with `$(DSO_POD_IP)` replaced by the bind address.
    pub fn steps(&self) -> anyhow::Result<LaunchSteps> {
        let opts = RenderOptions {
            engine_port: self.engine_port,
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

fn loopback_if_unspecified(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

fn url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// Resolves once SIGTERM or SIGINT arrives.
fn termination() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn terminated(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which never happens before a signal.
    let _ = rx.wait_for(|t| *t).await;
}

/// Runs the launch; returns the process exit code.
pub async fn run(launch: Launch) -> anyhow::Result<i32> {
    let steps = launch.steps()?;
    launch.check_hardware()?;
    let mut term = termination()?;
    let leader = launch.rank == 0;
    let engine_host = loopback_if_unspecified(launch.bind).to_string();
    let engine_url =
        (leader && steps.serve.is_some()).then(|| url(&engine_host, launch.engine_port));
    let state = Arc::new(LauncherState::new(
        launch.rank,
        launch.cfg.nodes,
        engine_url,
    ));

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(launch.bind, launch.launcher_port))
            .await
            .with_context(|| {
                format!(
                    "cannot bind the launcher to {}:{}",
                    launch.bind, launch.launcher_port
                )
            })?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        axum::serve(listener, server::router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .into_future(),
    );
    let code = supervise(&launch, &steps, &state, &mut term).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    code
}

async fn supervise(
    launch: &Launch,
    steps: &LaunchSteps,
    state: &Arc<LauncherState>,
    term: &mut watch::Receiver<bool>,
) -> anyhow::Result<i32> {
    let env = launch.child_env();
    let drain_all = |state: &LauncherState| state.draining.store(true, Ordering::SeqCst);

    for step in &steps.prepare {
        let mut child = process::spawn(step, &env)?;
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                if !status.success() {
                    bail!("prepare step `{}` failed: {status}", step.to_shell());
                }
            }
            () = terminated(term) => {
                drain_all(state);
                stop(&mut child, launch.drain).await;
                return Ok(0);
            }
        }
    }

    let mut serve: Option<Child> = None;
    if state.is_leader() {
        tokio::select! {
            r = rendezvous::wait_for_group(state, launch.rendezvous_timeout) => r?,
            () = terminated(term) => { drain_all(state); return Ok(0); }
        }
        tracing::info!(joined = ?state.joined(), "all ranks joined");
        if let Some(cmd) = &steps.serve {
            serve = Some(process::spawn(cmd, &env)?);
        }
        state.serving.store(true, Ordering::SeqCst);
    } else {
        if let Some(cmd) = &steps.serve {
            serve = Some(process::spawn(cmd, &env)?);
        }
        state.serving.store(true, Ordering::SeqCst);
        let leader_url = url(&launch.leader, launch.leader_port);
        let joined = tokio::select! {
            r = rendezvous::join_leader(state.clone(), &leader_url, launch.rendezvous_timeout) => Some(r),
            () = terminated(term) => None,
        };
        match joined {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                if let Some(c) = serve.as_mut() {
                    stop(c, Duration::from_secs(5)).await;
                }
                return Err(e.into());
            }
            None => {
                drain_all(state);
                if let Some(c) = serve.as_mut() {
                    stop(c, launch.drain).await;
                }
                return Ok(0);
            }
        }
    }

    match serve.as_mut() {
        None => {
            terminated(term).await;
            drain_all(state);
            Ok(0)
        }
        Some(child) => {
            tokio::select! {
                status = child.wait() => {
                    state.serving.store(false, Ordering::SeqCst);
                    let status = status?;
                    tracing::error!("the engine exited unexpectedly: {status}");
                    Ok(status.code().filter(|c| *c != 0).unwrap_or(1))
                }
                () = terminated(term) => {
                    drain_all(state);
                    stop(child, launch.drain).await;
                    state.serving.store(false, Ordering::SeqCst);
                    Ok(0)
                }
            }
        }
    }
}

/// Forwards SIGTERM and waits for the child to drain; SIGKILL after `drain` plus a margin.
async fn stop(child: &mut Child, drain: Duration) {
    process::signal(child, Signal::SIGTERM);
    let limit = drain + Duration::from_secs(5);
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => tracing::info!("child exited after SIGTERM: {status}"),
        Ok(Err(e)) => tracing::warn!("waiting for the child failed: {e}"),
        Err(_) => {
            tracing::warn!("child still running {limit:?} after SIGTERM: killing it");
            let _ = child.kill().await;
        }
    }
}

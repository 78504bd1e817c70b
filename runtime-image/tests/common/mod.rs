//! Helpers of the launcher's integration tests: spawn the built binary on 127.0.0.1 with
//! ephemeral ports, wait on conditions with deadlines, signal it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use deepseek_engine::{Engine, LaunchConfig, SimProfile};

pub const BIN: &str = env!("CARGO_BIN_EXE_deepseek-launcher");

/// The group token every launcher of these tests gets (`DSO_GROUP_TOKEN`), unless a test
/// sets its own.
pub const GROUP_TOKEN: &str = "test-group-token-0123456789abcdef";

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on 127.0.0.1")
}

pub fn sim_config(nodes: u32, profile: SimProfile) -> LaunchConfig {
    let model = "deepseek-ai/DeepSeek-V3";
    LaunchConfig {
        max_model_len: 4096,
        sim: Some(profile),
        ..LaunchConfig::new(Engine::Sim, "nvidia", model, "deepseek-v3", "fp8", nodes, 8)
    }
}

/// A launcher child process, killed if the test ends early.
pub struct Launcher {
    pub child: Child,
    pub ip: String,
    pub launcher_port: u16,
    /// The group port (rendezvous, rank health, drain).
    pub group_port: u16,
    pub engine_port: u16,
}

impl Launcher {
    pub fn launcher_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.launcher_port)
    }
    pub fn group_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.group_port)
    }
    pub fn engine_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.engine_port)
    }

    pub fn sigkill(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    }

    pub fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for exit with a deadline; returns the status and stderr.
    pub fn wait_exit(mut self, deadline: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return (status, err);
            }
            assert!(
                start.elapsed() < deadline,
                "launcher did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.sigterm();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free port on `ip` (bound then released).
pub fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on loopback")
}

/// The dist-init port of the group whose leader launcher listens on `leader_port`:
/// picked once per group, so ranks of concurrent tests never share one.
fn dist_port_of(leader_port: u16) -> u16 {
    static PORTS: std::sync::Mutex<BTreeMap<u16, u16>> = std::sync::Mutex::new(BTreeMap::new());
    let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    *ports.entry(leader_port).or_insert_with(free_port)
}

/// Starts `deepseek-launcher` for `rank` with `extra` flags; stderr is captured. The
/// leader's group port (where workers join) is `leader_port`.
pub fn spawn_launcher(
    cfg: &LaunchConfig,
    rank: u32,
    leader_port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Launcher {
    spawn_launcher_at(cfg, rank, "127.0.0.1", "127.0.0.1", leader_port, extra, env)
}

/// Like [`spawn_launcher`], with this rank bound to `ip` and its leader at `leader_ip`
/// (each rank of a group on its own loopback address, as pods have their own IPs).
pub fn spawn_launcher_at(
    cfg: &LaunchConfig,
    rank: u32,
    ip: &str,
    leader_ip: &str,
    leader_port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Launcher {
    let launcher_port = free_port_on(ip);
    let group_port = if rank == 0 {
        leader_port
    } else {
        free_port_on(ip)
    };
    let engine_port = free_port_on(ip);
    let mut cmd = Command::new(BIN);
    cmd.arg("--config-json")
        .arg(cfg.to_json())
        .args(["--rank", &rank.to_string()])
        .args(["--leader", leader_ip, "--bind", ip])
        .args(["--launcher-port", &launcher_port.to_string()])
        .args(["--group-port", &group_port.to_string()])
        .args(["--engine-port", &engine_port.to_string()])
        .args(["--leader-port", &leader_port.to_string()])
        .args(["--dist-port", &dist_port_of(leader_port).to_string()])
        .args(extra)
        .env_remove("DSO_LAUNCH_CONFIG")
        .env("RUST_LOG", "info")
        .env(deepseek_engine::env::GROUP_TOKEN, GROUP_TOKEN)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("DSO_TEST_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
    let child = cmd.spawn().expect("spawn deepseek-launcher");
    Launcher {
        child,
        ip: ip.to_string(),
        launcher_port,
        group_port,
        engine_port,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Polls `cond` until it returns true or `deadline` passes (then panics with `what`).
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET a URL, returning status and body (None on connection errors).
pub async fn get(c: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = c.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

//! Simulated engines for a LeaderWorkerSet: the sim engine alone (`deepseek-launcher
//! sim`, the same engine our launcher starts) on each Running group leader's 127.x IP, at
//! the port the template's `vllm serve` uses, serving the model under its own name. It
//! exports vLLM's metric names (`vllm:num_requests_waiting`, `vllm:num_requests_running`),
//! which the benchmark's external metrics adapter reads for the HPA. The workers of a
//! group get no process: nothing reads them, and the load goes to the leader as it would
//! to vLLM's API server on rank 0.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::Kind;

/// `vllm serve --port 8080` in the benchmark's LWS template.
pub const PORT: u16 = 8080;

struct Proc {
    child: Child,
    ip: Ipv4Addr,
}

fn kill(p: &mut Proc) {
    if let Ok(pid) = i32::try_from(p.child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = p.child.wait();
}

/// The engines by pod uid, and whether the owner has stopped: the poll task may be past
/// its last await when the owner stops (abort takes effect only at the next one), so it
/// checks this under the lock before starting anything.
#[derive(Default)]
struct State {
    procs: HashMap<String, Proc>,
    stopped: bool,
}

pub struct LwsSims {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

fn running_ip(p: &Pod) -> Option<Ipv4Addr> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let st = p.status.as_ref()?;
    if st.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: Ipv4Addr = st.pod_ip.as_deref()?.parse().ok()?;
    ip.is_loopback().then_some(ip)
}

fn spawn(launcher: &Path, ip: Ipv4Addr, model: &str, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(launcher)
        .args([
            "sim",
            "--host",
            &ip.to_string(),
            "--port",
            &PORT.to_string(),
        ])
        .args(["--served-model-name", model])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
}

impl LwsSims {
    pub fn start(client: Client, ns: &str, model: &str, launcher: &Path) -> LwsSims {
        let state: Arc<Mutex<State>> = Arc::default();
        let pods: Api<Pod> = Api::namespaced(client, ns);
        let lp = ListParams::default().labels(&Kind::Lws.leader_selector(model));
        let (model, launcher) = (model.to_string(), PathBuf::from(launcher));
        let log_dir = std::env::temp_dir().join("peers-fleet-logs");
        let _ = std::fs::create_dir_all(&log_dir);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&lp).await {
                    let wanted: HashMap<String, (String, Ipv4Addr)> = list
                        .items
                        .iter()
                        .filter_map(|p| Some((p.uid()?, (p.name_any(), running_ip(p)?))))
                        .collect();
                    if let Ok(mut st) = shared.lock() {
                        if st.stopped {
                            return;
                        }
                        let procs = &mut st.procs;
                        procs.retain(|uid, p| {
                            let keep = wanted.get(uid).is_some_and(|(_, ip)| *ip == p.ip)
                                && matches!(p.child.try_wait(), Ok(None));
                            if !keep {
                                kill(p);
                            }
                            keep
                        });
                        for (uid, (name, ip)) in wanted {
                            if procs.contains_key(&uid) {
                                continue;
                            }
                            let log = log_dir.join(format!("sim-lws-{name}.log"));
                            match spawn(&launcher, ip, &model, &log) {
                                Ok(child) => {
                                    procs.insert(uid, Proc { child, ip });
                                }
                                Err(e) => {
                                    eprintln!("peers-fleet: starting the sim for {name}: {e}")
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        LwsSims { state, task }
    }
}

impl Drop for LwsSims {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut st) = self.state.lock() {
            st.stopped = true;
            for (_, mut p) in st.procs.drain() {
                kill(&mut p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ip: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m00-0"},
            "status": {"phase": phase, "podIP": ip}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn engines_start_only_on_running_loopback_pods() {
        assert_eq!(
            running_ip(&pod("127.51.0.3", "Running")),
            Some(Ipv4Addr::new(127, 51, 0, 3))
        );
        assert_eq!(running_ip(&pod("127.51.0.3", "Pending")), None);
        assert_eq!(running_ip(&pod("198.51.100.3", "Running")), None);
    }
}

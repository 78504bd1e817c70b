//! The diagnostic dump printed to stderr when a test fails.
//!
//! It shows the namespace's events, resources and pod descriptions, the nodes,
//! and the tail of each control-plane component log in the state dir. It uses
//! kubectl synchronously so that it also works from `Drop` during a panic, when
//! no async runtime can be relied on.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::cluster::ClusterEnv;

/// Lines of each component log to show (`DSO_E2E_DIAG_LOG_LINES`, default 30).
fn log_lines() -> usize {
    std::env::var("DSO_E2E_DIAG_LOG_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// Lines of the node listing to show (large topologies have thousands of nodes).
const MAX_NODE_LINES: usize = 60;

fn kubectl(env: &ClusterEnv, args: &[&str], max_lines: Option<usize>) -> String {
    let out = Command::new(env.bin_dir.join("kubectl"))
        .env("KUBECONFIG", &env.kubeconfig)
        .arg("--request-timeout=10s")
        .args(args)
        .output();
    match out {
        Ok(out) => {
            let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&out.stderr));
            match max_lines {
                Some(n) if s.lines().count() > n => {
                    let total = s.lines().count();
                    let mut t: String = s.lines().take(n).collect::<Vec<_>>().join("\n");
                    let _ = write!(t, "\n... ({} more lines)", total - n);
                    t
                }
                _ => s,
            }
        }
        Err(e) => format!("(could not run kubectl: {e})"),
    }
}

fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Builds the diagnostic report for `namespace` (or only cluster-wide state).
pub fn report(env: &ClusterEnv, state_dir: &Path, namespace: Option<&str>) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "==================== e2e diagnostics ({}) ====================",
        namespace.unwrap_or("cluster")
    );
    if let Some(ns) = namespace {
        let _ = writeln!(r, "--- events in {ns} ---");
        r.push_str(&kubectl(
            env,
            &[
                "get",
                "events",
                "-n",
                ns,
                "--sort-by=.lastTimestamp",
                "-o",
                "wide",
            ],
            Some(200),
        ));
        let _ = writeln!(r, "--- resources in {ns} ---");
        r.push_str(&kubectl(
            env,
            &[
                "get",
                "all,configmaps,secrets,serviceaccounts",
                "-n",
                ns,
                "-o",
                "wide",
            ],
            Some(200),
        ));
        let _ = writeln!(r, "--- pods in {ns} (describe) ---");
        r.push_str(&kubectl(env, &["describe", "pods", "-n", ns], Some(400)));
    }
    let _ = writeln!(r, "--- nodes ---");
    r.push_str(&kubectl(
        env,
        &["get", "nodes", "-o", "wide", "-L", "e2e.deepseek.ai/pool"],
        Some(MAX_NODE_LINES),
    ));
    let logs = state_dir.join("logs");
    for comp in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ] {
        let path = logs.join(format!("{comp}.log"));
        let _ = writeln!(r, "\n--- tail of {} ---", path.display());
        r.push_str(&tail(&path, log_lines()));
    }
    let _ = writeln!(
        r,
        "\n==================== end of e2e diagnostics ===================="
    );
    r
}

/// Prints [`report`] to stderr.
pub fn dump(env: &ClusterEnv, state_dir: &Path, namespace: Option<&str>) {
    eprintln!("{}", report(env, state_dir, namespace));
}

//! A component that cannot start is named, with its log file, and nothing is left running.
//! A second, throwaway cluster in its own state directory and on its own ports is started
//! with a flag the API server refuses.

use std::net::TcpListener;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use deepseek_e2e::Cluster;

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
fn a_component_that_fails_to_start_is_named_with_its_log() -> Result<()> {
    let state = std::env::temp_dir().join(format!("dso-broken-cluster-{}", std::process::id()));
    let env = [
        ("DSO_CLUSTER_DIR", state.display().to_string()),
        ("DSO_API_PORT", free_port()?.to_string()),
        ("DSO_ETCD_PORT", free_port()?.to_string()),
        ("DSO_ETCD_PEER_PORT", free_port()?.to_string()),
        ("DSO_KCM_PORT", free_port()?.to_string()),
        ("DSO_SCHEDULER_PORT", free_port()?.to_string()),
        ("DSO_KWOK_PORT", free_port()?.to_string()),
        ("DSO_START_TIMEOUT", "30".to_string()),
        ("DSO_APISERVER_EXTRA_ARGS", "--no-such-flag=1".to_string()),
    ];
    let cluster = |verb: &str| {
        Command::new(Cluster::script())
            .arg(verb)
            .envs(env.iter().cloned())
            .output()
    };
    let out = cluster("up").context("running e2e/cluster up")?;
    let down = cluster("down");
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "up must fail when the API server cannot start:\n{stderr}"
    );
    ensure!(
        stderr.contains("kube-apiserver"),
        "the failing component is named:\n{stderr}"
    );
    let log = state.join("logs").join("kube-apiserver.log");
    ensure!(
        stderr.contains(&log.display().to_string()),
        "its log file is named ({}):\n{stderr}",
        log.display()
    );
    ensure!(
        stderr.contains("no-such-flag"),
        "the log's last lines are shown:\n{stderr}"
    );
    ensure!(
        down.map(|o| o.status.success()).unwrap_or(false),
        "down cleans up after a failed up"
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

//! Start order across the ranks of a group, recorded in one shared trace file (the
//! launchers' `--trace-stages` and the engines' own lines, appended in the order they
//! happen): the leader's head is up before it accepts a join, a worker starts nothing
//! before it has joined, and no engine serves before the group is complete.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use deepseek_engine::{Engine, SimProfile};

fn write_script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn trace_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Index of the first line equal to `line`, failing with the whole trace.
fn at(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} missing from the trace {lines:#?}"))
}

fn assert_before(lines: &[String], first: &str, then: &str) {
    assert!(
        at(lines, first) < at(lines, then),
        "{first:?} must come before {then:?}: {lines:#?}"
    );
}

async fn wait_for_lines(trace: &Path, wanted: &[&str]) {
    wait_until("every rank serves", Duration::from_secs(60), || async {
        let lines = trace_lines(trace);
        wanted.iter().all(|w| lines.iter().any(|l| l == w))
    })
    .await;
}

fn stop(ranks: [Launcher; 2]) {
    for l in &ranks {
        l.sigterm();
    }
    for l in ranks {
        let (status, err) = l.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{status}: {err}");
    }
}

/// vLLM's rendered multi-node steps (every rank runs `vllm serve`, workers `--headless`)
/// with a stand-in `vllm` that records when it runs; the worker is started first.
#[tokio::test]
async fn vllm_ranks_serve_only_once_the_group_joined() {
    let dir = std::env::temp_dir().join(format!("dso-start-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace = dir.join("trace");
    let _ = std::fs::remove_file(&trace);
    write_script(
        &dir,
        "vllm",
        r#"case "$*" in
  *--headless*) echo "$DSO_TEST_RANK vllm headless started" >> "$DSO_TEST_TRACE" ;;
  *) echo "$DSO_TEST_RANK vllm serve started" >> "$DSO_TEST_TRACE" ;;
esac
exec sleep 300"#,
    );
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cfg = sim_config(2, SimProfile::default());
    cfg.engine = Engine::Vllm;
    cfg.sim = None;
    let trace_s = trace.display().to_string();
    let flags = [
        "--trace-stages",
        trace_s.as_str(),
        "--rendezvous-timeout",
        "60",
        "--drain-seconds",
        "1",
    ];
    let env = |rank: &'static str| {
        vec![
            ("PATH", path.as_str()),
            ("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7"),
            ("DSO_TEST_TRACE", trace_s.as_str()),
            ("DSO_TEST_RANK", rank),
        ]
    };
    let leader_port = free_port_on("127.0.0.6");
    let worker = spawn_launcher_at(
        &cfg,
        1,
        "127.0.0.7",
        "127.0.0.6",
        leader_port,
        &flags,
        &env("1"),
    );
    let leader = spawn_launcher_at(
        &cfg,
        0,
        "127.0.0.6",
        "127.0.0.6",
        leader_port,
        &flags,
        &env("0"),
    );
    wait_for_lines(&trace, &["0 vllm serve started", "1 vllm headless started"]).await;
    let lines = trace_lines(&trace);
    assert_before(&lines, "0 open-rendezvous", "0 accepted rank 1");
    assert_before(&lines, "0 accepted rank 1", "1 join-leader");
    assert_before(&lines, "0 accepted rank 1", "0 vllm serve started");
    assert_before(&lines, "1 await-group", "1 serve vllm");
    assert_before(&lines, "0 accepted rank 1", "1 vllm headless started");
    stop([leader, worker]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sim launcher: the same order, the worker's sim rank starting only after it joined.
#[tokio::test]
async fn sim_ranks_join_before_they_serve() {
    let trace = std::env::temp_dir().join(format!("dso-start-order-sim-{}", std::process::id()));
    let _ = std::fs::remove_file(&trace);
    let trace_s = trace.display().to_string();
    let cfg = sim_config(2, SimProfile::default());
    let flags = ["--trace-stages", trace_s.as_str(), "--drain-seconds", "1"];
    let leader_port = free_port_on("127.0.0.8");
    let worker = spawn_launcher_at(&cfg, 1, "127.0.0.9", "127.0.0.8", leader_port, &flags, &[]);
    // The worker comes first and must wait for the leader.
    wait_until("the worker is up", Duration::from_secs(30), || async {
        get(&client(), &format!("{}/healthz", worker.launcher_url()))
            .await
            .is_some()
    })
    .await;
    let leader = spawn_launcher_at(&cfg, 0, "127.0.0.8", "127.0.0.8", leader_port, &flags, &[]);
    wait_for_lines(
        &trace,
        &["0 serve deepseek-launcher", "1 serve deepseek-launcher"],
    )
    .await;
    let lines = trace_lines(&trace);
    assert_before(&lines, "0 open-rendezvous", "0 accepted rank 1");
    assert_before(&lines, "1 join-leader", "1 serve deepseek-launcher");
    assert_before(&lines, "0 accepted rank 1", "0 serve deepseek-launcher");
    assert_before(&lines, "0 await-group", "0 serve deepseek-launcher");
    stop([leader, worker]);
    let _ = std::fs::remove_file(&trace);
}

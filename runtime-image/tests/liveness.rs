//! Liveness follows the engine: once the engine has answered its health endpoint, the
//! launcher's `/healthz` answers 200 only while the engine keeps answering within the
//! bound, so the kubelet restarts a hung engine. The sim engine is made to hang by
//! stopping its process (SIGSTOP): its socket still accepts connections, nothing answers.
//!
//! Before, `/healthz` answered "ok" whatever the engine did.

mod common;

use std::time::Duration;

use common::*;
use deepseek_engine::SimProfile;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Child processes of `parent`, from `/proc/<pid>/stat` (field 4 is the parent's pid).
fn children(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: parse after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn a_hung_engine_fails_liveness_and_a_recovered_one_passes_again() {
    let profile = SimProfile {
        prefill_tokens_per_s: 1e5,
        decode_tokens_per_s: 1e4,
        max_running: 8,
    };
    let cfg = sim_config(1, profile);
    let l = spawn_launcher(&cfg, 0, free_port(), &["--drain-seconds", "1"], &[]);
    let c = client();
    let healthz = format!("{}/healthz", l.launcher_url());
    wait_until("ready", Duration::from_secs(30), || async {
        get(&c, &format!("{}/readyz", l.launcher_url()))
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    let (status, body) = get(&c, &healthz).await.expect("healthz answers");
    assert_eq!(status, 200, "{body}");

    let engine = children(l.child.id());
    assert_eq!(engine.len(), 1, "one engine process: {engine:?}");
    let engine = Pid::from_raw(engine[0]);
    kill(engine, Signal::SIGSTOP).expect("SIGSTOP the engine");
    // The probe's own timeout is the bound plus a second: the launcher answers first.
    let bound = Duration::from_millis(deepseek_engine::LIVENESS_ENGINE_TIMEOUT_MS);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let started = std::time::Instant::now();
        let answer = get(&c, &healthz).await;
        let took = started.elapsed();
        assert!(
            took < bound + Duration::from_secs(1),
            "the launcher answers liveness within the probe's timeout: {took:?}"
        );
        if let Some((503, body)) = answer {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "liveness still passes with the engine hung: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("did not answer"), "{body}");

    kill(engine, Signal::SIGCONT).expect("SIGCONT the engine");
    wait_until("liveness passes again", Duration::from_secs(20), || async {
        get(&c, &healthz).await.is_some_and(|(s, _)| s == 200)
    })
    .await;
}

//! Rendezvous of N launchers on 127.0.0.1 (different ports): all ranks join -> ready;
//! a rank that never arrives -> the leader fails with a timeout naming it.

mod common;

use std::time::Duration;

use common::*;
use deepseek_engine::metrics::parse_normalised;
use deepseek_engine::SimProfile;

fn fast() -> SimProfile {
    SimProfile {
        prefill_tokens_per_s: 1e5,
        decode_tokens_per_s: 1e4,
        max_running: 8,
    }
}

#[tokio::test]
async fn three_ranks_join_and_the_leader_serves() {
    let cfg = sim_config(3, fast());
    let leader_port = free_port();
    let leader = spawn_launcher(&cfg, 0, leader_port, &["--rendezvous-timeout", "60"], &[]);
    let c = client();
    // Before the workers arrive the leader is alive but not ready.
    wait_until("leader /healthz", Duration::from_secs(30), || async {
        get(&c, &format!("{}/healthz", leader.launcher_url()))
            .await
            .is_some()
    })
    .await;
    let (status, body) = get(&c, &format!("{}/readyz", leader.launcher_url()))
        .await
        .expect("readyz answers");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("missing ranks [1, 2]"), "{body}");

    let w1 = spawn_launcher(&cfg, 1, leader_port, &["--rendezvous-timeout", "60"], &[]);
    let w2 = spawn_launcher(&cfg, 2, leader_port, &["--rendezvous-timeout", "60"], &[]);
    wait_until("leader ready", Duration::from_secs(60), || async {
        get(&c, &format!("{}/readyz", leader.launcher_url()))
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    for w in [&w1, &w2] {
        wait_until("worker ready", Duration::from_secs(30), || async {
            get(&c, &format!("{}/readyz", w.launcher_url()))
                .await
                .is_some_and(|(s, _)| s == 200)
        })
        .await;
    }
    let (_, text) = get(&c, &format!("{}/metrics", leader.launcher_url()))
        .await
        .expect("metrics");
    let m = parse_normalised(&text);
    assert!(m.ready && m.engine_up, "{text}");
    assert_eq!((m.ranks_joined, m.group_size), (3, 3), "{text}");

    let r = c
        .post(format!("{}/v1/completions", leader.engine_url()))
        .json(&serde_json::json!({"model": "deepseek-v3", "prompt": "hello"}))
        .send()
        .await
        .expect("completion");
    assert_eq!(r.status().as_u16(), 200);

    // A pod deletion signals every rank at once; the workers wait for the leader.
    for l in [&w2, &w1, &leader] {
        l.sigterm();
    }
    for l in [w2, w1, leader] {
        let (status, err) = l.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{status}: {err}");
    }
}

#[tokio::test]
async fn a_missing_rank_times_out_with_its_number() {
    let cfg = sim_config(3, fast());
    let leader_port = free_port();
    let leader = spawn_launcher(&cfg, 0, leader_port, &["--rendezvous-timeout", "3"], &[]);
    let w1 = spawn_launcher(&cfg, 1, leader_port, &["--rendezvous-timeout", "60"], &[]);
    let (status, err) = leader.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    assert!(
        err.contains("rendezvous timed out")
            && err.contains("ranks [2] of a group of 3 never joined"),
        "{err}"
    );
    drop(w1);
}

#[tokio::test]
async fn a_worker_without_a_leader_times_out() {
    let cfg = sim_config(2, fast());
    let nobody = free_port();
    let w = spawn_launcher(&cfg, 1, nobody, &["--rendezvous-timeout", "1"], &[]);
    let (status, err) = w.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    assert!(err.contains("rank 1 could not join the leader"), "{err}");
}

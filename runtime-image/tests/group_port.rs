//! The group's own endpoints (rendezvous, rank health, drain) are not served on the
//! public launcher port, which the NetworkPolicy opens to client namespaces, and the
//! group port refuses every call without the group token: a client cannot stop a leader
//! with one `/drain`, nor point it at a URL of its choosing with a forged join.
//!
//! Before the group port, `GET /drain` on the public port stopped the leader, and any
//! `POST /rendezvous/join` was accepted.

mod common;

use std::time::Duration;

use common::*;
use deepseek_engine::{SimProfile, DRAIN_PATH, JOIN_PATH, RANK_HEALTH_PATH, RENDEZVOUS_PATH};

fn fast() -> SimProfile {
    SimProfile {
        prefill_tokens_per_s: 1e5,
        decode_tokens_per_s: 1e4,
        max_running: 8,
    }
}

async fn status_of(r: Result<reqwest::Response, reqwest::Error>) -> u16 {
    r.expect("the launcher answers").status().as_u16()
}

fn forged_join() -> serde_json::Value {
    serde_json::json!({"rank": 1, "launcherUrl": "http://127.0.0.99:9"})
}

#[tokio::test]
async fn a_client_on_the_public_port_can_neither_drain_nor_join() {
    let cfg = sim_config(1, fast());
    let l = spawn_launcher(&cfg, 0, free_port(), &["--drain-seconds", "5"], &[]);
    let c = client();
    let public = l.launcher_url();
    wait_until("ready", Duration::from_secs(30), || async {
        get(&c, &format!("{public}/readyz"))
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    for path in [DRAIN_PATH, JOIN_PATH, RENDEZVOUS_PATH, RANK_HEALTH_PATH] {
        let url = format!("{public}{path}");
        assert_eq!(status_of(c.get(&url).send().await).await, 404, "GET {path}");
        let post = c.post(&url).json(&forged_join()).send().await;
        assert_eq!(status_of(post).await, 404, "POST {path}");
    }
    // The group port without the token, or with another one: refused.
    let drain = format!("{}{DRAIN_PATH}", l.group_url());
    assert_eq!(status_of(c.post(&drain).send().await).await, 403);
    let wrong = c.post(&drain).bearer_auth("not-the-token").send().await;
    assert_eq!(status_of(wrong).await, 403);
    let prefix = c.post(&drain).bearer_auth(&GROUP_TOKEN[..8]).send().await;
    assert_eq!(status_of(prefix).await, 403);
    // None of it stopped the rank.
    let (status, body) = get(&c, &format!("{public}/readyz"))
        .await
        .expect("readyz answers");
    assert_eq!(status, 200, "{body}");
    // With the token, the drain is honoured.
    let drained = c.post(&drain).bearer_auth(GROUP_TOKEN).send().await;
    assert_eq!(status_of(drained).await, 200);
    let (status, err) = l.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
}

#[tokio::test]
async fn a_join_without_the_token_is_refused_and_the_group_forms_with_it() {
    let cfg = sim_config(2, fast());
    let leader_port = free_port();
    let flags = ["--rendezvous-timeout", "60"];
    let leader = spawn_launcher(&cfg, 0, leader_port, &flags, &[]);
    let c = client();
    let join = format!("{}{JOIN_PATH}", leader.group_url());
    let status = format!("{}{RENDEZVOUS_PATH}", leader.group_url());
    // Once the rendezvous is open, a join with the token would be accepted...
    wait_until(
        "the leader's group port",
        Duration::from_secs(30),
        || async {
            c.get(&status)
                .bearer_auth(GROUP_TOKEN)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    // ...but a forged one, without it or with another, is not.
    let bare = c.post(&join).json(&forged_join()).send().await;
    assert_eq!(status_of(bare).await, 403);
    let wrong = c
        .post(&join)
        .bearer_auth("guess")
        .json(&forged_join())
        .send()
        .await;
    assert_eq!(status_of(wrong).await, 403);
    assert_eq!(status_of(c.get(&status).send().await).await, 403);
    let s: serde_json::Value = c
        .get(&status)
        .bearer_auth(GROUP_TOKEN)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(s["joined"], serde_json::json!([0]), "{s}");

    // A worker with another token cannot join either.
    let stranger = spawn_launcher(
        &cfg,
        1,
        leader_port,
        &["--rendezvous-timeout", "2"],
        &[(deepseek_engine::env::GROUP_TOKEN, "another-groups-token")],
    );
    let (code, err) = stranger.wait_exit(Duration::from_secs(30));
    assert!(!code.success());
    assert!(err.contains("403"), "{err}");

    // The group's own worker joins and the group serves.
    let worker = spawn_launcher(&cfg, 1, leader_port, &flags, &[]);
    wait_until("the group is ready", Duration::from_secs(60), || async {
        get(&c, &format!("{}/readyz", leader.launcher_url()))
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    // The leader drains first, as in a pod deletion; the worker then follows.
    drop(leader);
    drop(worker);
}

#[test]
fn a_multi_node_launcher_without_a_token_refuses_to_start() {
    let cfg = sim_config(2, fast());
    let l = spawn_launcher(
        &cfg,
        0,
        free_port(),
        &[],
        &[(deepseek_engine::env::GROUP_TOKEN, "")],
    );
    let (code, err) = l.wait_exit(Duration::from_secs(30));
    assert!(!code.success());
    assert!(err.contains("needs its group token"), "{err}");
}

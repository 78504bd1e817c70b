//! A 2-rank sim group (each rank on its own loopback address, as pods have their own IPs)
//! under streaming load, terminated mid-stream the way a pod deletion does it: SIGTERM to
//! both ranks at once. The leader refuses new requests with 503 and finishes the accepted
//! ones; the worker keeps its rank linked until the leader's engine has stopped. Every
//! accepted stream ends with `[DONE]`, and both launchers exit 0.
//!
//! Before the ordered drain, the worker stopped its rank at once, the sim leader lost its
//! group link and its streams were cut.

mod common;

use std::time::Duration;

use common::*;
use deepseek_engine::SimProfile;

const LEADER_IP: &str = "127.0.0.2";
const WORKER_IP: &str = "127.0.0.3";

async fn stream_one(c: reqwest::Client, url: String, tokens: u64) -> Result<(u16, String), String> {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "max_tokens": tokens,
    });
    let r = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("stream cut: {e}"))?;
    Ok((status, text))
}

async fn ready(c: &reqwest::Client, l: &Launcher) -> bool {
    get(c, &format!("{}/readyz", l.launcher_url()))
        .await
        .is_some_and(|(s, _)| s == 200)
}

#[tokio::test]
async fn terminating_a_group_mid_stream_cuts_no_request() {
    // 40 tokens at 20 tok/s: each stream runs ~2 s, all 6 at once (8 slots).
    let profile = SimProfile {
        prefill_tokens_per_s: 1e4,
        decode_tokens_per_s: 20.0,
        max_running: 8,
    };
    let cfg = sim_config(2, profile);
    let leader_port = free_port_on(LEADER_IP);
    let flags = ["--drain-seconds", "30", "--rendezvous-timeout", "60"];
    let leader = spawn_launcher_at(&cfg, 0, LEADER_IP, LEADER_IP, leader_port, &flags, &[]);
    let worker = spawn_launcher_at(&cfg, 1, WORKER_IP, LEADER_IP, leader_port, &flags, &[]);
    let c = client();
    wait_until("the group is ready", Duration::from_secs(60), || async {
        ready(&c, &leader).await && ready(&c, &worker).await
    })
    .await;

    const N: usize = 6;
    const TOKENS: u64 = 40;
    let streams: Vec<_> = (0..N)
        .map(|_| tokio::spawn(stream_one(c.clone(), leader.engine_url(), TOKENS)))
        .collect();
    wait_until(
        "every stream is running",
        Duration::from_secs(30),
        || async {
            get(&c, &format!("{}/metrics", leader.engine_url()))
                .await
                .is_some_and(|(_, t)| {
                    t.contains(&format!(
                        "vllm:num_requests_running{{engine=\"0\",model_name=\"deepseek-v3\"}} {N}"
                    ))
                })
        },
    )
    .await;

    // A pod deletion: both ranks get SIGTERM at the same moment.
    leader.sigterm();
    worker.sigterm();

    // New requests are refused with 503 once the drain has begun.
    let start = std::time::Instant::now();
    let refused = loop {
        let r = c
            .post(format!("{}/v1/completions", leader.engine_url()))
            .json(&serde_json::json!({"prompt": "late"}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("a new request must get 503, not a closed port: {e}"));
        match r.status().as_u16() {
            503 => break Some(r.text().await.unwrap_or_default()),
            // The signal has not reached the engine yet.
            200 => {}
            other => panic!("unexpected status {other}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        refused.as_deref().is_some_and(|b| b.contains("draining")),
        "{refused:?}"
    );

    let mut cut = Vec::new();
    for s in streams {
        match s.await.expect("task") {
            Ok((200, text))
                if text.trim_end().ends_with("data: [DONE]")
                    && text.matches("data: {").count() == TOKENS as usize => {}
            other => cut.push(other),
        }
    }
    assert!(
        cut.is_empty(),
        "{} of {N} streams were cut: {cut:?}",
        cut.len()
    );

    let (status, err) = leader.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "leader: {status}: {err}");
    let (status, err) = worker.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "worker: {status}: {err}");
    assert!(
        err.contains("draining") && !err.contains("stopping anyway"),
        "the worker waited for the leader: {err}"
    );
}

#[tokio::test]
async fn the_leaders_prestop_drain_answers_once_the_engine_stopped() {
    let profile = SimProfile {
        prefill_tokens_per_s: 1e4,
        decode_tokens_per_s: 20.0,
        max_running: 4,
    };
    let cfg = sim_config(1, profile);
    let port = free_port();
    let l = spawn_launcher(&cfg, 0, port, &["--drain-seconds", "30"], &[]);
    let c = client();
    wait_until("ready", Duration::from_secs(30), || ready(&c, &l)).await;
    let s = tokio::spawn(stream_one(c.clone(), l.engine_url(), 30));
    wait_until("the stream runs", Duration::from_secs(30), || async {
        get(&c, &format!("{}/metrics", l.launcher_url()))
            .await
            .is_some_and(|(_, t)| t.contains("dso_requests_running 1"))
    })
    .await;
    // The leader's preStop hook: `deepseek-launcher drain`, which posts to the group
    // port with the group token and blocks until the drain is over.
    let (bind, group_port) = (l.ip.clone(), l.group_port.to_string());
    let hook = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::BIN)
            .args(["drain", "--bind", &bind, "--group-port", &group_port])
            .args(["--drain-seconds", "30"])
            .env(deepseek_engine::env::GROUP_TOKEN, common::GROUP_TOKEN)
            .output()
            .expect("run deepseek-launcher drain")
    });
    let (status, text) = s.await.expect("task").expect("the stream completes");
    assert_eq!(status, 200);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let hook = hook.await.expect("hook task");
    let out = String::from_utf8_lossy(&hook.stdout);
    assert!(hook.status.success(), "{out}");
    assert!(out.contains("200 OK drained"), "{out}");
    let (status, err) = l.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
}

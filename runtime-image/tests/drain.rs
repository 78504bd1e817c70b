//! SIGTERM drains: readiness drops, accepted requests (running and queued) all complete
//! with 200, the launcher exits 0.

mod common;

use std::time::Duration;

use common::*;
use deepseek_engine::metrics::parse_normalised;
use deepseek_engine::SimProfile;

#[tokio::test]
async fn sigterm_loses_no_accepted_request() {
    // 16 tokens at 20 tok/s: each request runs ~0.8 s; 2 slots, so 6 requests queue.
    let profile = SimProfile {
        prefill_tokens_per_s: 1e4,
        decode_tokens_per_s: 20.0,
        max_running: 2,
    };
    let cfg = sim_config(1, profile);
    let port = free_port();
    let l = spawn_launcher(&cfg, 0, port, &["--drain-seconds", "60"], &[]);
    let c = client();
    wait_until("ready", Duration::from_secs(30), || async {
        get(&c, &format!("{}/readyz", l.launcher_url()))
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;

    const N: usize = 8;
    let mut reqs = Vec::new();
    for i in 0..N {
        let c = c.clone();
        let url = l.engine_url();
        let stream = i % 2 == 0;
        reqs.push(tokio::spawn(async move {
            let path = if stream {
                "chat/completions"
            } else {
                "completions"
            };
            let body = if stream {
                serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "stream": true})
            } else {
                serde_json::json!({"prompt": "hi"})
            };
            let r = c
                .post(format!("{url}/v1/{path}"))
                .json(&body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            Ok::<_, reqwest::Error>((status, stream, text))
        }));
    }
    wait_until("all requests accepted", Duration::from_secs(30), || async {
        get(&c, &format!("{}/metrics", l.launcher_url()))
            .await
            .map(|(_, t)| parse_normalised(&t))
            .is_some_and(|m| {
                m.load.running.unwrap_or(0.0) + m.load.queue_depth.unwrap_or(0.0) == N as f64
            })
    })
    .await;

    l.sigterm();
    wait_until("readiness drops", Duration::from_secs(30), || async {
        get(&c, &format!("{}/readyz", l.launcher_url()))
            .await
            .is_none_or(|(s, _)| s == 503)
    })
    .await;
    for r in reqs {
        let (status, stream, text) = r.await.expect("task").expect("request completes");
        assert_eq!(status, 200, "{text}");
        if stream {
            assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
            assert_eq!(text.matches("data: {").count(), 16, "{text}");
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            assert_eq!(v["usage"]["completion_tokens"], 16, "{text}");
        }
    }
    let (status, err) = l.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}: {err}");
}

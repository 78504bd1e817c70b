//! The sim's load delay (`--load-seconds`, `DSO_SIM_LOAD_SECONDS`) stands in for weight
//! loading: the engine is unhealthy and refuses generation with 503 until it is over.

use std::time::{Duration, Instant};

use deepseek_engine::SimProfile;
use deepseek_launcher::sim::{self, SimSettings};

#[tokio::test]
async fn the_engine_serves_only_after_its_load_delay() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let settings = SimSettings {
        served_model_name: "m".into(),
        max_model_len: 4096,
        profile: SimProfile::default(),
        time_scale: 0.0,
        pd_role: None,
        load_delay: Duration::from_millis(800),
    };
    let started = Instant::now();
    tokio::spawn(sim::serve(
        listener,
        settings,
        std::future::pending(),
        Duration::from_secs(1),
        None,
        None,
    ));
    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let chat =
        serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    let health = c.get(format!("{url}/health")).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 503, "unhealthy while loading");
    let r = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status().as_u16(), 503, "no generation while loading");
    let deadline = started + Duration::from_secs(10);
    loop {
        let h = c.get(format!("{url}/health")).send().await.expect("health");
        if h.status().is_success() {
            break;
        }
        assert!(Instant::now() < deadline, "never became healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "healthy before the delay"
    );
    let r = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status().as_u16(), 200);
}

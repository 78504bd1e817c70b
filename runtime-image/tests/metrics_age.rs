//! The launcher's `/metrics` answers from its background reading: when the engine turns
//! slow (saturated), a scrape with the autoscaler's 2 s timeout still gets the last queue
//! figures, with their age, instead of timing out or losing the queue gauges.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use deepseek_engine::metrics::{parse_age, parse_normalised};
use deepseek_launcher::server::router;
use deepseek_launcher::state::LauncherState;

async fn hang_if(slow: &AtomicBool) {
    if slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// An engine double on 127.0.0.1 whose `/health` and `/metrics` hang while `slow` is set.
async fn engine(slow: Arc<AtomicBool>) -> String {
    let app = Router::new()
        .route(
            "/health",
            get(|State(s): State<Arc<AtomicBool>>| async move {
                hang_if(&s).await;
                "ok"
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<AtomicBool>>| async move {
                hang_if(&s).await;
                "vllm:num_requests_waiting 12\nvllm:num_requests_running 4\n"
            }),
        )
        .with_state(slow);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind engine");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

async fn scrape(url: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .expect("the launcher answers within the autoscaler's timeout")
        .text()
        .await
        .expect("body")
}

#[tokio::test]
async fn a_saturated_engine_still_yields_its_last_queue_with_an_age() {
    let slow = Arc::new(AtomicBool::new(false));
    let engine_url = engine(slow.clone()).await;
    let state = Arc::new(LauncherState::new(0, 1, Some(engine_url), None, None));
    state.serving.store(true, Ordering::SeqCst);
    state.group_complete.store(true, Ordering::SeqCst);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind launcher");
    let url = format!("http://{}/metrics", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, router(state, Duration::from_secs(1))).await });

    let fresh = scrape(&url).await;
    assert_eq!(
        parse_normalised(&fresh).load.queue_depth,
        Some(12.0),
        "{fresh}"
    );
    assert!(parse_age(&fresh).is_some(), "{fresh}");

    slow.store(true, Ordering::SeqCst);
    // Every scrape from now on finds the engine hanging; each must still carry the
    // queue, and the age grows past the time the engine went slow.
    let mut last_age = 0.0;
    for _ in 0..5 {
        let text = scrape(&url).await;
        let m = parse_normalised(&text);
        assert_eq!(m.load.queue_depth, Some(12.0), "{text}");
        assert_eq!(m.load.running, Some(4.0), "{text}");
        let age = parse_age(&text).expect("an age");
        assert!(age >= last_age, "{text}");
        last_age = age;
    }
    assert!(last_age > 0.0);
}

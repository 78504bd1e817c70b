//! The front on loopback, against in-process sim engines: held requests are forwarded
//! once a group is ready and answered exactly once, the queue and wait bounds answer 503
//! with Retry-After, streams pass through unbuffered, and least-outstanding balancing
//! keeps new requests off a busy group.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use deepseek_engine::SimProfile;
use deepseek_launcher::front::{self, BackendSpec, Balance, Front, FrontConfig, Source};
use deepseek_launcher::sim::{self, SimSettings};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const MODEL: &str = "sim-model";

/// A sim engine on 127.0.0.1; stops when dropped.
struct Engine {
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn engine(decode_tokens_per_s: f64, load_delay: Duration) -> Engine {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sim");
    let url = format!("http://{}", listener.local_addr().expect("sim address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let settings = SimSettings {
        served_model_name: MODEL.into(),
        max_model_len: 4096,
        profile: SimProfile {
            prefill_tokens_per_s: 1e6,
            decode_tokens_per_s,
            max_running: 256,
        },
        time_scale: 1.0,
        pd_role: None,
        load_delay,
    };
    tokio::spawn(sim::serve(
        listener,
        settings,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
        None,
        None,
    ));
    Engine { url, _stop: stop }
}

/// A front on 127.0.0.1; stops when dropped.
struct FrontUnderTest {
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn start_front(cfg: FrontConfig) -> FrontUnderTest {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let url = format!("http://{}", listener.local_addr().expect("front address"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(front::serve(listener, Front::new(cfg), async move {
        let _ = stopped.await;
    }));
    FrontUnderTest { url, _stop: stop }
}

fn config(queue_size: usize, max_wait: Duration, source: Source) -> FrontConfig {
    FrontConfig {
        queue_size,
        max_wait,
        retry_after: Duration::from_secs(7),
        probe_every: Duration::from_millis(100),
        balance: Balance::LeastOutstanding,
        source,
        token: Some("front-token".into()),
    }
}

fn backend(e: &Engine) -> BackendSpec {
    e.url.parse().expect("backend spec")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn chat(max_tokens: u64, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": MODEL, "stream": stream, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

/// A streamed chat through `url`: status, the content chunks, and whether `[DONE]` came.
async fn streamed_chat(c: &reqwest::Client, url: &str, max_tokens: u64) -> (u16, usize, bool) {
    let r = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat(max_tokens, true))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let chunks = text.lines().filter(|l| l.starts_with("data: {")).count();
    (status, chunks, text.contains("data: [DONE]"))
}

async fn status(c: &reqwest::Client, front: &str) -> serde_json::Value {
    c.get(format!("{front}/front/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON")
}

/// Waits (with a deadline) until `/front/status` satisfies `ok`.
async fn wait_status(
    c: &reqwest::Client,
    front: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(c, front).await;
        if ok(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: front status stayed {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests the engine answered in full (`vllm:request_success_total`).
async fn answered(c: &reqwest::Client, engine: &Engine) -> u64 {
    let text = c
        .get(format!("{}/metrics", engine.url))
        .send()
        .await
        .expect("engine metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("vllm:request_success_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("request_success_total in the sim's metrics")
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dso-front-{}-{name}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_answered_once_when_a_group_is_ready_and_the_21st_gets_503() {
    let file = temp_file("backends");
    std::fs::write(&file, "# no group yet\n").expect("write backends file");
    let f = start_front(config(
        20,
        Duration::from_secs(60),
        Source {
            fixed: vec![],
            file: Some(file.clone()),
        },
    ))
    .await;
    let c = client();
    let started = Instant::now();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (c.clone(), f.url.clone());
            tokio::spawn(async move { streamed_chat(&c, &url, 8).await })
        })
        .collect();
    wait_status(&c, &f.url, "20 requests held", |s| s["held"] == 20).await;
    let metrics = c
        .get(format!("{}/metrics", f.url))
        .send()
        .await
        .expect("front metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.lines().any(|l| l == "dso_front_held_requests 20"),
        "held count exported: {metrics}"
    );

    // The 21st is over the bound: 503 with Retry-After at once, not a hang.
    let t = Instant::now();
    let r = c
        .post(format!("{}/v1/chat/completions", f.url))
        .json(&chat(8, true))
        .send()
        .await
        .expect("21st");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert!(t.elapsed() < Duration::from_secs(2), "refused at once");

    // A group appears, loading its weights for 1 s (503 meanwhile): still held.
    let e = engine(200.0, Duration::from_secs(1)).await;
    std::fs::write(&file, format!("{}\n", e.url)).expect("write backends file");
    for r in requests {
        let (code, chunks, done) = r.await.expect("request task");
        assert_eq!((code, chunks, done), (200, 8, true), "answered in full");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the load"
    );
    assert_eq!(
        answered(&c, &e).await,
        20,
        "each held request answered exactly once"
    );
    wait_status(&c, &f.url, "nothing held", |s| s["held"] == 0).await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_waits_at_most_its_bound() {
    let f = start_front(config(5, Duration::from_millis(400), Source::default())).await;
    let c = client();
    let t = Instant::now();
    let r = c
        .post(format!("{}/v1/completions", f.url))
        .json(&serde_json::json!({"model": MODEL, "prompt": "hi"}))
        .send()
        .await
        .expect("request");
    let waited = t.elapsed();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    let body = r.text().await.expect("body");
    assert!(body.contains("max wait"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_passes_through_unbuffered() {
    // 10 tokens at 10 tokens/s: the answer takes about a second.
    let e = engine(10.0, Duration::ZERO).await;
    let f = start_front(config(
        5,
        Duration::from_secs(10),
        Source {
            fixed: vec![backend(&e)],
            file: None,
        },
    ))
    .await;
    let c = client();
    wait_status(&c, &f.url, "group ready", |s| {
        s["backends"][0]["ready"] == true
    })
    .await;
    let t = Instant::now();
    let r = c
        .post(format!("{}/v1/chat/completions", f.url))
        .json(&chat(10, true))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let mut first = None;
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        if first.is_none() && chunk.windows(7).any(|w| w == b"data: {") {
            first = Some(t.elapsed());
        }
        text.extend_from_slice(&chunk);
    }
    let total = t.elapsed();
    let first = first.expect("a data chunk");
    assert!(String::from_utf8_lossy(&text).contains("[DONE]"));
    assert!(total >= Duration::from_millis(900), "total {total:?}");
    assert!(
        first < total / 2,
        "first token at {first:?} of {total:?}: the front buffered the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_keeps_new_requests_off_a_busy_group() {
    let a = engine(20.0, Duration::ZERO).await;
    let b = engine(20.0, Duration::ZERO).await;
    let f = start_front(config(
        5,
        Duration::from_secs(10),
        Source {
            fixed: vec![backend(&a), backend(&b)],
            file: None,
        },
    ))
    .await;
    let c = client();
    wait_status(&c, &f.url, "both ready", |s| {
        s["backends"]
            .as_array()
            .is_some_and(|l| l.iter().all(|b| b["ready"] == true))
    })
    .await;
    // One long generation (2 s) holds one group; then short requests one after another.
    let long = {
        let (c, url) = (c.clone(), f.url.clone());
        tokio::spawn(async move { streamed_chat(&c, &url, 40).await })
    };
    wait_status(&c, &f.url, "the long request outstanding", |s| {
        s["backends"]
            .as_array()
            .is_some_and(|l| l.iter().any(|b| b["outstanding"] == 1))
    })
    .await;
    for _ in 0..6 {
        assert_eq!(streamed_chat(&c, &f.url, 1).await, (200, 1, true));
    }
    let (on_a, on_b) = (answered(&c, &a).await, answered(&c, &b).await);
    assert_eq!(long.await.expect("long").0, 200);
    // Short ones all went to the idle group (the long one is not finished when counted).
    assert!(
        (on_a, on_b) == (6, 0) || (on_a, on_b) == (0, 6),
        "short requests split {on_a}/{on_b}: not least-outstanding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_refuses_is_not_the_answer() {
    // A draining or loading group answers 503: the front sends the request to a group
    // that serves instead of passing that 503 on. The refusing group's readiness URL is
    // the serving one's, so the probe keeps calling it ready.
    let loading = engine(200.0, Duration::from_secs(3600)).await;
    let serving = engine(200.0, Duration::ZERO).await;
    let refusing = BackendSpec {
        url: loading.url.clone(),
        ready_url: format!("{}/health", serving.url),
    };
    let f = start_front(config(
        5,
        Duration::from_secs(10),
        Source {
            fixed: vec![refusing, backend(&serving)],
            file: None,
        },
    ))
    .await;
    let c = client();
    wait_status(&c, &f.url, "both ready", |s| {
        s["backends"]
            .as_array()
            .is_some_and(|l| l.iter().all(|b| b["ready"] == true))
    })
    .await;
    for _ in 0..4 {
        assert_eq!(streamed_chat(&c, &f.url, 2).await, (200, 2, true));
    }
    assert_eq!(answered(&c, &serving).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_pushes_groups_with_the_token_and_reads_the_held_count() {
    let f = start_front(config(5, Duration::from_secs(20), Source::default())).await;
    let c = client();
    let held = {
        let (c, url) = (c.clone(), f.url.clone());
        tokio::spawn(async move { streamed_chat(&c, &url, 3).await })
    };
    wait_status(&c, &f.url, "one held", |s| s["held"] == 1).await;
    let e = engine(200.0, Duration::ZERO).await;
    let push = |token: &'static str| {
        c.post(format!("{}/front/backends", f.url))
            .bearer_auth(token)
            .json(&serde_json::json!({"backends": [e.url.clone()]}))
            .send()
    };
    assert_eq!(push("wrong").await.expect("push").status().as_u16(), 401);
    let r = push("front-token").await.expect("push");
    assert_eq!(r.status().as_u16(), 200);
    let answer: serde_json::Value = r.json().await.expect("status JSON");
    assert_eq!(answer["held"], 1, "the push answers the held count");
    assert_eq!(held.await.expect("held request"), (200, 3, true));
    assert_eq!(answered(&c, &e).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_frees_its_place_in_the_queue() {
    let f = start_front(config(2, Duration::from_secs(60), Source::default())).await;
    let c = client();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    for _ in 0..2 {
        let r = impatient
            .post(format!("{}/v1/chat/completions", f.url))
            .json(&chat(2, true))
            .send()
            .await;
        assert!(r.is_err(), "nothing can answer: the client gives up");
    }
    // Both left: their places are free again, so the queue is not full.
    wait_status(&c, &f.url, "nothing held", |s| s["held"] == 0).await;
    let held = {
        let (c, url) = (c.clone(), f.url.clone());
        tokio::spawn(async move { streamed_chat(&c, &url, 2).await })
    };
    wait_status(&c, &f.url, "held again", |s| s["held"] == 1).await;
    held.abort();
}

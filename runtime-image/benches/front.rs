//! What the front adds, on loopback: (1) p50/p99 latency of small non-streamed completions
//! sent straight to one sim engine and through the front to the same engine (one replica,
//! one request at a time, keep-alive); (2) tokens/s of a skewed workload over 3 groups,
//! least-outstanding against round robin: every third request is long, so round robin
//! sends every long one to the same group while least-outstanding spreads them.
//! Run: `cargo bench -p deepseek-launcher --bench front`.

use std::time::{Duration, Instant};

use deepseek_engine::SimProfile;
use deepseek_launcher::front::{self, BackendSpec, Balance, Front, FrontConfig, Source};
use deepseek_launcher::sim::{self, SimSettings};
use tokio::net::TcpListener;

const LATENCY_REQUESTS: usize = 2000;
/// The skewed workload: requests, in flight at once, long and short lengths.
const SKEW_REQUESTS: usize = 90;
const SKEW_CONCURRENCY: usize = 9;
const LONG_TOKENS: u64 = 100;
const SHORT_TOKENS: u64 = 10;

async fn engine(profile: SimProfile, time_scale: f64) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let settings = SimSettings {
        served_model_name: "bench".into(),
        max_model_len: 4096,
        profile,
        time_scale,
        pd_role: None,
        load_delay: Duration::ZERO,
    };
    tokio::spawn(sim::serve(
        listener,
        settings,
        std::future::pending(),
        Duration::from_secs(1),
        None,
        None,
    ));
    Ok(url)
}

async fn start_front(backends: &[String], balance: Balance) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let fixed = backends
        .iter()
        .map(|b| b.parse::<BackendSpec>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let cfg = FrontConfig {
        probe_every: Duration::from_millis(100),
        balance,
        source: Source { fixed, file: None },
        ..FrontConfig::default()
    };
    tokio::spawn(front::serve(
        listener,
        Front::new(cfg),
        std::future::pending(),
    ));
    // Until every backend is probed ready.
    let c = client()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: serde_json::Value = c
            .get(format!("{url}/front/status"))
            .send()
            .await?
            .json()
            .await?;
        let ready = s["backends"]
            .as_array()
            .is_some_and(|l| l.len() == backends.len() && l.iter().all(|b| b["ready"] == true));
        if ready {
            return Ok(url);
        }
        anyhow::ensure!(Instant::now() < deadline, "backends never ready: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().build()?)
}

async fn complete(c: &reqwest::Client, url: &str, max_tokens: u64) -> anyhow::Result<u64> {
    let v: serde_json::Value = c
        .post(format!("{url}/v1/completions"))
        .json(&serde_json::json!({"prompt": "hi", "max_tokens": max_tokens}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["usage"]["completion_tokens"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no usage in {v}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latencies(url: &str) -> anyhow::Result<(Duration, Duration)> {
    let c = client()?;
    for _ in 0..200 {
        complete(&c, url, 1).await?;
    }
    let mut all = Vec::with_capacity(LATENCY_REQUESTS);
    for _ in 0..LATENCY_REQUESTS {
        let t = Instant::now();
        complete(&c, url, 1).await?;
        all.push(t.elapsed());
    }
    all.sort();
    Ok((percentile(&all, 0.5), percentile(&all, 0.99)))
}

async fn skewed(balance: Balance) -> anyhow::Result<(f64, Duration)> {
    let profile = SimProfile {
        prefill_tokens_per_s: 1e6,
        decode_tokens_per_s: 200.0,
        max_running: 2,
    };
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(engine(profile, 1.0).await?);
    }
    let url = start_front(&engines, balance).await?;
    let c = client()?;
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(SKEW_CONCURRENCY));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..SKEW_REQUESTS {
        let permit = permits.clone().acquire_owned().await?;
        let (c, url) = (c.clone(), url.clone());
        let tokens = if i % 3 == 0 {
            LONG_TOKENS
        } else {
            SHORT_TOKENS
        };
        tasks.push(tokio::spawn(async move {
            let r = complete(&c, &url, tokens).await;
            drop(permit);
            r
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let took = t.elapsed();
    Ok((total as f64 / took.as_secs_f64(), took))
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let instant = SimProfile {
            prefill_tokens_per_s: 1e6,
            decode_tokens_per_s: 1e6,
            max_running: 256,
        };
        let e = engine(instant, 0.0).await?;
        let f = start_front(std::slice::from_ref(&e), Balance::LeastOutstanding).await?;
        let (d50, d99) = latencies(&e).await?;
        let (f50, f99) = latencies(&f).await?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "latency, {LATENCY_REQUESTS} completions one at a time, 1 replica, loopback:"
        );
        println!("  direct        p50 {:.3} ms  p99 {:.3} ms", ms(d50), ms(d99));
        println!("  via the front p50 {:.3} ms  p99 {:.3} ms", ms(f50), ms(f99));
        println!(
            "  the front adds p50 {:+.3} ms  p99 {:+.3} ms",
            ms(f50) - ms(d50),
            ms(f99) - ms(d99)
        );
        println!(
            "skewed load over 3 groups ({SKEW_REQUESTS} completions, {SKEW_CONCURRENCY} in flight, every third {LONG_TOKENS} tokens, others {SHORT_TOKENS}; 200 tokens/s per request, 2 running per group):"
        );
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            let (tps, took) = skewed(balance).await?;
            let name = format!("{balance:?}");
            println!(
                "  {name:<17} {tps:>7.1} tokens/s  ({:.2} s)",
                took.as_secs_f64()
            );
        }
        Ok(())
    })
}

//! Sim throughput: the sim serves on one current-thread runtime (one core) with zero-delay
//! timing; a bounded client loop on another thread sends small completions over loopback
//! keep-alive connections. Prints requests/s. Run: `cargo bench -p deepseek-launcher`.

use std::time::{Duration, Instant};

use deepseek_engine::SimProfile;
use deepseek_launcher::sim::{self, SimSettings};

const CONCURRENCY: usize = 32;
const REQUESTS: usize = 40_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> std::io::Result<bool> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let _ = addr_tx.send(listener.local_addr()?);
            let settings = SimSettings {
                served_model_name: "bench".into(),
                max_model_len: 4096,
                profile: SimProfile {
                    prefill_tokens_per_s: 1e6,
                    decode_tokens_per_s: 1e6,
                    max_running: 256,
                },
                time_scale: 0.0,
                pd_role: None,
                load_delay: std::time::Duration::ZERO,
            };
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            sim::serve(
                listener,
                settings,
                shutdown,
                Duration::from_secs(5),
                None,
                None,
            )
            .await
            .map(|e| e == sim::Ended::Drained)
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(30))?;
    let url = format!("http://{addr}/v1/completions");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ok, elapsed) = rt.block_on(async move {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let body = r#"{"model":"bench","prompt":"hi","max_tokens":1}"#;
        // Warm up the connections.
        for _ in 0..CONCURRENCY {
            client
                .post(&url)
                .body(body)
                .header("content-type", "application/json")
                .send()
                .await?;
        }
        let start = Instant::now();
        let per_task = REQUESTS / CONCURRENCY;
        let tasks = (0..CONCURRENCY).map(|_| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let mut ok = 0usize;
                for _ in 0..per_task {
                    let r = client
                        .post(&url)
                        .body(body)
                        .header("content-type", "application/json")
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status().is_success() && r.bytes().await.is_ok() {
                            ok += 1;
                        }
                    }
                }
                ok
            }
        });
        let ok: usize = futures::future::join_all(tasks).await.into_iter().sum();
        Ok::<_, reqwest::Error>((ok, start.elapsed()))
    })?;
    let _ = stop_tx.send(());
    let _ = server.join();
    let rps = ok as f64 / elapsed.as_secs_f64();
    println!(
        "sim_throughput: {ok} requests in {:.2}s = {rps:.0} requests/s (server on one current-thread runtime, {CONCURRENCY} keep-alive client connections, max_tokens=1)",
        elapsed.as_secs_f64()
    );
    Ok(())
}

//! A bounded load generator for the autoscaling suites and benchmark: workers send
//! completions back to back to a model's leaders (resolved from its Service selector to
//! 127.x pod IPs), at most `MAX_REQUESTS` requests and `MAX_LOAD_TIME` of load in all.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;

use super::service_pod_ips;

const MAX_REQUESTS: u64 = 20_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(600);

/// Workers `0..concurrency` send completions back to back to the model's leaders.
pub struct LoadGen {
    workers: usize,
    concurrency: Arc<AtomicUsize>,
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LoadGen {
    pub fn start(client: Client, ns: String, model: String, workers: usize) -> LoadGen {
        let concurrency = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let leaders: Arc<Mutex<Vec<std::net::Ipv4Addr>>> = Arc::default();
        let started = Instant::now();
        let mut tasks = Vec::new();
        {
            let (leaders, stop) = (leaders.clone(), stop.clone());
            let (client, ns, model) = (client.clone(), ns.clone(), model.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(ips) = service_pod_ips(&client, &ns, &model).await {
                        if let Ok(mut l) = leaders.lock() {
                            *l = ips;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }));
        }
        for i in 0..workers {
            let (leaders, stop, conc) = (leaders.clone(), stop.clone(), concurrency.clone());
            let (sent, failed, model) = (sent.clone(), failed.clone(), model.clone());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap_or_default();
                let mut n = i;
                loop {
                    if stop.load(Ordering::Relaxed)
                        || started.elapsed() > MAX_LOAD_TIME
                        || sent.load(Ordering::Relaxed) >= MAX_REQUESTS
                    {
                        return;
                    }
                    let target = leaders
                        .lock()
                        .ok()
                        .and_then(|l| (!l.is_empty()).then(|| l[n % l.len()]));
                    n += 1;
                    let Some(ip) = target.filter(|ip| ip.is_loopback()) else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    if i >= conc.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    let body = serde_json::json!({"model": model, "prompt": "Count to ten.", "max_tokens": 64});
                    let ok = http
                        .post(format!("http://{ip}:8000/v1/completions"))
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }));
        }
        LoadGen {
            workers,
            concurrency,
            sent,
            failed,
            stop,
            tasks,
        }
    }

    /// Sets how many workers send (at most the number started).
    pub fn set(&self, n: usize) {
        self.concurrency
            .store(n.min(self.workers), Ordering::Relaxed);
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

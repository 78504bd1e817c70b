//! A closed-loop load: `WORKERS` tasks, of which the first `concurrency` each keep one
//! completion in flight to the model's ready leaders (round robin, loopback IPs only).
//! With every worker waiting on its answer, queued + running requests at the engines
//! equal the concurrency, which is the metric both autoscalers act on.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::Kind;

pub struct LoadGen {
    workers: usize,
    concurrency: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn ready_ip(p: &Pod) -> Option<Ipv4Addr> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let st = p.status.as_ref()?;
    let ready = st
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip: Ipv4Addr = st.pod_ip.as_deref()?.parse().ok()?;
    (ready && ip.is_loopback()).then_some(ip)
}

impl LoadGen {
    pub fn start(client: Client, ns: &str, kind: Kind, model: &str, workers: usize) -> LoadGen {
        let concurrency = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let leaders: Arc<Mutex<Vec<Ipv4Addr>>> = Arc::default();
        let mut tasks = Vec::new();
        {
            let (leaders, stop) = (leaders.clone(), stop.clone());
            let pods: Api<Pod> = Api::namespaced(client, ns);
            let lp = ListParams::default().labels(&kind.leader_selector(model));
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(list) = pods.list(&lp).await {
                        let ips: Vec<Ipv4Addr> = list.items.iter().filter_map(ready_ip).collect();
                        if let Ok(mut l) = leaders.lock() {
                            *l = ips;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }));
        }
        let port = kind.port();
        for i in 0..workers {
            let (leaders, stop, conc) = (leaders.clone(), stop.clone(), concurrency.clone());
            let model = model.to_string();
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap_or_default();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    if i >= conc.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
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
                    let body = serde_json::json!({"model": model, "prompt": "Count to ten.", "max_tokens": 64});
                    let ok = http
                        .post(format!("http://{ip}:{port}/v1/completions"))
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        // An engine not up yet: back off a little rather than spin.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }));
        }
        LoadGen {
            workers,
            concurrency,
            stop,
            tasks,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ip: &str, ready: &str, deleting: bool) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": ready}]}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z".into();
        }
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn load_goes_only_to_ready_loopback_leaders() {
        assert_eq!(
            ready_ip(&pod("127.51.0.9", "True", false)),
            Some(Ipv4Addr::new(127, 51, 0, 9))
        );
        assert_eq!(ready_ip(&pod("127.51.0.9", "False", false)), None);
        assert_eq!(ready_ip(&pod("127.51.0.9", "True", true)), None);
        // A documentation address: never dialled.
        assert_eq!(ready_ip(&pod("192.0.2.7", "True", false)), None);
    }
}

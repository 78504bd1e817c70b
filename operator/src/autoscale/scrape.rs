//! Reading the leaders' normalised metrics: `GET http://<podIP>:8080/metrics` on each
//! leader pod's launcher, with a short timeout, at the pod IP its status reports (nothing
//! else is dialled). A leader that does not answer, answers an error, or lacks the queue
//! gauges makes the read incomplete.

use std::net::IpAddr;
use std::time::Duration;

use deepseek_engine::metrics::parse_normalised;
use deepseek_engine::LAUNCHER_PORT;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// What one leader said.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaderRead {
    /// Queued and running requests.
    Load { waiting: f64, running: f64 },
    /// Why nothing usable came back.
    Failed(String),
}

/// The sum over leaders and whether every one answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub waiting: f64,
    pub running: f64,
    pub answered: usize,
    pub failed: Vec<(String, String)>,
}

impl Scrape {
    pub fn total(&self) -> f64 {
        self.waiting + self.running
    }
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The pod IP of a pod, when its status reports a parseable one.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Reads one leader's launcher.
pub async fn read_leader(client: &reqwest::Client, ip: IpAddr) -> LeaderRead {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{LAUNCHER_PORT}/metrics"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{LAUNCHER_PORT}/metrics"),
    };
    let resp = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => return LeaderRead::Failed(format!("{url}: {e}")),
    };
    if !resp.status().is_success() {
        return LeaderRead::Failed(format!("{url}: HTTP {}", resp.status()));
    }
    match resp.text().await {
        Ok(text) => parse(&text).unwrap_or_else(|| {
            LeaderRead::Failed(format!("{url}: no queue metrics (engine not answering)"))
        }),
        Err(e) => LeaderRead::Failed(format!("{url}: {e}")),
    }
}

/// The queue figures of the launcher's text; `None` when the engine part is missing.
pub fn parse(text: &str) -> Option<LeaderRead> {
    let m = parse_normalised(text);
    let waiting = m.load.queue_depth?;
    let running = m.load.running?;
    if !(waiting.is_finite() && running.is_finite()) {
        return None;
    }
    Some(LeaderRead::Load {
        waiting: waiting.max(0.0),
        running: running.max(0.0),
    })
}

/// Reads every leader concurrently. A leader without a pod IP counts as failed.
pub async fn scrape(client: &reqwest::Client, leaders: &[&Pod]) -> Scrape {
    let reads = join_all(leaders.iter().map(|p| async move {
        let name = p.name_any();
        match pod_ip(p) {
            Some(ip) => (name, read_leader(client, ip).await),
            None => (name, LeaderRead::Failed("no pod IP yet".into())),
        }
    }))
    .await;
    let mut s = Scrape::default();
    for (name, r) in reads {
        match r {
            LeaderRead::Load { waiting, running } => {
                s.waiting += waiting;
                s.running += running;
                s.answered += 1;
            }
            LeaderRead::Failed(why) => s.failed.push((name, why)),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_launcher_text_and_refuses_partial_text() {
        let ok = "dso_queue_depth 3\ndso_requests_running 5\ndso_ready 1\n";
        assert_eq!(
            parse(ok),
            Some(LeaderRead::Load {
                waiting: 3.0,
                running: 5.0
            })
        );
        assert_eq!(parse("dso_ready 0\ndso_engine_up 0\n"), None);
        assert_eq!(parse("dso_queue_depth NaN\ndso_requests_running 1\n"), None);
    }

    #[tokio::test]
    async fn a_leader_without_an_ip_makes_the_read_incomplete() {
        let nobody: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {}
        }))
        .unwrap_or_default();
        let s = scrape(&client(Duration::from_millis(300)), &[&nobody]).await;
        assert!(!s.complete());
        assert_eq!(s.failed[0].0, "n");
        assert_eq!(s.answered, 0);
    }
}

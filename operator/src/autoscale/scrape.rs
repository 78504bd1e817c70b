//! Reading the leaders' normalised metrics: `GET http://<podIP>:8080/metrics` on each
//! leader pod's launcher, with a short timeout, at the pod IP its status reports (nothing
//! else is dialled). A leader that does not answer, answers an error, sends more than
//! [`MAX_BODY`], lacks the queue gauges or serves a reading older than the staleness bound
//! makes the read incomplete. A leader that is not Running yet carries no requests and is
//! left out, for at most [`pending_grace`] after its creation (docs/autoscaling.md).

use std::net::IpAddr;
use std::time::Duration;

use deepseek_engine::metrics::{parse_age, parse_normalised};
use deepseek_engine::LAUNCHER_PORT;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::api::ScaleMetric;

/// What one leader said.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaderRead {
    /// Queued and running requests.
    Load { waiting: f64, running: f64 },
    /// Why nothing usable came back.
    Failed(String),
}

/// The most a launcher's `/metrics` may send: its text is a few hundred bytes, and a
/// leader streaming gigabytes must not exhaust the operator's memory.
pub const MAX_BODY: usize = 64 * 1024;

/// The sum over leaders and whether every one answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub waiting: f64,
    pub running: f64,
    pub answered: usize,
    pub failed: Vec<(String, String)>,
    /// Leaders left out because they are not Running yet (within the grace).
    pub starting: usize,
}

/// How one read is bounded.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Per request.
    pub timeout: Duration,
    /// A reading older than this (the launcher's `dso_metrics_age_seconds`) is stale.
    pub max_age: Duration,
    /// How long a leader that is not Running yet is left out of completeness.
    pub pending_grace: Duration,
}

/// What to do with one leader pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Participation {
    Read(IpAddr),
    /// Not Running yet, within the grace: no requests can be queued on it.
    Starting,
    Unreadable(String),
}

/// How long a not-yet-Running leader is left out: one full scale-down window plus ten
/// minutes, so a group waiting for a node that never comes can be scaled away (scale-down
/// removes not-ready groups first) without leaving a leader that never starts out forever.
pub fn pending_grace(stabilization: Duration) -> Duration {
    stabilization + Duration::from_secs(600)
}

/// Decides how a leader takes part in a read at `now`.
pub fn participation(
    pod: &Pod,
    now: k8s_openapi::jiff::Timestamp,
    grace: Duration,
) -> Participation {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Running") {
        return match pod_ip(pod) {
            Some(ip) => Participation::Read(ip),
            None => Participation::Unreadable("Running without a pod IP".into()),
        };
    }
    let age = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| now.duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    match phase {
        None | Some("Pending") if age < grace => Participation::Starting,
        None | Some("Pending") => {
            Participation::Unreadable(format!("not Running after {} s", age.as_secs()))
        }
        Some(p) => Participation::Unreadable(format!("phase {p}")),
    }
}

impl Scrape {
    pub fn total(&self) -> f64 {
        self.waiting + self.running
    }
    /// The load the model scales on.
    pub fn load(&self, metric: ScaleMetric) -> f64 {
        match metric {
            ScaleMetric::Queue => self.total(),
            ScaleMetric::Waiting => self.waiting,
            ScaleMetric::Running => self.running,
        }
    }
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The pod IP of a pod, when its status reports a parseable one.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// The one client every scrape shares; each request carries its own timeout. No idle
/// connection is kept: every leader is a host of its own, and a kept connection per leader
/// (buffers and all) grows with the number of models, unbounded, while a new loopback or
/// pod-network connection every few seconds per leader costs next to nothing (issue 12).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// The body, or why not: at most [`MAX_BODY`] bytes are read.
async fn capped_body(mut resp: reqwest::Response) -> Result<String, String> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(format!("body over {MAX_BODY} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("body over {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())
}

/// Reads one leader's launcher.
pub async fn read_leader(client: &reqwest::Client, ip: IpAddr, limits: ReadLimits) -> LeaderRead {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{LAUNCHER_PORT}/metrics"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{LAUNCHER_PORT}/metrics"),
    };
    let read = async {
        let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        capped_body(resp).await
    };
    match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(text)) => judge(&text, limits.max_age)
            .unwrap_or_else(|why| LeaderRead::Failed(format!("{url}: {why}"))),
        Ok(Err(e)) => LeaderRead::Failed(format!("{url}: {e}")),
        Err(_) => LeaderRead::Failed(format!("{url}: timed out after {:?}", limits.timeout)),
    }
}

/// The load in a launcher's text, unless it lacks the queue or is older than `max_age`.
pub fn judge(text: &str, max_age: Duration) -> Result<LeaderRead, String> {
    let load = parse(text).ok_or("no queue metrics (engine not answering)")?;
    match parse_age(text) {
        Some(age) if age > max_age.as_secs_f64() => {
            Err(format!("stale: the launcher's reading is {age:.1} s old"))
        }
        _ => Ok(load),
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

/// Reads every leader concurrently; leaders not Running yet are left out within the grace.
pub async fn scrape(client: &reqwest::Client, leaders: &[&Pod], limits: ReadLimits) -> Scrape {
    let now = k8s_openapi::jiff::Timestamp::now();
    let reads = join_all(leaders.iter().map(|p| async move {
        let name = p.name_any();
        match participation(p, now, limits.pending_grace) {
            Participation::Read(ip) => (name, Some(read_leader(client, ip, limits).await)),
            Participation::Starting => (name, None),
            Participation::Unreadable(why) => (name, Some(LeaderRead::Failed(why))),
        }
    }))
    .await;
    let mut s = Scrape::default();
    for (name, r) in reads {
        let Some(r) = r else {
            s.starting += 1;
            continue;
        };
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

    const LIMITS: ReadLimits = ReadLimits {
        timeout: Duration::from_millis(300),
        max_age: Duration::from_secs(10),
        pending_grace: Duration::from_secs(900),
    };

    fn pod(phase: &str, ip: Option<&str>, created: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "creationTimestamp": created},
            "status": {"phase": phase, "podIP": ip}
        }))
        .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_running_leader_without_an_ip_makes_the_read_incomplete() {
        let nobody = pod("Running", None, "2026-01-01T00:00:00Z");
        let s = scrape(&client(), &[&nobody], LIMITS).await;
        assert!(!s.complete());
        assert_eq!(s.failed[0].0, "n");
        assert_eq!(s.answered, 0);
    }

    #[test]
    fn pending_leaders_are_left_out_only_within_the_grace() {
        let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:10:00Z".parse().expect("ts");
        let grace = Duration::from_secs(900);
        let young = pod("Pending", None, "2026-01-01T00:00:00Z");
        assert_eq!(participation(&young, now, grace), Participation::Starting);
        let old = pod("Pending", None, "2025-12-31T23:00:00Z");
        assert!(matches!(
            participation(&old, now, grace),
            Participation::Unreadable(_)
        ));
        let running = pod("Running", Some("127.1.0.9"), "2025-12-31T23:00:00Z");
        assert!(matches!(
            participation(&running, now, grace),
            Participation::Read(_)
        ));
        let failed = pod("Failed", Some("127.1.0.9"), "2026-01-01T00:09:00Z");
        assert!(matches!(
            participation(&failed, now, grace),
            Participation::Unreadable(_)
        ));
        assert_eq!(
            pending_grace(Duration::from_secs(300)),
            Duration::from_secs(900)
        );
    }

    #[test]
    fn an_old_reading_is_stale_and_a_fresh_or_unaged_one_counts() {
        let t = "dso_queue_depth 3\ndso_requests_running 1\n";
        let ten = Duration::from_secs(10);
        assert!(
            judge(t, ten).is_ok(),
            "launchers without the age still count"
        );
        assert!(judge(&format!("{t}dso_metrics_age_seconds 2\n"), ten).is_ok());
        let stale = judge(&format!("{t}dso_metrics_age_seconds 11\n"), ten);
        assert!(stale.is_err_and(|e| e.contains("stale")));
    }

    /// A launcher double on 127.0.0.1 that streams an endless body.
    async fn endless_launcher() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = c.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n";
                    if c.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let line = "dso_queue_depth 1\n".repeat(1024);
                    while c.write_all(line.as_bytes()).await.is_ok() {}
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_cap() {
        let addr = endless_launcher().await;
        let url = format!("http://{addr}/metrics");
        let resp = client().get(&url).send().await.expect("answers");
        let err = capped_body(resp).await.expect_err("refused");
        assert!(err.contains("over"), "{err}");
    }
}

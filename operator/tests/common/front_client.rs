//! What a client of a model's front sees (issue 27): streamed chats sent through it, its
//! status and counters, the engines' answer counts, and a wake-up's timeline checked for
//! order. Shared by the scale-from-zero suites (e2e_scale_from_zero, e2e_cloud). Every
//! address dialled is checked to be loopback.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use deepseek_e2e::wait::wait_for;
use deepseek_operator::api::ScaleFromZero;
use deepseek_operator::build::front;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::Api;

/// Tokens each chat asks for (and gets back, one chunk each, from the sim engine).
pub const TOKENS: usize = 12;

pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(240))
        .build()?)
}

/// A streamed chat: status, content chunks, `[DONE]` seen, when the first chunk came.
pub async fn streamed_chat(
    c: reqwest::Client,
    url: String,
) -> Result<(u16, usize, bool, Option<Timestamp>)> {
    streamed_chat_to(c, url, None).await
}

/// A streamed chat naming `model` when given (the router picks workers by it).
pub async fn streamed_chat_to(
    c: reqwest::Client,
    url: String,
    model: Option<&'static str>,
) -> Result<(u16, usize, bool, Option<Timestamp>)> {
    use futures::StreamExt;
    let mut body = serde_json::json!({
        "stream": true, "max_tokens": TOKENS,
        "messages": [{"role": "user", "content": "wake up"}],
    });
    if let Some(m) = model {
        body["model"] = serde_json::json!(m);
    }
    let r = c.post(url).json(&body).send().await?;
    let status = r.status().as_u16();
    let mut first = None;
    let mut text = Vec::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if first.is_none() && chunk.windows(7).any(|w| w == b"data: {") {
            first = Some(Timestamp::now());
        }
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    let chunks = text.lines().filter(|l| l.starts_with("data: {")).count();
    Ok((status, chunks, text.contains("data: [DONE]"), first))
}

pub async fn front_status(c: &reqwest::Client, ip: Ipv4Addr) -> Result<serde_json::Value> {
    ensure!(ip.is_loopback(), "refusing to dial {ip}");
    Ok(c.get(format!("http://{ip}:8000/front/status"))
        .send()
        .await?
        .json()
        .await?)
}

/// The first sample of `/metrics` at `ip` whose line starts with `series` (a name, and
/// `{` or a space after it).
async fn counter(c: &reqwest::Client, ip: Ipv4Addr, series: &str) -> Result<u64> {
    ensure!(ip.is_loopback(), "refusing to dial {ip}");
    let text = c
        .get(format!("http://{ip}:8000/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("{series} in the metrics of {ip}"))
}

/// `dso_front_forwarded_total` of a front pod: answers it passed on from a group.
pub async fn forwarded(c: &reqwest::Client, ip: Ipv4Addr) -> Result<u64> {
    counter(c, ip, "dso_front_forwarded_total ").await
}

pub fn ip(p: &Pod) -> Option<Ipv4Addr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// `vllm:request_success_total` of the sim engine behind a leader (its engine port).
pub async fn engine_answers(c: &reqwest::Client, ip: Ipv4Addr) -> Result<u64> {
    counter(c, ip, "vllm:request_success_total{").await
}

/// `spec.autoscaling` of a model at zero that holds up to `held` requests for 240 s, scales
/// to one group on them (`allowNodeProvisioning`: pending rather than held back when the
/// nodes are busy or a node autoscaler makes them) and never scales down while a test runs.
pub fn held_at_zero(held: usize) -> serde_json::Value {
    serde_json::json!({
        "minReplicas": 0,
        "maxReplicas": 1,
        "targetQueueDepth": 4,
        "intervalSeconds": 1,
        "scaleDownStabilizationSeconds": 3600,
        "allowNodeProvisioning": true,
        "holdRequests": {"queueSize": held, "maxWaitSeconds": 240},
    })
}

/// Waits until every front pod of `model` is Ready and answers `/front/status`; their IPs.
pub async fn ready_fronts(
    c: &reqwest::Client,
    pods: &Api<Pod>,
    model: &str,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>> {
    let selector = front::selector_string(model);
    wait_for(timeout, "the model's front pods answer", || async {
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let ips: Vec<Ipv4Addr> = list
            .items
            .iter()
            .filter(|p| super::is_running_ready(p))
            .filter_map(ip)
            .collect();
        if ips.len() != front::REPLICAS as usize {
            return Ok(None);
        }
        for ip in &ips {
            front_status(c, *ip).await?;
        }
        Ok(Some(ips))
    })
    .await
}

/// One wake-up, phase by phase.
pub struct Timeline(pub Vec<(&'static str, Timestamp)>);

impl Timeline {
    /// The phases of a recorded wake-up, in order; "nodes created" only when recorded.
    pub fn of(z: &ScaleFromZero) -> Result<Timeline> {
        let t = |s: &str| -> Result<Timestamp> { Ok(s.parse()?) };
        let mut phases = vec![
            ("request seen", t(&z.request_seen)?),
            ("scale decision", t(&z.scale_decision)?),
        ];
        if let Some(n) = z.nodes_created.as_deref() {
            phases.push(("nodes created", t(n)?));
        }
        phases.extend([
            ("pods scheduled", t(&z.pods_scheduled)?),
            ("ranks joined", t(&z.ranks_joined)?),
            ("engine ready", t(&z.engine_ready)?),
            ("first token", t(&z.first_token)?),
        ]);
        Ok(Timeline(phases))
    }

    pub fn print(&self, shape: &str) {
        let start = self.0[0].1;
        eprintln!("cold start, {shape}:");
        for (phase, at) in &self.0 {
            let since = at.duration_since(start);
            eprintln!("  {phase:<16} {:>+6.1}s  ({at})", since.as_secs_f64());
        }
    }

    /// Phases in order; API times have whole seconds, so a phase may share the second
    /// of the one before it, and the test's own instants are cut to the second too.
    /// "engine ready" is the kubelet's Ready condition, while the front forwards as soon
    /// as the engine itself answers ready: the condition may be written a probe poll (the
    /// fleet's 250 ms), the status write and the rounding to seconds after the first
    /// token. Seen once: engine ready 02:07:13Z, first token 02:07:12.957Z.
    pub fn in_order(&self) -> Result<()> {
        for w in self.0.windows(2) {
            let (a, b) = (w[0].1.as_second(), w[1].1.as_second());
            let slack = if (w[0].0, w[1].0) == ("engine ready", "first token") {
                2
            } else {
                0
            };
            ensure!(
                a <= b + slack,
                "{} ({}) after {} ({})",
                w[0].0,
                w[0].1,
                w[1].0,
                w[1].1
            );
        }
        Ok(())
    }
}

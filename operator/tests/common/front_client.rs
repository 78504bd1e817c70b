//! What a client of a model's front sees (issue 27): streamed chats sent through it, its
//! status and counters, the engines' answer counts, and a wake-up's timeline checked for
//! order. Shared by the scale-from-zero suites (e2e_scale_from_zero, e2e_cloud,
//! e2e_real_wake). Every address dialled is checked to be loopback or on the real nodes'
//! bridge.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use deepseek_e2e::wait::wait_for;
use deepseek_operator::api::{DeepSeekModel, ScaleFromZero};
use deepseek_operator::desired::front;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
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

/// What a streamed chat got: status, content chunks, `[DONE]` seen, when the first chunk
/// came.
pub type ChatResult = (u16, usize, bool, Option<Timestamp>);

/// A streamed chat.
pub async fn streamed_chat(c: reqwest::Client, url: String) -> Result<ChatResult> {
    streamed_chat_to(c, url, None).await
}

/// A streamed chat naming `model` when given (the router picks workers by it).
pub async fn streamed_chat_to(
    c: reqwest::Client,
    url: String,
    model: Option<&'static str>,
) -> Result<ChatResult> {
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
    super::ensure_dialable(ip)?;
    Ok(c.get(format!("http://{ip}:8000/front/status"))
        .send()
        .await?
        .json()
        .await?)
}

/// The first sample of `/metrics` at `ip` whose line starts with `series` (a name, and
/// `{` or a space after it).
async fn counter(c: &reqwest::Client, ip: Ipv4Addr, series: &str) -> Result<u64> {
    super::ensure_dialable(ip)?;
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

    /// Recorded after the test sent its first request at `sent` (to the second: the
    /// front's clock is this machine's, API times are cut to whole seconds) and before
    /// the client got its first token at `client_first`.
    pub fn between(&self, sent: Timestamp, client_first: Timestamp) -> Result<()> {
        let (first, last) = (self.0[0].1, self.0[self.0.len() - 1].1);
        ensure!(
            first.as_second() >= sent.as_second() - 1,
            "request seen {first} before the test sent it ({sent})"
        );
        ensure!(
            last.as_second() <= client_first.as_second(),
            "first token recorded at {last} after the client got it ({client_first})"
        );
        Ok(())
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

/// What one wake-up for held chats showed.
pub struct Wake {
    pub timeline: Timeline,
    /// From sending the chats to the last one answered.
    pub answered_after: Duration,
    /// `Retry-After` of the refused request.
    pub retry_after: String,
    /// The `ScaledFromZero` Event's note.
    pub note: String,
}

/// Sends `held` streamed chats to the front at `at` while `model` is at zero and checks
/// what its clients must see: one more over the bound refused at once (503 with
/// `Retry-After`); every held chat answered in full once a group of `ranks` pods is
/// Ready; the engines behind the group's leader answered exactly `held` (none lost, none
/// twice); the front holds nothing after; and the operator's recorded timeline (status
/// and Event) starts after the first request was sent, ends before the client's first
/// token, and is in order.
#[allow(clippy::too_many_arguments)]
pub async fn wake_for_held_chats(
    c: &reqwest::Client,
    at: Ipv4Addr,
    models: &Api<DeepSeekModel>,
    pods: &Api<Pod>,
    events: &Api<Event>,
    model: &str,
    ranks: usize,
    held: usize,
) -> Result<Wake> {
    let url = format!("http://{at}:8000/v1/chat/completions");
    // The held chats, at zero replicas.
    let seen = Timestamp::now();
    let t0 = Instant::now();
    let chats: Vec<_> = (0..held)
        .map(|_| tokio::spawn(streamed_chat(c.clone(), url.clone())))
        .collect();
    wait_for(
        Duration::from_secs(30),
        &format!("{held} requests held"),
        || async { Ok((front_status(c, at).await?["held"] == held).then_some(())) },
    )
    .await?;
    let retry_after = refused_over_bound(c, &url, held).await?;
    let first_token = all_answered(chats).await?;
    let answered_after = t0.elapsed();

    // Exactly once: the engines answered 20 in all, and the front forwarded 20.
    let group = super::wait_groups(pods, model, 1, ranks, Duration::from_secs(300)).await?;
    let leaders: Vec<Ipv4Addr> = group
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("inference.deepseek-operator.dev/rank"))
                .map(String::as_str)
                == Some("0")
        })
        .filter_map(ip)
        .collect();
    let mut total = 0;
    for l in &leaders {
        total += engine_answers(c, *l).await?;
    }
    ensure!(
        total == held as u64,
        "the engines answered {total} requests, not {held}"
    );
    let st = front_status(c, at).await?;
    ensure!(st["held"] == 0, "still held: {st}");

    // The timeline, as the operator recorded it (status and Event).
    let m = wait_for(
        Duration::from_secs(30),
        "status.lastScaleFromZero",
        || async {
            let m = models.get(model).await?;
            Ok(m.status
                .as_ref()
                .and_then(|s| s.last_scale_from_zero.clone())
                .map(|_| m))
        },
    )
    .await?;
    let z = m
        .status
        .as_ref()
        .and_then(|s| s.last_scale_from_zero.clone())
        .context("lastScaleFromZero")?;
    let timeline = Timeline::of(&z)?;
    timeline.between(seen, first_token.context("a first token")?)?;
    let note = wait_for(
        Duration::from_secs(30),
        "a ScaledFromZero Event",
        || async {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ScaledFromZero"))
                .and_then(|e| e.note))
        },
    )
    .await?;
    timeline.in_order()?;
    Ok(Wake {
        timeline,
        answered_after,
        retry_after,
        note,
    })
}

/// One chat past a front's bound of `held`: refused at once, 503 with `Retry-After`
/// (returned).
pub async fn refused_over_bound(c: &reqwest::Client, url: &str, held: usize) -> Result<String> {
    let r = c
        .post(url)
        .json(&serde_json::json!({"stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await?;
    ensure!(
        r.status().as_u16() == 503,
        "request {}: {}",
        held + 1,
        r.status()
    );
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok().map(String::from));
    retry.with_context(|| format!("request {}: no Retry-After", held + 1))
}

/// Streamed chats, each answered in full ([`TOKENS`] chunks and `[DONE]`); the earliest
/// first chunk any of them got.
pub async fn all_answered(
    chats: Vec<tokio::task::JoinHandle<Result<ChatResult>>>,
) -> Result<Option<Timestamp>> {
    let mut first_token: Option<Timestamp> = None;
    for (i, chat) in chats.into_iter().enumerate() {
        let (status, chunks, done, first) = chat.await??;
        ensure!(
            (status, chunks, done) == (200, TOKENS, true),
            "chat {i}: status {status}, {chunks} of {TOKENS} chunks, [DONE] {done}"
        );
        first_token = match (first_token, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(first_token)
}

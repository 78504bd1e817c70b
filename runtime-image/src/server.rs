//! The launcher's own HTTP server on `LAUNCHER_PORT`: `/healthz`, `/readyz` (this rank,
//! and on the leader the whole group), `/rankz` (this rank only), normalised `/metrics`,
//! the leader's rendezvous (`POST /rendezvous/join`, `GET /rendezvous`) and `/drain`
//! (the leader pod's preStop hook).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use deepseek_engine::metrics::{map_engine_metrics, NormalisedMetrics};
use deepseek_engine::{DRAIN_PATH, RANK_HEALTH_PATH, READINESS_PATH};
use serde::{Deserialize, Serialize};

use crate::reading::{Readings, ENGINE_READ_TIMEOUT, FRESH_WAIT, REFRESH};
use crate::state::LauncherState;

/// Body of `POST /rendezvous/join`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub rank: u32,
    /// The worker's launcher base URL, where the leader checks its health.
    #[serde(default)]
    pub launcher_url: Option<String>,
}

/// Answer of `POST /rendezvous/join` and `GET /rendezvous`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RendezvousStatus {
    pub joined: Vec<u32>,
    pub group_size: u32,
    #[serde(default)]
    pub draining: bool,
    /// The leader's engine has stopped after a drain: workers may stop theirs.
    #[serde(default)]
    pub engine_stopped: bool,
}

/// How long the leader waits for a worker's `/rankz` within one readiness check (the
/// kubelet's probe timeout is 1 s by default).
const RANK_CHECK_TIMEOUT: Duration = Duration::from_millis(700);

#[derive(Clone)]
struct Ctx {
    state: Arc<LauncherState>,
    client: reqwest::Client,
    /// What `/metrics` serves, refreshed in the background (reading.rs).
    readings: Arc<Readings>,
    /// How long `/drain` may block: the drain bound plus the stop margin.
    drain_wait: Duration,
}

/// An HTTP client that dials only what it is given (no proxies) with a short timeout.
pub fn local_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap_or_default()
}

pub fn router(state: Arc<LauncherState>, drain_wait: Duration) -> Router {
    let ctx = Ctx {
        state,
        client: local_client(RANK_CHECK_TIMEOUT),
        readings: Arc::default(),
        drain_wait,
    };
    // The refresh lives as long as the runtime: a launcher serves until it exits.
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(refresh(ctx.clone()));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(READINESS_PATH, get(readyz))
        .route(RANK_HEALTH_PATH, get(rankz))
        .route("/metrics", get(metrics))
        .route("/rendezvous/join", post(join))
        .route("/rendezvous", get(status))
        .route(DRAIN_PATH, get(drain).post(drain))
        .with_state(ctx)
}

/// Whether the local engine answers its health endpoint.
async fn engine_healthy(ctx: &Ctx) -> bool {
    match &ctx.state.engine_url {
        None => true,
        Some(url) => ctx
            .client
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
    }
}

/// Why this rank alone is not ready, if it is not: draining, not yet a member, the group
/// not complete, no serve process, or the engine not healthy.
async fn rank_not_ready(ctx: &Ctx) -> Option<String> {
    let s = &ctx.state;
    if s.draining() {
        return Some("draining".into());
    }
    if !s.member.load(Ordering::SeqCst) {
        return Some("not joined to the leader yet".into());
    }
    if !s.group_complete.load(Ordering::SeqCst) {
        return Some(format!(
            "rendezvous incomplete; missing ranks {:?}",
            s.missing()
        ));
    }
    if !s.serving.load(Ordering::SeqCst) {
        return Some("the engine is not running".into());
    }
    if !engine_healthy(ctx).await {
        return Some("the engine is not healthy".into());
    }
    None
}

/// Why the group is not ready, if it is not: this rank, then (leader) every worker's
/// own `/rankz`, asked concurrently.
async fn group_not_ready(ctx: &Ctx) -> Option<String> {
    if let Some(why) = rank_not_ready(ctx).await {
        return Some(why);
    }
    if !ctx.state.is_leader() {
        return None;
    }
    let checks = ctx.state.worker_urls().into_iter().map(|(rank, url)| {
        let client = ctx.client.clone();
        async move {
            let ok = client
                .get(format!("{url}{RANK_HEALTH_PATH}"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (!ok).then_some(rank)
        }
    });
    let unhealthy: Vec<u32> = futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let unknown = ctx.state.group_size as usize - 1 - ctx.state.worker_urls().len();
    if !unhealthy.is_empty() {
        return Some(format!("ranks {unhealthy:?} are not healthy"));
    }
    (unknown > 0).then(|| format!("{unknown} ranks gave no address to check"))
}

fn answer(why: Option<String>) -> (StatusCode, String) {
    match why {
        None => (StatusCode::OK, "ready".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn readyz(State(ctx): State<Ctx>) -> impl IntoResponse {
    answer(group_not_ready(&ctx).await)
}

async fn rankz(State(ctx): State<Ctx>) -> impl IntoResponse {
    answer(rank_not_ready(&ctx).await)
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    // Ask for a fresh round and wait for it only briefly: a quick engine is served
    // current figures, a saturated one the last reading with its age.
    let seen = ctx.readings.round();
    ctx.readings.wake.notify_one();
    let _ = tokio::time::timeout(FRESH_WAIT, ctx.readings.after_round(seen)).await;
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        ctx.readings.render(Instant::now()),
    )
}

/// Reads the group's readiness and the engine's load every `REFRESH` (or when `/metrics`
/// asks), each read bounded, so a slow engine only makes the served reading older.
async fn refresh(ctx: Ctx) {
    let engine = local_client(ENGINE_READ_TIMEOUT);
    loop {
        let started = Instant::now();
        let status = NormalisedMetrics {
            ready: group_not_ready(&ctx).await.is_none(),
            ranks_joined: ctx.state.joined().len() as u32,
            group_size: ctx.state.group_size,
            ..Default::default()
        };
        let load = match &ctx.state.engine_url {
            Some(url) => {
                async {
                    let r = engine.get(format!("{url}/metrics")).send().await.ok()?;
                    if !r.status().is_success() {
                        return None;
                    }
                    r.text().await.ok().map(|t| map_engine_metrics(&t))
                }
                .await
            }
            None => None,
        };
        ctx.readings.record(status, load, started);
        let _ = tokio::time::timeout(REFRESH, ctx.readings.wake.notified()).await;
    }
}

fn status_of(s: &LauncherState) -> RendezvousStatus {
    RendezvousStatus {
        joined: s.joined(),
        group_size: s.group_size,
        draining: s.draining(),
        engine_stopped: s.engine_stopped(),
    }
}

async fn status(State(ctx): State<Ctx>) -> impl IntoResponse {
    Json(status_of(&ctx.state))
}

async fn join(State(ctx): State<Ctx>, Json(req): Json<JoinRequest>) -> impl IntoResponse {
    let s = &ctx.state;
    if !s.is_leader() {
        return (
            StatusCode::CONFLICT,
            format!("rank {} is not the leader", s.rank),
        )
            .into_response();
    }
    if req.rank == 0 || req.rank >= s.group_size {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "rank {} is not a worker rank of a group of {}",
                req.rank, s.group_size
            ),
        )
            .into_response();
    }
    if !s.rendezvous_open.load(Ordering::SeqCst) {
        // The head (e.g. Ray) is not up yet: the worker retries.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the leader is still preparing; the rendezvous is not open".to_string(),
        )
            .into_response();
    }
    let joined = s.join(req.rank, req.launcher_url);
    s.trace(&format!("accepted rank {}", req.rank));
    tracing::info!(rank = req.rank, ?joined, "rank joined");
    Json(status_of(s)).into_response()
}

/// Starts a drain and answers once this rank's engine has stopped (every accepted request
/// answered) or the drain bound and stop margin have passed.
async fn drain(State(ctx): State<Ctx>) -> impl IntoResponse {
    ctx.state.request_drain();
    match tokio::time::timeout(ctx.drain_wait, ctx.state.stopped()).await {
        Ok(()) => (StatusCode::OK, "drained".to_string()),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("the engine was still draining after {:?}", ctx.drain_wait),
        ),
    }
}

//! The launcher's two HTTP servers.
//!
//! Public, on `LAUNCHER_PORT` (the NetworkPolicy opens it to the namespaces allowed to
//! call the model): `/healthz` (liveness: the engine answers its own health endpoint
//! within a bound, once it has started), `/readyz` (this rank, and on the leader the
//! whole group) and normalised `/metrics`. Nothing there changes the rank's state.
//!
//! Group, on `GROUP_PORT` (opened only to the model's own pods): `/rankz` (this rank
//! only), the leader's rendezvous (`POST /rendezvous/join`, `GET /rendezvous`) and
//! `/drain` (the leader pod's preStop hook, through `deepseek-launcher drain`). Every
//! call must carry the group token as a bearer token, or it is refused with 403: a pod
//! of another model, or a forged join that would point the leader at a URL of the
//! caller's choosing, gets nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deepseek_engine::metrics::{map_engine_metrics, NormalisedMetrics};
use deepseek_engine::{
    DRAIN_PATH, JOIN_PATH, LIVENESS_ENGINE_TIMEOUT_MS, LIVENESS_PATH, RANK_HEALTH_PATH,
    READINESS_PATH, RENDEZVOUS_PATH,
};
use serde::{Deserialize, Serialize};

use crate::reading::{Readings, ENGINE_READ_TIMEOUT, FRESH_WAIT, REFRESH};
use crate::state::LauncherState;

/// Body of `POST /rendezvous/join`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub rank: u32,
    /// The base URL of the worker's group server, where the leader checks its health.
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
    /// Asks the engine's health endpoint for the liveness probe.
    liveness: reqwest::Client,
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

fn context(state: Arc<LauncherState>, drain_wait: Duration) -> Ctx {
    Ctx {
        state,
        client: local_client(RANK_CHECK_TIMEOUT),
        liveness: local_client(Duration::from_millis(LIVENESS_ENGINE_TIMEOUT_MS)),
        readings: Arc::default(),
        drain_wait,
    }
}

/// The public server: probes and metrics, nothing that changes the rank's state.
pub fn router(state: Arc<LauncherState>, drain_wait: Duration) -> Router {
    let ctx = context(state, drain_wait);
    // The refresh lives as long as the runtime: a launcher serves until it exits.
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(refresh(ctx.clone()));
    }
    Router::new()
        .route(LIVENESS_PATH, get(healthz))
        .route(READINESS_PATH, get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

/// The group server: rank health, rendezvous and drain, for callers with the token.
pub fn group_router(state: Arc<LauncherState>, drain_wait: Duration) -> Router {
    let ctx = context(state, drain_wait);
    Router::new()
        .route(RANK_HEALTH_PATH, get(rankz))
        .route(JOIN_PATH, post(join))
        .route(RENDEZVOUS_PATH, get(status))
        .route(DRAIN_PATH, post(drain))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), authorize))
        .with_state(ctx)
}

/// Refuses (403) a call to the group port without the group token.
async fn authorize(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|t| ctx.state.token_matches(t)) {
        next.run(req).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "the group port answers only the group's own ranks (bearer token)",
        )
            .into_response()
    }
}

/// Whether the local engine answers its health endpoint with success (through `client`,
/// so within its timeout). Marks the engine up the first time it does.
async fn engine_answers(state: &LauncherState, client: &reqwest::Client) -> bool {
    let Some(url) = &state.engine_url else {
        return true;
    };
    let ok = client
        .get(format!("{url}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if ok {
        state.engine_up.store(true, Ordering::SeqCst);
    }
    ok
}

/// Whether the local engine answers its health endpoint.
async fn engine_healthy(ctx: &Ctx) -> bool {
    engine_answers(&ctx.state, &ctx.client).await
}

/// Liveness: alive while starting (the serve process not started yet, or its engine not
/// answering yet: loading weights can take long, and the startup is bounded by the
/// rendezvous and the group's own rules) and while draining. Once the engine has
/// answered, the engine must answer its health endpoint within the bound, or the kubelet
/// restarts the container (and the controller recreates the group).
async fn healthz(State(ctx): State<Ctx>) -> (StatusCode, String) {
    let s = &ctx.state;
    if s.draining() || s.engine_stopped() {
        return (StatusCode::OK, "ok: draining".into());
    }
    let Some(url) = &s.engine_url else {
        return (StatusCode::OK, "ok".into());
    };
    if !s.serving.load(Ordering::SeqCst) {
        return (StatusCode::OK, "ok: starting".into());
    }
    if engine_answers(s, &ctx.liveness).await {
        return (StatusCode::OK, "ok".into());
    }
    if !s.engine_up.load(Ordering::SeqCst) {
        return (StatusCode::OK, "ok: the engine is starting".into());
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the engine did not answer {url}/health within {LIVENESS_ENGINE_TIMEOUT_MS} ms"),
    )
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
    let token = &ctx.state.group_token;
    let checks = ctx.state.worker_urls().into_iter().map(|(rank, url)| {
        let client = ctx.client.clone();
        async move {
            let ok = client
                .get(format!("{url}{RANK_HEALTH_PATH}"))
                .bearer_auth(token)
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

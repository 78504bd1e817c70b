//! The launcher's own HTTP server on `LAUNCHER_PORT`: `/healthz`, `/readyz`, normalised
//! `/metrics` and the leader's `POST /rendezvous/join`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use deepseek_engine::metrics::{map_engine_metrics, render_normalised, NormalisedMetrics};
use serde::{Deserialize, Serialize};

use crate::state::LauncherState;

/// Body of `POST /rendezvous/join`.
#[derive(Serialize, Deserialize, Debug)]
pub struct JoinRequest {
    pub rank: u32,
}

/// Answer of `POST /rendezvous/join`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub joined: Vec<u32>,
    pub group_size: u32,
}

#[derive(Clone)]
struct Ctx {
    state: Arc<LauncherState>,
    client: reqwest::Client,
}

/// An HTTP client that dials only what it is given (no proxies) with a short timeout.
pub fn local_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap_or_default()
}

pub fn router(state: Arc<LauncherState>) -> Router {
    let ctx = Ctx {
        state,
        client: local_client(Duration::from_secs(2)),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/rendezvous/join", post(join))
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

/// Ready: not draining, all ranks joined (workers: acknowledged by the leader), serve
/// process up and the engine healthy.
async fn is_ready(ctx: &Ctx) -> bool {
    let s = &ctx.state;
    if s.draining() || !s.serving.load(Ordering::SeqCst) || !s.member.load(Ordering::SeqCst) {
        return false;
    }
    if s.is_leader() && !s.all_joined() {
        return false;
    }
    engine_healthy(ctx).await
}

async fn readyz(State(ctx): State<Ctx>) -> impl IntoResponse {
    if is_ready(&ctx).await {
        (StatusCode::OK, "ready".to_string())
    } else if ctx.state.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining".to_string())
    } else {
        let missing = ctx.state.missing();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready; missing ranks {missing:?}"),
        )
    }
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    let mut m = NormalisedMetrics {
        ready: is_ready(&ctx).await,
        ranks_joined: ctx.state.joined().len() as u32,
        group_size: ctx.state.group_size,
        ..Default::default()
    };
    if let Some(url) = &ctx.state.engine_url {
        let scraped = async {
            let r = ctx.client.get(format!("{url}/metrics")).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.text().await.ok()
        }
        .await;
        if let Some(text) = scraped {
            m.engine_up = true;
            m.load = map_engine_metrics(&text);
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        render_normalised(&m),
    )
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
    if req.rank >= s.group_size {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "rank {} out of range for group size {}",
                req.rank, s.group_size
            ),
        )
            .into_response();
    }
    let joined = s.join(req.rank);
    tracing::info!(rank = req.rank, ?joined, "rank joined");
    Json(JoinResponse {
        joined,
        group_size: s.group_size,
    })
    .into_response()
}

//! The GPU-free sim engine (`deepseek-launcher sim`): an OpenAI-compatible server with
//! vLLM-format metrics and a token-timing model, bound to the address it is given.

pub mod group;
pub mod model;
pub mod openai;
pub mod pd;
pub mod prom;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use group::GroupSpec;
pub use model::{SimModel, SimSettings};

/// The sim's routes.
pub fn router(model: Arc<SimModel>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(openai::models))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        // What the prefill/decode router asks a worker before routing to it.
        .route("/server_info", get(info))
        .route("/model_info", get(info))
        .route("/get_server_info", get(info))
        .route("/get_model_info", get(info))
        .route(
            "/metrics",
            get(|State(m): State<Arc<SimModel>>| async move { prom::render(&m) }),
        )
        .with_state(model)
}

async fn info(State(m): State<Arc<SimModel>>) -> axum::Json<serde_json::Value> {
    let s = &m.settings;
    axum::Json(pd::server_info(
        &s.served_model_name,
        s.pd_role,
        s.max_model_len,
    ))
}

async fn health(State(m): State<Arc<SimModel>>) -> StatusCode {
    if m.gate.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// How a sim run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Drained: every accepted request was answered.
    Drained,
    /// The drain bound ran out with requests in flight.
    DrainTimedOut,
    /// The group broke (a rank left): the engine stops at once, as a real one would.
    GroupBroken(String),
}

/// Serves on `listener` until `shutdown` resolves, then drains: new generation requests
/// get 503 while accepted ones finish, for at most `drain`. With `group` (a leader of a
/// multi-node group, `group_listener` bound to its dist address) the engine is healthy
/// once every rank is linked and breaks when one leaves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: SimSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    group: Option<(tokio::net::TcpListener, GroupSpec)>,
    bootstrap: Option<tokio::net::TcpListener>,
) -> std::io::Result<Ended> {
    let model = SimModel::new(settings);
    if !model.gate.loaded() {
        let (model, delay) = (model.clone(), model.settings.load_delay);
        tracing::info!("sim: loading weights for {delay:?}");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            model.gate.set_loaded();
            tracing::info!("sim: weights loaded");
        });
    }
    if let Some(l) = bootstrap {
        // The prefill role's KV handoff endpoint lives as long as the engine.
        let app = pd::bootstrap_router(model.rooms.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("sim: bootstrap endpoint stopped: {e}");
            }
        });
    }
    let broken = {
        let model = model.clone();
        async move {
            match group {
                Some((l, spec)) => group::lead(l, spec, model).await,
                None => std::future::pending().await,
            }
        }
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(model.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .into_future();
    tokio::pin!(server, broken);
    let drained = async {
        shutdown.await;
        tracing::info!("sim: draining; new requests get 503");
        model.gate.start_draining();
        let deadline = tokio::time::Instant::now() + drain;
        while model.gate.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    };
    let ended = tokio::select! {
        r = &mut server => { r?; return Ok(Ended::Drained) }
        reason = &mut broken => {
            tracing::error!("sim: {reason}: the engine stops");
            return Ok(Ended::GroupBroken(reason));
        }
        all = drained => if all { Ended::Drained } else {
            tracing::warn!("sim: drain bound of {drain:?} ran out with requests in flight");
            Ended::DrainTimedOut
        },
    };
    let _ = stop_tx.send(true);
    // Answers already queued go out; connections left idle close.
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
    Ok(ended)
}

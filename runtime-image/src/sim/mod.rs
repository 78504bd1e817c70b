//! The GPU-free sim engine (`deepseek-launcher sim`): an OpenAI-compatible server with
//! vLLM-format metrics and a token-timing model, bound to the address it is given.

pub mod model;
pub mod openai;
pub mod prom;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;

pub use model::{SimModel, SimSettings};

/// The sim's routes.
pub fn router(model: Arc<SimModel>) -> Router {
    Router::new()
        .route("/health", get(|| async { "" }))
        .route("/v1/models", get(openai::models))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route(
            "/metrics",
            get(|State(m): State<Arc<SimModel>>| async move { prom::render(&m) }),
        )
        .with_state(model)
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish for at most `drain`. Returns whether every request finished in time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: SimSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<bool> {
    let model = SimModel::new(settings);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_wait = stop_rx.clone();
    let server = axum::serve(listener, router(model)).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("sim: draining");
        let _ = stop_tx.send(true);
    });
    let deadline = async move {
        let _ = stop_wait.wait_for(|s| *s).await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        r = server => r.map(|()| true),
        () = deadline => {
            tracing::warn!("sim: drain grace period of {drain:?} ran out with requests in flight");
            Ok(false)
        }
    }
}

//! The front (`deepseek-launcher front`): the stable address of a model that may be at
//! zero replicas. It forwards OpenAI-compatible requests (streamed or not) to a ready
//! replica group, least outstanding first; while no group is ready it holds them in a
//! bounded queue, each for a bounded wait, and answers 503 with `Retry-After` past either
//! bound. The held count is exported (`/metrics`, `/front/status`) so the operator scales
//! from zero as soon as a request waits. It keeps no state a restart would lose beyond the
//! requests in flight, so two replicas behind a Service make it highly available.
//! Why it is built here and not taken from KEDA's HTTP add-on: docs/autoscaling.md.

pub mod backends;
pub mod hold;
pub mod metrics;
pub mod proxy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

pub use backends::{BackendSpec, Balance, Source};

/// Bounds and sources of one front.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Requests held at once while no group is ready.
    pub queue_size: usize,
    /// How long one request may wait for a ready group.
    pub max_wait: Duration,
    /// `Retry-After` of a 503.
    pub retry_after: Duration,
    /// How often backends are probed (and the backends file re-read).
    pub probe_every: Duration,
    pub balance: Balance,
    pub source: Source,
    /// Bearer token of `POST /front/backends` (the operator's push); unset: no push.
    pub token: Option<String>,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            queue_size: 100,
            max_wait: Duration::from_secs(600),
            retry_after: Duration::from_secs(5),
            probe_every: Duration::from_millis(500),
            balance: Balance::LeastOutstanding,
            source: Source::default(),
            token: None,
        }
    }
}

/// One front's shared state.
pub struct Front {
    pub cfg: FrontConfig,
    pub backends: Arc<backends::Backends>,
    pub hold: hold::Hold,
    pub metrics: metrics::Metrics,
    pub pushed: Arc<backends::Pushed>,
    client: proxy::Client,
}

impl Front {
    pub fn new(cfg: FrontConfig) -> Arc<Self> {
        let metrics = metrics::Metrics::default();
        Arc::new(Front {
            backends: backends::Backends::new(cfg.balance, metrics.clone()),
            hold: hold::Hold::new(cfg.queue_size, metrics.held.clone()),
            metrics,
            client: proxy::client(),
            pushed: Arc::default(),
            cfg,
        })
    }
}

/// What `/front/status` answers.
#[derive(serde::Serialize)]
struct Status {
    held: i64,
    #[serde(rename = "queueSize")]
    queue_size: usize,
    #[serde(rename = "maxWaitSeconds")]
    max_wait_seconds: f64,
    backends: Vec<backends::BackendView>,
    /// The last hold episode (seconds since the epoch): the operator's cold-start timeline.
    episode: hold::Episode,
}

/// What the operator pushes: the model's group leaders, `URL[,READY_URL]` each.
#[derive(serde::Deserialize)]
struct Push {
    backends: Vec<String>,
}

fn status(f: &Front) -> Status {
    Status {
        held: f.hold.held(),
        queue_size: f.cfg.queue_size,
        max_wait_seconds: f.cfg.max_wait.as_secs_f64(),
        backends: f.backends.view(),
        episode: f.hold.episode(),
    }
}

/// `POST /front/backends` (bearer token): replaces the pushed backends and answers the
/// status, so the operator reads the held count in the same round trip.
async fn push(
    State(f): State<Arc<Front>>,
    headers: axum::http::HeaderMap,
    axum::Json(p): axum::Json<Push>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&f.cfg.token, given) {
        (Some(t), Some(g)) if !t.is_empty() && t == g => {}
        _ => return (StatusCode::UNAUTHORIZED, "a valid front token is required").into_response(),
    }
    let specs: Result<Vec<BackendSpec>, String> = p.backends.iter().map(|b| b.parse()).collect();
    match specs {
        Ok(specs) => {
            f.pushed.replace(specs);
            axum::Json(status(&f)).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// The front's routes: its own `/metrics`, `/healthz`, `/front/status` and
/// `/front/backends`; every other path is forwarded.
pub fn router(front: Arc<Front>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(f): State<Arc<Front>>| async move { f.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/front/status",
            get(|State(f): State<Arc<Front>>| async move { axum::Json(status(&f)) }),
        )
        .route("/front/backends", axum::routing::post(push))
        .fallback(proxy::forward)
        .with_state(front)
}

/// Serves `front` on `listener` until `shutdown` resolves, probing backends meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    front: Arc<Front>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let probe = tokio::spawn(backends::probe_loop(
        front.backends.clone(),
        front.cfg.source.clone(),
        front.pushed.clone(),
        front.cfg.probe_every,
    ));
    let served = axum::serve(listener, router(front))
        .with_graceful_shutdown(shutdown)
        .await;
    probe.abort();
    served
}

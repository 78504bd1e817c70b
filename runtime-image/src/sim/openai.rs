//! OpenAI-compatible handlers of the sim: `/v1/models`, `/v1/completions`,
//! `/v1/chat/completions` (JSON or SSE with `"stream": true`). A prefill or decode
//! server (`pd.rs`) takes requests only through the router, with its bootstrap fields.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::model::{count_tokens, SimModel};
use super::pd::{fetch_kv, HANDOFF_TIMEOUT};
use deepseek_engine::PdRole;

/// This request's part in a disaggregated deployment.
#[derive(Clone, Copy)]
struct PdStep {
    /// Compute the prompt here (false: decode received its KV from prefill).
    prefill: bool,
    /// Prefill: publish the computed KV under this room.
    publish: Option<u64>,
}

const AGGREGATED: PdStep = PdStep {
    prefill: true,
    publish: None,
};

async fn start(m: &SimModel, prompt_tokens: u64, pd: PdStep) -> super::model::Running<'_> {
    let run = m.admit_as(prompt_tokens, pd.prefill).await;
    if let Some(room) = pd.publish {
        m.rooms.publish(room, prompt_tokens);
    }
    run
}

/// Tokens generated when a request names no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 16;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CompletionRequest {
    model: Option<String>,
    prompt: Option<Value>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    stream: bool,
    #[serde(flatten)]
    bootstrap: super::pd::Bootstrap,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Message {
    content: Value,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        Value::Object(o) => o.get("text").map(text_of).unwrap_or_default(),
        _ => String::new(),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    let body = json!({"object": "error", "message": message, "type": "BadRequestError", "code": status.as_u16()});
    (status, Json(body)).into_response()
}

pub async fn models(State(m): State<Arc<SimModel>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": m.settings.served_model_name,
            "object": "model",
            "created": now(),
            "owned_by": "deepseek-operator-sim",
            "max_model_len": m.settings.max_model_len,
        }]
    }))
}

pub async fn completions(
    State(m): State<Arc<SimModel>>,
    Json(req): Json<CompletionRequest>,
) -> Response {
    generate(m, req, Kind::Completion).await
}

pub async fn chat_completions(
    State(m): State<Arc<SimModel>>,
    Json(req): Json<CompletionRequest>,
) -> Response {
    generate(m, req, Kind::Chat).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Token `i` of the generated text.
fn token(i: u64) -> &'static str {
    const WORDS: [&str; 8] = [
        " the",
        " model",
        " is",
        " simulated",
        " and",
        " thinks",
        " deeply",
        ".",
    ];
    WORDS[(i % WORDS.len() as u64) as usize]
}

async fn generate(m: Arc<SimModel>, req: CompletionRequest, kind: Kind) -> Response {
    if !m.gate.loaded() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is still loading its weights.".into(),
        );
    }
    let Some(admission) = m.try_admit_request() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is draining and takes no new requests.".into(),
        );
    };
    if let Some(name) = &req.model {
        if name != &m.settings.served_model_name {
            return error(
                StatusCode::NOT_FOUND,
                format!("The model `{name}` does not exist."),
            );
        }
    }
    let prompt = match kind {
        Kind::Completion => req.prompt.as_ref().map(text_of).unwrap_or_default(),
        Kind::Chat => req
            .messages
            .iter()
            .flatten()
            .map(|msg| text_of(&msg.content))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let prompt_tokens = count_tokens(&prompt);
    let mut max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let limit = u64::from(m.settings.max_model_len);
    if prompt_tokens + max_tokens > limit {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "This model's maximum context length is {limit} tokens. However, you requested {} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion).",
                prompt_tokens + max_tokens
            ),
        );
    }
    let pd = match (m.settings.pd_role, req.bootstrap.parts()) {
        (None, _) => AGGREGATED,
        (Some(role), None) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("this is a {role} server: send requests through the router (bootstrap_host, bootstrap_port and bootstrap_room are missing)"),
            )
        }
        (Some(PdRole::Prefill), Some((_, _, room))) => {
            // Prefill answers with the first token; decode streams the rest.
            max_tokens = 1;
            PdStep {
                prefill: true,
                publish: Some(room),
            }
        }
        (Some(PdRole::Decode), Some((host, port, room))) => {
            let waiting = m.waiting_guard();
            let fetched = fetch_kv(&m.client, host, port, room, HANDOFF_TIMEOUT).await;
            drop(waiting);
            if let Err(e) = fetched {
                return error(StatusCode::GATEWAY_TIMEOUT, e.to_string());
            }
            PdStep {
                prefill: false,
                publish: None,
            }
        }
    };
    let id = format!(
        "{}-{}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        m.counters
            .requests_total
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    if req.stream {
        stream(m, admission, kind, id, prompt_tokens, max_tokens, pd)
    } else {
        let mut run = start(&m, prompt_tokens, pd).await;
        let mut text = String::new();
        for i in 0..max_tokens {
            run.decode_one().await;
            text.push_str(token(i));
        }
        run.finish();
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens, "total_tokens": prompt_tokens + max_tokens});
        let model = &m.settings.served_model_name;
        let body = match kind {
            Kind::Completion => json!({
                "id": id, "object": "text_completion", "created": now(), "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "length"}],
                "usage": usage,
            }),
            Kind::Chat => json!({
                "id": id, "object": "chat.completion", "created": now(), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
                "usage": usage,
            }),
        };
        Json(body).into_response()
    }
}

fn chunk(kind: Kind, id: &str, model: &str, text: &str, finish: Option<&str>) -> Bytes {
    let v = match kind {
        Kind::Completion => json!({
            "id": id, "object": "text_completion", "created": now(), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
        }),
        Kind::Chat => json!({
            "id": id, "object": "chat.completion.chunk", "created": now(), "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        }),
    };
    Bytes::from(format!("data: {v}\n\n"))
}

fn stream(
    m: Arc<SimModel>,
    admission: super::model::Admission,
    kind: Kind,
    id: String,
    prompt_tokens: u64,
    max_tokens: u64,
    pd: PdStep,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let model = m.settings.served_model_name.clone();
        let mut run = start(&m, prompt_tokens, pd).await;
        for i in 0..max_tokens {
            run.decode_one().await;
            let finish = (i + 1 == max_tokens).then_some("length");
            if tx
                .send(chunk(kind, &id, &model, token(i), finish))
                .await
                .is_err()
            {
                return; // client went away: drop frees the slot
            }
        }
        run.finish();
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        // The last chunk is queued for the client: the request is answered.
        drop(admission);
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

//! Prefill/decode roles of the sim, with a simulated KV handoff over HTTP, speaking the
//! protocol of the pinned router (`sglang-router --pd-disaggregation`).
//!
//! The router sends each request to one prefill and one decode server at once, with the
//! same `bootstrap_host` (the prefill server), `bootstrap_port` and `bootstrap_room`.
//! Prefill computes the prompt (prefill timing, counted as waiting/running like any
//! request) and then publishes the room on its bootstrap port; decode waits until it can
//! take the room from there, then generates at decode timing without prefilling again.
//! So a request only finishes when both roles did their part, and a decode server never
//! streams a token for a prompt no prefill server computed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use deepseek_engine::PdRole;
use serde::Deserialize;
use serde_json::{json, Value};

/// How long decode waits for prefill to publish a room before failing the request.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(60);
/// Rooms not taken within this long are dropped (their decode side failed).
const ROOM_TTL: Duration = Duration::from_secs(120);
/// At most this many published rooms are held; older ones are dropped first.
const MAX_ROOMS: usize = 100_000;
/// Decode polls the prefill server's bootstrap endpoint this often.
const POLL: Duration = Duration::from_millis(10);

/// The bootstrap fields the router adds to a request body.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Bootstrap {
    pub bootstrap_host: Option<String>,
    pub bootstrap_port: Option<u16>,
    pub bootstrap_room: Option<u64>,
}

impl Bootstrap {
    /// Host, port and room when the router sent all three.
    pub fn parts(&self) -> Option<(&str, u16, u64)> {
        Some((
            self.bootstrap_host.as_deref()?,
            self.bootstrap_port?,
            self.bootstrap_room?,
        ))
    }
}

/// KV caches a prefill server computed and decode has not taken yet: room -> (prompt
/// tokens, when published).
#[derive(Default)]
pub struct Rooms(Mutex<HashMap<u64, (u64, Instant)>>);

impl Rooms {
    /// Publishes a computed prompt; at the cap, drops expired rooms, then the oldest.
    pub fn publish(&self, room: u64, prompt_tokens: u64) {
        let Ok(mut rooms) = self.0.lock() else {
            return;
        };
        let now = Instant::now();
        // Expiry is paid only when the map is full, so publishing stays O(1) normally.
        if rooms.len() >= MAX_ROOMS {
            rooms.retain(|_, (_, at)| now.duration_since(*at) < ROOM_TTL);
        }
        if rooms.len() >= MAX_ROOMS {
            if let Some(oldest) = rooms.iter().min_by_key(|(_, (_, at))| *at).map(|(r, _)| *r) {
                rooms.remove(&oldest);
            }
        }
        rooms.insert(room, (prompt_tokens, now));
    }

    /// Hands a room's KV over once: the second take finds nothing.
    pub fn take(&self, room: u64) -> Option<u64> {
        self.0.lock().ok()?.remove(&room).map(|(tokens, _)| tokens)
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The prefill server's bootstrap endpoint: `GET /kv/{room}` hands the room's KV to the
/// decode server that asks (200 with its size) or says it is not there yet (404).
pub fn bootstrap_router(rooms: Arc<Rooms>) -> Router {
    Router::new()
        .route("/kv/{room}", get(take_room))
        .route("/health", get(|| async { StatusCode::OK }))
        .with_state(rooms)
}

async fn take_room(
    State(rooms): State<Arc<Rooms>>,
    Path(room): Path<u64>,
) -> (StatusCode, Json<Value>) {
    match rooms.take(room) {
        Some(tokens) => (
            StatusCode::OK,
            Json(json!({"room": room, "promptTokens": tokens})),
        ),
        None => (StatusCode::NOT_FOUND, Json(json!({"room": room}))),
    }
}

/// Why decode could not get a prompt's KV.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandoffError {
    #[error("prefill at {host}:{port} did not publish room {room} within {timeout:?}")]
    TimedOut {
        host: String,
        port: u16,
        room: u64,
        timeout: Duration,
    },
}

/// Decode side: waits until the prefill server at `host:port` publishes `room`, and
/// returns the prompt's size.
pub async fn fetch_kv(
    client: &reqwest::Client,
    host: &str,
    port: u16,
    room: u64,
    timeout: Duration,
) -> Result<u64, HandoffError> {
    let url = format!("http://{host}:{port}/kv/{room}");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status().is_success() {
                if let Ok(v) = resp.json::<Value>().await {
                    return Ok(v["promptTokens"].as_u64().unwrap_or(1));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HandoffError::TimedOut {
                host: host.to_string(),
                port,
                room,
                timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What `/server_info` and `/model_info` say: enough for the router to register the
/// worker and know its role. No `model_path`/`tokenizer_path`: the router would fetch a
/// tokenizer for it from the Hugging Face hub, and the sim has none to offer.
pub fn server_info(served_model_name: &str, role: Option<PdRole>, max_model_len: u32) -> Value {
    json!({
        "served_model_name": served_model_name,
        "is_generation": true,
        "disaggregation_mode": role.map(PdRole::as_str).unwrap_or("null"),
        "max_total_num_tokens": max_model_len,
        "context_length": max_model_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_handed_over_once() {
        let rooms = Rooms::default();
        rooms.publish(7, 120);
        assert_eq!(rooms.take(7), Some(120));
        assert_eq!(rooms.take(7), None);
        assert!(rooms.is_empty());
    }

    #[test]
    fn rooms_are_bounded() {
        let rooms = Rooms::default();
        for room in 0..(MAX_ROOMS as u64 + 10) {
            rooms.publish(room, 1);
        }
        assert_eq!(rooms.len(), MAX_ROOMS);
        // The oldest went first.
        assert_eq!(rooms.take(0), None);
        assert_eq!(rooms.take(MAX_ROOMS as u64 + 9), Some(1));
    }

    #[test]
    fn bootstrap_fields_need_all_three() {
        let full: Bootstrap = serde_json::from_value(
            json!({"bootstrap_host": "127.0.0.1", "bootstrap_port": 8998, "bootstrap_room": 5}),
        )
        .expect("parses");
        assert_eq!(full.parts(), Some(("127.0.0.1", 8998, 5)));
        let partial: Bootstrap =
            serde_json::from_value(json!({"bootstrap_room": 5})).expect("parses");
        assert_eq!(partial.parts(), None);
    }
}

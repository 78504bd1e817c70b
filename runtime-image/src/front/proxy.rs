//! Forwarding one request: hold it while no group is ready (bounded), send it to the
//! backend `Backends::pick` chooses, and pass the answer back frame by frame (SSE is never
//! buffered). A request is sent again only when the group did not take it (the connection
//! was refused, or it answered 503: loading or draining), so none is answered twice.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, request, HeaderMap, HeaderName, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use super::backends::Lease;
use super::metrics::Refusal;
use super::Front;

/// Largest request body the front holds (prompts are text; 16 MiB is far beyond any
/// context window).
pub const MAX_BODY: usize = 16 << 20;

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// The forwarding client: HTTP/1.1 keep-alive to the groups, a short connect bound (a
/// group that does not accept is not serving).
pub fn client() -> Client {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
    http.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build(http)
}

enum Sent {
    Answer(hyper::Response<hyper::body::Incoming>),
    /// The group did not take the request: it may go to another one.
    NotServed(String),
    Failed(String),
}

/// Headers that belong to one hop, not to the request (RFC 9110 section 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !hop_by_hop(k) {
            to.append(k.clone(), v.clone());
        }
    }
}

pub async fn forward(State(front): State<Arc<Front>>, req: Request) -> Response {
    let deadline = Instant::now() + front.cfg.max_wait;
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body unreadable or over {MAX_BODY} bytes: {e}"),
            )
        }
    };
    let mut changes = front.backends.subscribe();
    let mut held = None;
    let mut was_held = false;
    loop {
        // Every ready backend at most once per wake: one that refuses is marked not
        // ready, so the next pick skips it.
        for _ in 0..front.backends.len() {
            let Some(lease) = front.backends.pick() else {
                break;
            };
            drop(held.take());
            let picked = super::hold::now();
            match send(&front.client, &parts, body.clone(), &lease).await {
                Sent::Answer(r) => {
                    front.metrics.forwarded.inc();
                    if was_held {
                        front.hold.answered(picked);
                    }
                    return pass_through(r, lease);
                }
                Sent::NotServed(why) => {
                    tracing::info!(backend = %lease.backend.spec.url, "front: not served ({why}); trying again");
                    front.backends.mark(&lease.backend, false);
                }
                Sent::Failed(why) => {
                    return error(
                        StatusCode::BAD_GATEWAY,
                        format!("the replica group failed while answering: {why}"),
                    )
                }
            }
        }
        if held.is_none() {
            match front.hold.enter() {
                Some(h) => {
                    front.metrics.held_total.inc();
                    held = Some(h);
                    was_held = true;
                }
                None => return refuse(&front, Refusal::QueueFull),
            }
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return refuse(&front, Refusal::WaitExpired),
        }
    }
}

async fn send(client: &Client, parts: &request::Parts, body: Bytes, lease: &Lease) -> Sent {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = match format!("{}{path}", lease.backend.spec.url).parse() {
        Ok(u) => u,
        Err(e) => return Sent::Failed(format!("bad backend URL: {e}")),
    };
    let mut req = hyper::Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    copy_headers(&parts.headers, req.headers_mut());
    match client.request(req).await {
        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
            Sent::NotServed("answered 503".into())
        }
        Ok(r) => Sent::Answer(r),
        Err(e) if e.is_connect() => Sent::NotServed(format!("{e:?}")),
        Err(e) => Sent::Failed(format!("{e:?}")),
    }
}

/// The group's answer, each frame passed on as it comes; the lease (outstanding count)
/// lasts until the body ends or the client leaves.
fn pass_through(r: hyper::Response<hyper::body::Incoming>, lease: Lease) -> Response {
    let (parts, incoming) = r.into_parts();
    let mut out = Response::new(Body::empty());
    *out.status_mut() = parts.status;
    copy_headers(&parts.headers, out.headers_mut());
    let frames = incoming.into_data_stream().map(move |frame| {
        let _outstanding = &lease;
        frame
    });
    *out.body_mut() = Body::from_stream(frames);
    out
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "object": "error", "type": "ServiceUnavailable", "code": status.as_u16(), "message": message,
    });
    (status, axum::Json(body)).into_response()
}

/// 503 with `Retry-After`: never a hang, never a silent drop.
fn refuse(front: &Front, why: Refusal) -> Response {
    front.metrics.refuse(why);
    let retry = front.cfg.retry_after.as_secs().max(1);
    let message = match why {
        Refusal::QueueFull => format!(
            "{} requests are already held while the model starts (queue size); retry in {retry} s",
            front.cfg.queue_size
        ),
        Refusal::WaitExpired => format!(
            "no replica group of the model became ready within {:?} (max wait); retry in {retry} s",
            front.cfg.max_wait
        ),
    };
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(retry));
    r
}

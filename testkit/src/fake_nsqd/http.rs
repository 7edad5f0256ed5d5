//! The fake nsqd's HTTP side, with nsqd 1.x's answers: `/ping`, `/pub`, `/mpub`, `/stats`, `/topic/create`,
//! `/channel/create`. Errors are `{"message":"…"}` with nsqd's codes (400, 404, 405, 413 `MSG_TOO_BIG`), and
//! every response carries `X-NSQ-Content-Type: nsq; version=1.0`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use queues::nsq::codec;
use serde_json::{Value, json};

use super::Options;
use super::state::State;

#[derive(Clone)]
struct App {
    state: Arc<Mutex<State>>,
    opts: Options,
}

type Params = Query<HashMap<String, String>>;

fn err(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

fn ok_text(s: &'static str) -> Response {
    (StatusCode::OK, s).into_response()
}

pub fn router(state: Arc<Mutex<State>>, opts: Options) -> Router {
    Router::new()
        .route("/ping", get(|| async { ok_text("OK") }))
        .route("/pub", post(publish))
        .route("/mpub", post(mpublish))
        .route("/stats", get(stats))
        .route("/topic/create", post(create_topic))
        .route("/channel/create", post(create_channel))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "NOT_FOUND") })
        .method_not_allowed_fallback(|| async {
            err(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
        })
        .layer(axum::middleware::map_response(
            |mut r: Response| async move {
                r.headers_mut().insert(
                    "X-NSQ-Content-Type",
                    HeaderValue::from_static("nsq; version=1.0"),
                );
                r
            },
        ))
        .with_state(App { state, opts })
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `topic` parameter, or nsqd's 400 message for its absence or invalidity.
fn topic_of(q: &HashMap<String, String>) -> Result<String, &'static str> {
    match q.get("topic") {
        None => Err("MISSING_ARG_TOPIC"),
        Some(t) if !codec::is_valid_name(t) => Err("INVALID_TOPIC"),
        Some(t) => Ok(t.clone()),
    }
}

async fn publish(
    AxState(app): AxState<App>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // nsqd refuses by Content-Length before reading the body.
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::from(app.opts.max_msg_size))
        || body.len() > app.opts.max_msg_size as usize
    {
        return err(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG");
    }
    if body.is_empty() {
        return err(StatusCode::BAD_REQUEST, "MSG_EMPTY");
    }
    let topic = match topic_of(&q) {
        Ok(t) => t,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let defer = match q.get("defer").map(|d| d.parse::<i64>()) {
        None => Duration::ZERO,
        Some(Ok(ms)) if (0..=3_600_000).contains(&ms) => Duration::from_millis(ms as u64),
        Some(_) => return err(StatusCode::BAD_REQUEST, "INVALID_DEFER"),
    };
    lock(&app.state).publish(&topic, vec![body.to_vec()], defer);
    ok_text("OK")
}

async fn mpublish(AxState(app): AxState<App>, Query(q): Params, body: Bytes) -> Response {
    if body.len() > app.opts.max_body_size as usize {
        return err(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_BIG");
    }
    let topic = match topic_of(&q) {
        Ok(t) => t,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let binary = matches!(q.get("binary").map(String::as_str), Some("true" | "1"));
    let msgs: Vec<Vec<u8>> = if binary {
        let limits = codec::Limits {
            max_msg_size: app.opts.max_msg_size,
            max_body_size: app.opts.max_body_size,
        };
        match codec::decode_mpub_body(&body, limits) {
            Ok(m) => m,
            Err(e) if e.message.contains("too big") => {
                return err(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG");
            }
            Err(_) => return err(StatusCode::BAD_REQUEST, "INVALID_BODY"),
        }
    } else {
        let mut out = Vec::new();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if line.len() > app.opts.max_msg_size as usize {
                return err(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG");
            }
            out.push(line.to_vec());
        }
        out
    };
    if msgs.is_empty() {
        return err(StatusCode::BAD_REQUEST, "MSG_EMPTY");
    }
    lock(&app.state).publish(&topic, msgs, Duration::ZERO);
    ok_text("OK")
}

async fn create_topic(AxState(app): AxState<App>, Query(q): Params) -> Response {
    let topic = match topic_of(&q) {
        Ok(t) => t,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    lock(&app.state).topic(&topic);
    (StatusCode::OK, "").into_response()
}

async fn create_channel(AxState(app): AxState<App>, Query(q): Params) -> Response {
    let topic = match topic_of(&q) {
        Ok(t) => t,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let channel = match q.get("channel") {
        None => return err(StatusCode::BAD_REQUEST, "MISSING_ARG_CHANNEL"),
        Some(c) if !codec::is_valid_name(c) => {
            return err(StatusCode::BAD_REQUEST, "INVALID_CHANNEL");
        }
        Some(c) => c.clone(),
    };
    let mut st = lock(&app.state);
    if !st.topics.contains_key(&topic) {
        return err(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND");
    }
    st.channel(&topic, &channel);
    st.dispatch(&topic, &channel);
    (StatusCode::OK, "").into_response()
}

/// One client under its channel, with the field names of nsqd 1.x's `ClientV2Stats` (nsqd/stats.go).
fn client_json(c: &super::state::Client) -> Value {
    let i = &c.info;
    json!({
        "client_id": i.client_id,
        "hostname": i.hostname,
        "version": "V2",
        "remote_address": i.remote_address,
        // nsqd's stateSubscribed (3), or stateClosing (4).
        "state": if c.closing { 4 } else { 3 },
        "ready_count": c.rdy,
        "in_flight_count": c.in_flight,
        "message_count": i.message_count,
        "finish_count": i.finish_count,
        "requeue_count": i.requeue_count,
        "connect_ts": i.connect_ts,
        "sample_rate": 0,
        "deflate": false,
        "snappy": false,
        "user_agent": i.user_agent,
        "tls": false,
        "tls_cipher_suite": "",
        "tls_version": "",
        "tls_negotiated_protocol": "",
        "tls_negotiated_protocol_is_mutual": false,
    })
}

/// The `/stats` document in nsqd 1.x's shape; `format=json` is the only format the fake speaks.
pub fn stats_json(st: &State, topic: Option<&str>, channel: Option<&str>) -> Value {
    let topics: Vec<Value> = st
        .topics
        .iter()
        .filter(|(name, _)| topic.is_none_or(|t| t == name.as_str()))
        .map(|(name, t)| {
            let channels: Vec<Value> = t
                .channels
                .iter()
                .filter(|(cn, _)| channel.is_none_or(|c| c == cn.as_str()))
                .map(|(cn, ch)| {
                    json!({
                        "channel_name": cn,
                        "depth": ch.queue.len(),
                        "backend_depth": 0,
                        "in_flight_count": ch.in_flight.len(),
                        "deferred_count": ch.deferred.len(),
                        "message_count": ch.message_count,
                        "requeue_count": ch.requeue_count,
                        "timeout_count": ch.timeout_count,
                        "client_count": ch.clients.len(),
                        "clients": ch.clients.iter().filter_map(|id| st.clients.get(id)).map(client_json).collect::<Vec<_>>(),
                        "paused": false,
                        "e2e_processing_latency": {"count": 0, "percentiles": null},
                    })
                })
                .collect();
            json!({
                "topic_name": name,
                "channels": channels,
                "depth": t.backlog.len(),
                "backend_depth": 0,
                "message_count": t.message_count,
                "message_bytes": t.message_bytes,
                "paused": false,
                "e2e_processing_latency": {"count": 0, "percentiles": null},
            })
        })
        .collect();
    json!({
        "version": "1.3.0",
        "health": "OK",
        "start_time": 0,
        "topics": if topics.is_empty() { Value::Null } else { Value::Array(topics) },
        "producers": null,
    })
}

async fn stats(AxState(app): AxState<App>, Query(q): Params) -> Response {
    let doc = stats_json(
        &lock(&app.state),
        q.get("topic").map(String::as_str),
        q.get("channel").map(String::as_str),
    );
    if q.get("format").map(String::as_str) != Some("json") {
        return (StatusCode::OK, format!("nsqd v1.3.0 (fake)\n{doc}")).into_response();
    }
    axum::Json(doc).into_response()
}

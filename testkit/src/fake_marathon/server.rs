//! The fake's HTTP side: accepts connections (dropping some on demand), logs every request, applies the
//! injected faults, and dispatches the rest onto the model.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::Value;

use super::faults::FaultBody;
use super::state::{Answer, normalize_id};
use super::{LoggedRequest, Shared};

/// A listener that counts connections and closes the ones a test asked to drop before reading them.
struct FaultyListener {
    inner: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            };
            self.shared.connections.fetch_add(1, Ordering::SeqCst);
            let drop_it = {
                let mut f = self.shared.faults.lock().expect("faults");
                if f.drop_connections > 0 {
                    f.drop_connections -= 1;
                    true
                } else {
                    false
                }
            };
            if drop_it {
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves until `stop` fires; sends the bound address first.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    stop: tokio::sync::oneshot::Receiver<()>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for the fake marathon");
    let addr = listener.local_addr().expect("local addr");
    let _ = addr_tx.send(addr);
    let s = shared.clone();
    let app = axum::Router::new().fallback(move |method, uri, headers, body| {
        let s = s.clone();
        async move { handle(s, method, uri, headers, body).await }
    });
    match tls {
        None => {
            let listener = FaultyListener {
                inner: listener,
                shared,
            };
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = stop => {}
            }
        }
        Some(config) => {
            let listener = super::tls::TlsListener {
                inner: listener,
                acceptor: tokio_rustls::TlsAcceptor::from(config),
                shared,
            };
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = stop => {}
            }
        }
    }
}

fn log(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    let auth_scheme = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split([' ', '=']).next().unwrap_or_default().to_string());
    let entry = LoggedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .filter(|(k, _)| k.as_str() != "authorization")
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        auth_scheme,
        json: serde_json::from_slice(body).ok(),
        body: String::from_utf8_lossy(body).into_owned(),
    };
    shared.log.lock().expect("log").push(entry);
}

fn respond(
    status: u16,
    body: Body,
    content_type: &str,
    headers: Vec<(String, String)>,
) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(body).expect("valid response")
}

fn json_response(a: Answer) -> Response<Body> {
    respond(
        a.status,
        Body::from(a.body.to_string()),
        "application/json",
        a.headers,
    )
}

async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    log(&shared, &method, &uri, &headers, &body);
    let (delay, canned, auth, forbid, duration, stuck) = {
        let mut f = shared.faults.lock().expect("faults");
        (
            f.delay,
            f.take_answer(method.as_str(), uri.path()),
            f.require_authorization.clone(),
            f.forbid_writes,
            f.deployment_duration,
            f.stuck_deployments,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(f) = canned {
        return match f.body {
            FaultBody::Json(v) => respond(
                f.status,
                Body::from(v.to_string()),
                "application/json",
                vec![],
            ),
            FaultBody::Text(t) => respond(f.status, Body::from(t), "text/html", vec![]),
        };
    }
    if let Some(expected) = auth {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return json_response(Answer {
                status: 401,
                body: serde_json::json!({"message": "Invalid username or password."}),
                headers: vec![(
                    "WWW-Authenticate".into(),
                    "Basic realm=\"Mesosphere\"".into(),
                )],
            });
        }
    }
    if forbid && method != Method::GET {
        return json_response(Answer {
            status: 403,
            body: serde_json::json!({"message": "Not Authorized to perform this action!"}),
            headers: vec![],
        });
    }
    let query = uri.query().unwrap_or_default();
    let flag = |name: &str, default: bool| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map_or(default, |(_, v)| v == "true")
    };
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return json_response(Answer {
                    status: 400,
                    body: serde_json::json!({"message": "Invalid JSON", "details": [{"path": "/", "errors": [e.to_string()]}]}),
                    headers: vec![],
                });
            }
        }
    };
    let body = parsed.unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let mut state = shared.state.lock().expect("state");
    state.tick(Instant::now());
    let answer = if let Some(rest) = path.strip_prefix("/v2/groups") {
        let id = normalize_id(rest);
        match method {
            Method::GET => state.get_group(&id),
            Method::PUT => state.put_group(&id, &body, flag("force", false), duration, stuck),
            Method::POST if id == "/" => state.post_group(&body, duration, stuck),
            Method::DELETE => state.delete_group(&id, flag("force", false), duration, stuck),
            _ => not_allowed(),
        }
    } else if let Some(rest) = path.strip_prefix("/v2/apps") {
        let id = normalize_id(rest);
        match method {
            Method::GET if id == "/" => state.list_apps(),
            Method::GET => state.get_app(&id),
            Method::PUT if id != "/" => {
                state.put_app(&id, &body, flag("force", false), duration, stuck)
            }
            Method::POST if id == "/" => {
                let id = normalize_id(body.get("id").and_then(Value::as_str).unwrap_or_default());
                if state.apps.contains_key(&id) {
                    Answer {
                        status: 409,
                        body: serde_json::json!({"message": format!("An app with id [{id}] already exists.")}),
                        headers: vec![],
                    }
                } else {
                    state.put_app(&id, &body, false, duration, stuck)
                }
            }
            Method::DELETE if id != "/" => {
                state.delete_app(&id, flag("force", true), duration, stuck)
            }
            _ => not_allowed(),
        }
    } else if path == "/v2/deployments" && method == Method::GET {
        state.list_deployments()
    } else if let Some(id) = path.strip_prefix("/v2/deployments/")
        && method == Method::DELETE
    {
        state.delete_deployment(id)
    } else if path == "/v2/leader" && method == Method::GET {
        state.leader()
    } else if path == "/v2/info" && method == Method::GET {
        state.info()
    } else if path == "/ping" {
        return respond(200, Body::from("pong"), "text/plain", vec![]);
    } else {
        return respond(
            404,
            Body::from("<html><body><h1>404 Not Found</h1></body></html>"),
            "text/html",
            vec![],
        );
    };
    json_response(answer)
}

fn not_allowed() -> Answer {
    Answer {
        status: 405,
        body: serde_json::json!({"message": "HTTP 405 Method Not Allowed"}),
        headers: vec![],
    }
}

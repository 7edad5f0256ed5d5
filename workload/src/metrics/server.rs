//! The `/metrics` HTTP endpoint: `GET /metrics` answers with the registry in the OpenMetrics text format,
//! anything else with 404 (or 405 for another method on `/metrics`).
//!
//! Built on hyper 1's HTTP/1.1 server, which the workspace already carries (reqwest uses it): a correct HTTP
//! implementation (keep-alive, pipelining, chunked request bodies, HEAD) for a few dozen lines, without a
//! web framework. It is bounded like any server facing a network: at most [`MAX_CONNECTIONS`] at once, request
//! heads of at most 16 KiB that must arrive within [`HEADER_TIMEOUT`], and every connection closed after
//! [`CONNECTION_LIFETIME`] (after its current response), so a client cannot hold the endpoint.
//!
//! The socket is bound by [`Exporter::bind`] before a run starts, so a port in use fails the run at once with
//! a clear error; [`Exporter::serve`] then answers scrapes until the run's stop is asked for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Registry;
use crate::shutdown::Shutdown;

/// The content type of the OpenMetrics text format, the one `prometheus-client` writes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Most connections served at once; a scraper needs one.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a (keep-alive) connection is served before it is closed.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The metrics endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {source}{hint}",
        hint = bind_hint(source)
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process has that port: pick a free one with --metrics-addr/METRICS_ADDR)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges: use a higher one)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (that address is not one of this machine's: use 127.0.0.1, 0.0.0.0 or :PORT)"
        }
        _ => "",
    }
}

/// A bound, not yet serving, metrics listener.
#[derive(Debug)]
pub struct Exporter {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Exporter {
    /// Binds the listening socket.
    ///
    /// # Errors
    /// [`MetricsError::Bind`] when the address is in use, not local, or privileged.
    pub async fn bind(addr: SocketAddr) -> Result<Exporter, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(Exporter { listener, addr })
    }

    /// The address bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `registry` until a stop is asked for; connections still open then are closed after their
    /// current response.
    pub fn serve(self, registry: Registry, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tracing::info!("serving metrics on http://{}/metrics", self.addr);
        let registry = Arc::new(registry);
        tokio::spawn(accept_loop(self.listener, registry, shutdown))
    }
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // closed: never, the semaphore lives here
            },
            _ = shutdown.requested() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait and retry rather than spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = shutdown.requested() => return,
        };
        backoff = Duration::from_millis(10);
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, registry, shutdown).await;
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    registry: Arc<Registry>,
    shutdown: Shutdown,
) {
    let service = service_fn(move |req| {
        let registry = registry.clone();
        async move { Ok::<_, Infallible>(respond(&req, &registry)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(16 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(lifetime);
    tokio::select! {
        r = conn.as_mut() => return log_end(r),
        _ = &mut lifetime => {}
        _ = shutdown.requested() => {}
    }
    // Close after the current response, waiting for it at most HEADER_TIMEOUT.
    conn.as_mut().graceful_shutdown();
    log_end(
        tokio::time::timeout(HEADER_TIMEOUT, conn)
            .await
            .unwrap_or(Ok(())),
    );
}

fn log_end(result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
    }
}

/// The response to one request: the metrics for `GET`/`HEAD /metrics` (any query string is ignored).
fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut body = String::new();
    if let Err(e) = super::encode(&mut body, registry) {
        // Writing into a String fails only if a metric's own encoder does; report it rather than half a page.
        tracing::error!(error = %e, "cannot encode metrics");
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends raw request bytes and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("response within 5 s")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    }

    #[tokio::test]
    async fn serves_metrics_404s_elsewhere_and_stops_with_the_run() {
        let mut registry = crate::metrics::registry("producer", None);
        let sent = Counter::<u64>::default();
        registry.register("messages_sent", "Messages sent", sent.clone());
        let shutdown = Shutdown::new();
        let exporter = Exporter::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let addr = exporter.local_addr();
        let task = exporter.serve(registry, shutdown.clone());

        sent.inc_by(41);
        sent.inc();
        let r = exchange(addr, &get("/metrics?x=1")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains(&format!("content-type: {CONTENT_TYPE_OPENMETRICS}")),
            "{r}"
        );
        assert!(
            r.contains("mw_messages_sent_total{role=\"producer\"} 42\n"),
            "{r}"
        );
        assert!(r.ends_with("# EOF\n"), "{r}");

        let r = exchange(addr, &get("/")).await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = exchange(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && r.contains("allow: GET, HEAD"),
            "{r}"
        );
        let r = exchange(
            addr,
            "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && !r.contains("# EOF"),
            "{r}"
        );
        let r = exchange(addr, "this is not http\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");

        // Two requests on one keep-alive connection, the second asking to close.
        let r = exchange(
            addr,
            &format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n{}",
                get("/metrics")
            ),
        )
        .await;
        assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 2, "{r}");

        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops with the run")
            .unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener closed"
        );
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = Exporter::bind(addr).await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("cannot serve metrics on {addr}")),
            "{e}"
        );
        assert!(e.contains("pick a free one with --metrics-addr"), "{e}");
    }
}

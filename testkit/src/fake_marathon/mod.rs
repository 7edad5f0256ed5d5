//! A fake Marathon 1.10 for the `marathon-install` / `marathon-uninstall` tests: an HTTP server on a free
//! loopback port that keeps apps, groups and deployments in memory, answers with the status codes and bodies
//! that `../shared/reference/README.md` and the 1.10 RAML describe, records every request, and fails on
//! demand (slow answers, any status with any body, dropped connections, deployments that never finish).
//!
//! Tests are synchronous, so the server runs on its own thread with its own runtime; [`FakeMarathon`] owns
//! both and stops them when dropped.
//!
//! - [`state`]: the model (apps, groups, deployments, locks) and Marathon's answers.
//! - [`faults`]: what a test asks the fake to get wrong.
//! - [`server`]: the HTTP side: the request log, fault injection and dispatch onto the model.
//! - `tls`: https with a throwaway CA ([`FakeMarathon::start_tls`]).

pub mod faults;
mod server;
pub mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

pub use faults::{Fault, Faults};

/// One request as the fake received it. The `Authorization` header is never stored: only its scheme
/// (`token` or `Basic`), so that a test can assert how the client authenticated without keeping the secret.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, empty when there was none.
    pub query: String,
    /// Header names (lowercase) and values, minus `authorization`.
    pub headers: Vec<(String, String)>,
    /// `token` or `Basic` (or whatever came before the first space or `=`), when the request carried one.
    pub auth_scheme: Option<String>,
    /// The body parsed as JSON, when it was JSON.
    pub json: Option<Value>,
    /// The body as text (lossy), for bodies that are not JSON.
    pub body: String,
}

impl LoggedRequest {
    /// Whether the query string holds `name=value`.
    pub fn has_query(&self, name: &str, value: &str) -> bool {
        self.query
            .split('&')
            .any(|kv| kv == format!("{name}={value}"))
    }
}

/// What the server threads share with the test.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<state::State>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
    pub(crate) connections: AtomicUsize,
}

/// A running fake Marathon; stopped when dropped.
pub struct FakeMarathon {
    addr: SocketAddr,
    /// The CA certificate (PEM) when serving https.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeMarathon {
    /// Starts the fake on a free loopback port, with no apps, no faults and deployments that take 200 ms.
    pub fn start() -> FakeMarathon {
        FakeMarathon::start_with(None)
    }

    /// Like [`FakeMarathon::start`], over https with a certificate from a fresh CA ([`FakeMarathon::ca_pem`]).
    pub fn start_tls() -> FakeMarathon {
        let (config, ca) = tls::make();
        let mut fake = FakeMarathon::start_with(Some(config));
        fake.ca_pem = Some(ca);
        fake
    }

    fn start_with(tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> FakeMarathon {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fake marathon runtime");
            rt.block_on(server::serve(s, addr_tx, stop_rx, tls));
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fake marathon did not start");
        let fake = FakeMarathon {
            addr,
            ca_pem: None,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        fake.state().leader = format!("{addr}");
        fake
    }

    /// The base URL to give the installer (`http://127.0.0.1:PORT`, or https).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM certificate of the CA that signed the https certificate (None over http).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The model, to inspect or to set up (apps already there, a leader name…).
    pub fn state(&self) -> std::sync::MutexGuard<'_, state::State> {
        self.shared.state.lock().expect("fake marathon state")
    }

    /// The faults to inject from now on.
    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared.faults.lock().expect("fake marathon faults")
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("fake marathon log").clone()
    }

    /// Requests that changed something (anything but GET), oldest first.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// TCP connections accepted so far (including ones dropped on purpose): 0 means nobody called.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The ids of the apps stored now, sorted.
    pub fn app_ids(&self) -> Vec<String> {
        self.state().apps.keys().cloned().collect()
    }

    /// A stored app, as `GET /v2/apps/{id}` would return it (with Marathon's defaults filled in).
    pub fn app(&self, id: &str) -> Option<Value> {
        self.state().apps.get(id).cloned()
    }
}

impl Drop for FakeMarathon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

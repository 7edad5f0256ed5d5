//! A real nats-server (Debian's package, 2.9.10 here) with JetStream for tests: on free loopback ports (client
//! and monitor), its store in a temp dir, ready once `/healthz?js-enabled-only=true` answers 200 (~20 ms),
//! stopped when dropped. [`NatsServer::stop`] and [`NatsServer::restart`] keep the ports and the store, for
//! the broker-restart tests.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::server::{ServerProcess, free_port, with_options};

/// A running nats-server.
pub struct NatsServer {
    process: Option<ServerProcess>,
    port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// The TLS certificates' directory, removed with the server.
    certs: Option<tempfile::TempDir>,
}

/// The nats-server binary: `$NATS_SERVER`, else `nats-server` on the PATH.
pub fn binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

impl NatsServer {
    /// Starts nats-server with JetStream, waits until it is ready.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// Starts it with extra command-line arguments (`--user`, `--pass`, `--auth`…).
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let mut s = NatsServer {
            process: None,
            port: free_port(),
            monitor: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            certs: None,
        };
        s.restart();
        s
    }

    /// Starts nats-server requiring TLS, with a certificate for 127.0.0.1 signed by a throwaway CA made for
    /// this server; returns it and the CA's PEM file (the client's `ca=`).
    #[cfg(feature = "nats-tls")]
    pub fn start_tls() -> (NatsServer, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = crate::certs::throwaway("nats test CA").write(dir.path(), "");
        let utf8 = |p: &std::path::Path| p.to_str().expect("utf-8 temp path").to_string();
        let (cert, key) = (utf8(&cert), utf8(&key));
        let mut server = Self::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
        server.certs = Some(dir);
        (server, ca)
    }

    /// Starts it again on the same ports and store (after [`NatsServer::stop`]); waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "nats-server is already running");
        let mut cmd = Command::new(binary());
        cmd.args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path())
            .args(&self.extra);
        let mut process = ServerProcess::spawn(
            "nats-server",
            cmd,
            &self.dir.path().join("nats-server.log"),
            "install Debian's nats-server (scripts/apt-packages)",
        );
        process.wait_ready(Duration::from_secs(20), Duration::from_millis(10), || {
            self.http_get("/healthz?js-enabled-only=true")
                .is_some_and(|(status, _)| status == 200)
        });
        self.process = Some(process);
    }

    /// Stops it as an operator would (SIGTERM, then SIGKILL after 10 s). The store stays for a restart.
    pub fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop(libc::SIGTERM);
        }
    }

    /// The OS process id, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn monitor_port(&self) -> u16 {
        self.monitor
    }

    /// A `nats://` queue URL for `stream` on this server, with extra `&`-separated options (may be empty).
    pub fn url(&self, stream: &str, options: &str) -> String {
        with_options(format!("nats://127.0.0.1:{}/{stream}", self.port), options)
    }

    /// A GET on the monitor port: (status, body), or `None` when nothing answers.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        crate::server::http(self.monitor, "GET", path, "")
    }

    /// The consumer's figures as the server's monitor reports them (`/jsz?consumers=true`):
    /// (`num_pending`, `num_ack_pending`), or `None` when the stream or consumer is not there yet.
    pub fn jsz_consumer(&self, stream: &str, consumer: &str) -> Option<(u64, u64)> {
        let (status, body) = self.http_get("/jsz?consumers=true")?;
        assert_eq!(status, 200, "/jsz: {body}");
        let v: Value = serde_json::from_str(&body).expect("/jsz is JSON");
        for account in v["account_details"].as_array()? {
            for s in account["stream_detail"].as_array().into_iter().flatten() {
                if s["name"] != stream {
                    continue;
                }
                for c in s["consumer_detail"].as_array().into_iter().flatten() {
                    if c["name"] == consumer {
                        return Some((
                            c["num_pending"].as_u64().unwrap_or(0),
                            c["num_ack_pending"].as_u64().unwrap_or(0),
                        ));
                    }
                }
            }
        }
        None
    }
}

/// Removes every NATS credential variable that could leak in from the developer's shell.
pub fn clear_credentials(cmd: &mut Command) -> &mut Command {
    for v in ["NATS_USER", "NATS_PASSWORD", "NATS_TOKEN"] {
        cmd.env_remove(v);
    }
    cmd
}

/// The depth a `nats://` URL reports through our backend (no credentials).
pub use crate::depth;
/// Publishes bodies straight onto a `nats://` queue through our backend.
pub use crate::publish_raw as publish;

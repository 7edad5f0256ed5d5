//! A real nats-server (Debian's package, 2.9.10 here) with JetStream for tests: on free loopback ports (client
//! and monitor), its store in a temp dir, ready once `/healthz?js-enabled-only=true` answers 200 (~20 ms),
//! stopped when dropped. [`NatsServer::stop`] and [`NatsServer::restart`] keep the ports and the store, for
//! the broker-restart tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running nats-server.
pub struct NatsServer {
    child: Option<Child>,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl NatsServer {
    /// Starts nats-server with JetStream, waits until it is ready.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// Starts it with extra command-line arguments (`--user`, `--pass`, `--auth`…).
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let mut s = NatsServer {
            child: None,
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
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().to_path_buf();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "nats test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params")
            .signed_by(&leaf_key, &issuer)
            .expect("server certificate");
        let write = |name: &str, pem: String| {
            let path = certs.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path.to_str().expect("utf-8 temp path").to_string()
        };
        let ca = write("ca.pem", ca_cert.pem());
        let cert = write("server.pem", leaf.pem());
        let key = write("server-key.pem", leaf_key.serialize_pem());
        let mut server = Self::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
        server.certs = Some(dir);
        (server, ca.into())
    }

    /// Starts it again on the same ports and store (after [`NatsServer::stop`]); waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install Debian's nats-server (scripts/apt-packages)",
                    binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self
                .http_get("/healthz?js-enabled-only=true")
                .is_some_and(|(status, _)| status == 200)
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nats-server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server was not ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops it as an operator would (SIGTERM, then SIGKILL after 10 s). The store stays for a restart.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The OS process id, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn monitor_port(&self) -> u16 {
        self.monitor
    }

    /// A `nats://` queue URL for `stream` on this server, with extra `&`-separated options (may be empty).
    pub fn url(&self, stream: &str, options: &str) -> String {
        let mut u = format!("nats://127.0.0.1:{}/{stream}", self.port);
        if !options.is_empty() {
            u.push('?');
            u.push_str(options);
        }
        u
    }

    /// A GET on the monitor port: (status, body), or `None` when nothing answers.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.monitor)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
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

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes every NATS credential variable that could leak in from the developer's shell.
pub fn clear_credentials(cmd: &mut Command) -> &mut Command {
    for v in ["NATS_USER", "NATS_PASSWORD", "NATS_TOKEN"] {
        cmd.env_remove(v);
    }
    cmd
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The depth a `nats://` URL reports through our backend (no credentials).
pub fn depth(url: &str) -> queues::Depth {
    block_on(async {
        let q = queues::open(url).await.expect("open the NATS queue");
        q.depth().await.expect("read depth")
    })
}

/// Publishes bodies straight onto a `nats://` queue through our backend.
pub fn publish(url: &str, bodies: Vec<Vec<u8>>) {
    block_on(async {
        let q = queues::open(url).await.expect("open the NATS queue");
        q.publish(bodies).await.expect("publish");
    });
}

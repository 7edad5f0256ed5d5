//! A real Prometheus server (Debian's `prometheus` package) for the scorecard's Prometheus source: started on a
//! free loopback port with a temp config and a temp TSDB, scraping the given `/metrics` targets every
//! `scrape` interval, and killed when dropped (a [`Proc`]).

use std::time::Duration;

use crate::Proc;

pub struct Prometheus {
    port: u16,
    // Dropped after the process (fields drop in order): the TSDB lives until the server is gone.
    proc: Proc,
    _dir: tempfile::TempDir,
}

pub use crate::server::free_port;

/// `GET path` on `127.0.0.1:port`; the status code and body, `None` when it cannot connect.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    crate::server::http(port, "GET", path, "")
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`127.0.0.1:PORT`) as job `job`, and waits until it is ready.
    pub fn start(job: &str, targets: &[String], scrape: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {scrape}\n  scrape_timeout: {scrape}\n  evaluation_interval: {scrape}\n\
                 scrape_configs:\n  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .expect("write the config");
        let port = free_port();
        let mut cmd = std::process::Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut proc = Proc::spawn("prometheus", cmd);
        let ready = crate::eventually(Duration::from_secs(30), || {
            http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        assert!(
            ready && proc.running(),
            "Prometheus did not become ready on port {port}: {}",
            proc.stderr()
        );
        Prometheus {
            port,
            proc,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log so far, for failure messages.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }
}

//! A real `redis-server` (Debian's package, listed in `scripts/apt-packages`) for tests: on a free loopback
//! port, its data in a temp dir, killed when dropped; and `redis-cli` to read the server's own figures.
//!
//! Without persistence (`--save ''`, no AOF) a restart empties the server, so the restart tests use
//! [`RedisServer::start_durable`]: `--appendonly yes --appendfsync always`, where an `XADD` is fsynced before
//! its reply and a SIGKILL loses nothing that was confirmed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::{ServerProcess, free_port, with_options};

/// A running redis-server.
pub struct RedisServer {
    process: Option<ServerProcess>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    password: Option<String>,
}

impl RedisServer {
    /// No persistence: the fastest, for everything but restarts.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Every write fsynced to the append-only file before its reply: survives SIGKILL and restart.
    pub fn start_durable() -> RedisServer {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// With extra server arguments (`--requirepass X` is also remembered for [`RedisServer::cli`]).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| p.to_string());
        let mut s = RedisServer {
            process: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            args: extra.iter().map(|a| a.to_string()).collect(),
            password,
        };
        s.restart();
        s
    }

    /// Starts it again on the same port and data dir (after [`RedisServer::stop`] or [`RedisServer::kill`]);
    /// waits until it answers PING (not LOADING).
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "redis-server is already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .args(&self.args);
        let mut process = ServerProcess::spawn(
            "redis-server",
            cmd,
            &self.dir.path().join("redis.log"),
            "apt-get install redis-server; see scripts/apt-packages",
        );
        process.wait_ready(Duration::from_secs(20), Duration::from_millis(10), || {
            self.ping()
        });
        self.process = Some(process);
    }

    /// Whether the server answers PING with PONG (a loading server answers -LOADING).
    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut req = String::new();
        if let Some(p) = &self.password {
            req.push_str(&format!("AUTH {p}\r\n"));
        }
        req.push_str("PING\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got);
            if text.contains("+PONG") {
                return true;
            }
            if text.contains("-LOADING") || text.contains("-ERR") {
                return false;
            }
        }
        false
    }

    /// Stops it as an operator would (SIGTERM: it writes its AOF and exits), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.signal_and_reap(libc::SIGTERM);
    }

    /// Kills it at once (SIGKILL): a crash.
    pub fn kill(&mut self) {
        self.signal_and_reap(libc::SIGKILL);
    }

    fn signal_and_reap(&mut self, sig: i32) {
        if let Some(p) = self.process.take() {
            p.stop(sig);
        }
    }

    /// The OS process id, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for `stream` on this server, with extra `&`-separated options (may be empty).
    pub fn url(&self, stream: &str, options: &str) -> String {
        with_options(format!("redis://127.0.0.1:{}/{stream}", self.port), options)
    }

    /// Runs `redis-cli` against this server and returns its raw output, one reply element a line. Panics
    /// when the command fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"]);
        if let Some(p) = &self.password {
            cmd.env("REDISCLI_AUTH", p);
        }
        let out = cmd
            .args(args)
            .output()
            .expect("run redis-cli (apt-get install redis-tools)");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's own figures for a stream and its group: (`XLEN`, `XPENDING`'s count, `XINFO GROUPS`'s
    /// lag; `None` for nil), read with `redis-cli`, independently of the backend under test.
    pub fn figures(&self, stream: &str, group: &str) -> (u64, u64, Option<u64>) {
        let num = |s: &str| {
            s.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("not a count: {s:?}"))
        };
        let len = num(&self.cli(&["XLEN", stream]));
        let pending = self.cli(&["XPENDING", stream, group]);
        let pending = num(pending.lines().next().unwrap_or("0"));
        let info = self.cli(&["XINFO", "GROUPS", stream]);
        let lines: Vec<&str> = info.lines().collect();
        let mut lag = None;
        let mut mine = false;
        for kv in lines.chunks(2) {
            match kv {
                ["name", n] => mine = *n == group,
                ["lag", l] if mine => lag = l.trim().parse().ok(),
                _ => {}
            }
        }
        (len, pending, lag)
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes the Redis credential variables a developer's shell could leak into a command.
pub fn clear_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("REDIS_PASSWORD")
        .env_remove("REDIS_USERNAME")
}

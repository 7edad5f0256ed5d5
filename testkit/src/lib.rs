//! Test support shared by the workspace's integration tests: finding the real binaries, running them as
//! child processes that are always reaped, and reading their JSON stats lines.
//!
//! Every process a test starts is owned by a [`Proc`]: killed (SIGKILL) when dropped, so a failing assertion
//! never leaves a stray consumer behind, and every wait is bounded.

pub mod amqp;
pub mod azurite;
pub mod bench;
#[cfg(any(feature = "nats-tls", feature = "fake-marathon"))]
pub mod certs;
pub mod delivery;
pub mod demo;
pub mod docker;
#[cfg(feature = "fake-marathon")]
pub mod fake_marathon;
#[cfg(feature = "fake-nsqd")]
pub mod fake_nsqd;
pub mod inproc;
pub mod interop;
pub mod lossy_http;
pub mod nats;
pub mod prometheus;
pub mod redis;
pub mod server;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use workload::contract::{self, Kind, Stats};

use crate::server::block_on;

/// The directory holding the workspace's binaries for the profile this test was built with (`target/debug`).
pub fn bin_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps/; the binaries one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test exe has a parent");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// The path of a workspace binary, built beforehand: a workspace test build builds them all (the test command's
/// does); a test run for one crate may need `cargo build --workspace --bins` first.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build every binary first (cargo build --workspace --bins), or run the README's test command",
        path.display()
    );
    path
}

/// A command for a workspace binary with quiet logs (RUST_LOG=warn unless the test overrides it).
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.env(
        "RUST_LOG",
        std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    cmd.env_remove("QUEUE_URL");
    cmd
}

/// A child process whose stdout lines and stderr are collected, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `cmd`, capturing stdout (as lines) and stderr.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let l = lines.clone();
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let e = stderr.clone();
        // Line by line, so that a test can wait for a log line while the process runs.
        let r2 = std::thread::spawn(move || {
            let mut reader = BufReader::new(err);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                e.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
            stderr,
            readers: vec![r1, r2],
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (libc::SIGTERM, SIGKILL, …).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for exit, at most `limit`; panics (after killing the process) if it is still running then.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {limit:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stdout line so far, parsed as JSON (panics on a line that is not JSON). A line with a `role`
    /// (a stats line) is also checked against its role's struct in `workload::contract`: it must parse, and
    /// print back byte for byte. Other JSON (the scorecard's report) is left alone.
    pub fn stats(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("{}: stdout line is not JSON ({e}): {l}", self.name)
                });
                if v.get("role").is_some() {
                    check_contract(&self.name, l);
                }
                v
            })
            .collect()
    }

    /// Every stdout line so far, typed (panics on a line that is not a stats line).
    pub fn typed(&self) -> Vec<Stats> {
        self.lines()
            .iter()
            .map(|l| {
                contract::parse(l).unwrap_or_else(|e| {
                    panic!(
                        "{}: stdout line breaks the stats contract ({e}): {l}",
                        self.name
                    )
                })
            })
            .collect()
    }

    /// The consumer lines so far.
    pub fn consumer_lines(&self) -> Vec<contract::Consumer> {
        self.typed()
            .into_iter()
            .filter_map(|s| match s {
                Stats::Consumer(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// The consumer's summary line, if written.
    pub fn consumer_summary(&self) -> Option<contract::Consumer> {
        self.consumer_lines()
            .into_iter()
            .find(|c| c.head.kind == Kind::Summary)
    }

    /// The audit's report line, if written.
    pub fn audit_report(&self) -> Option<contract::Audit> {
        self.typed().into_iter().find_map(|s| match s {
            Stats::Audit(a) => Some(a),
            _ => None,
        })
    }

    /// The producer's summary line, if written.
    pub fn producer_summary(&self) -> Option<contract::Producer> {
        self.typed().into_iter().find_map(|s| match s {
            Stats::Producer(p) if p.head.kind == Kind::Summary => Some(p),
            _ => None,
        })
    }

    /// Waits until `pred` holds for some typed stats line, at most `limit`.
    pub fn wait_for_stats(&self, limit: Duration, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.typed().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no matching stats line within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `pred` holds for some consumer line, at most `limit`.
    pub fn wait_for_consumer_line(
        &self,
        limit: Duration,
        pred: impl Fn(&contract::Consumer) -> bool,
    ) -> contract::Consumer {
        let line = self.wait_for_stats(limit, |l| l.consumer().is_some_and(&pred));
        line.consumer().cloned().unwrap_or_default()
    }

    /// The `"kind":"summary"` line, if written.
    pub fn summary(&self) -> Option<Value> {
        self.stats().into_iter().find(|v| v["kind"] == "summary")
    }

    /// Everything written to stderr so far (complete once the process has exited and been waited for).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for some stdout line, at most `limit`.
    pub fn wait_for_line(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.stats().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no matching stats line within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Panics unless `line` parses as its role's stats line and prints back byte for byte: the struct holds
/// every field the binary wrote, in its order, so none escapes the type.
fn check_contract(name: &str, line: &str) {
    match contract::parse(line) {
        Err(e) => panic!("{name}: stdout line breaks the stats contract ({e}): {line}"),
        Ok(Stats::Other(_)) => {}
        Ok(typed) => assert_eq!(
            typed.to_json(),
            line,
            "{name}: line differs from its struct"
        ),
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How far a figure recomputed from a written `series.json` may stray from the one the scorecard computed in
/// memory: the files hold 6 decimals, so the figure itself is off by up to 5e-7, and every sample time by up to
/// 5e-7, which a sum over intervals carries once per change of level (a few dozen here, over runs of seconds).
/// A real error (one interval miscounted) is at least a sampling interval over the run, thousands of times more.
pub const ROUNDING_SLACK: f64 = 1e-5;

/// A `sqlite:` queue URL for a file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("queue.db").display())
}

/// Field `name` of a stats line as u64, for terse assertions; panics when it is absent or not a count.
pub fn u(v: &Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("field {name} missing or not a count in {v}"))
}

/// The queue's current depth.
pub fn depth(url: &str) -> queues::Depth {
    block_on(async { queues::open(url).await?.depth().await }).expect("read depth")
}

/// Publishes raw bodies (foreign ones, say) straight onto the queue.
pub fn publish_raw(url: &str, bodies: Vec<Vec<u8>>) {
    block_on(async { queues::open(url).await?.publish(bodies).await }).expect("publish");
}

/// Every entry of every `*.ledger` file in `dir`, read independently of the audit under test.
pub fn ledger_entries(dir: &Path) -> Vec<workload::ledger::Entry> {
    let mut all = Vec::new();
    for file in std::fs::read_dir(dir).expect("read ledger dir") {
        let path = file.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "ledger") {
            let report = workload::ledger::read(&path, |e| all.push(e)).expect("read ledger");
            assert_eq!(
                report.malformed,
                0,
                "{} has malformed lines",
                path.display()
            );
        }
    }
    all
}

/// Counts what a run lost and duplicated: `sent` confirmed messages (seqs `0..sent`) of one producer against
/// the ledger entries. Returns (distinct consumed, lost, duplicates, unexpected).
pub fn tally(entries: &[workload::ledger::Entry], sent: u64) -> (u64, u64, u64, u64) {
    let mut seen = vec![false; sent as usize];
    let (mut distinct, mut dups, mut unexpected) = (0u64, 0u64, 0u64);
    for e in entries {
        match seen.get_mut(e.seq as usize) {
            Some(s) if !*s => {
                *s = true;
                distinct += 1;
            }
            Some(_) => dups += 1,
            None => unexpected += 1,
        }
    }
    (distinct, sent - distinct, dups, unexpected)
}

/// Starts `n` processes from `make(ledger_path)`, named `consumer0..`, each with its own ledger `c{i}.ledger`
/// in `dir` (where [`ledger_entries`] reads them back).
pub fn spawn_with_ledgers(n: usize, dir: &Path, make: impl Fn(&Path) -> Command) -> Vec<Proc> {
    (0..n)
        .map(|i| {
            Proc::spawn(
                &format!("consumer{i}"),
                make(&dir.join(format!("c{i}.ledger"))),
            )
        })
        .collect()
}

/// Sends SIGTERM to every process, then checks each exits 0 (a consumer drains first) within 15 s.
pub fn stop_gracefully(procs: &mut [Proc]) {
    for p in procs.iter() {
        p.signal(libc::SIGTERM);
    }
    for p in procs.iter_mut() {
        let status = p.wait(Duration::from_secs(15));
        assert!(
            status.success(),
            "{} exited {status}: {}",
            p.name,
            p.stderr()
        );
    }
}

/// The Python of a venv that scripts/test made: `$env` or `target/default_dir`, `bin/python`; `what` names
/// the package it holds, for the message when it is missing.
pub fn venv_python(env: &str, default_dir: &str, what: &str) -> PathBuf {
    let venv = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| azurite::repo_root().join("target").join(default_dir));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test, which installs {what} there",
        py.display()
    );
    py
}

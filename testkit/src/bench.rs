//! What the benchmarks in `consumer/benches/` share (they are `harness = false` programs that start the
//! release binaries): running a process to its end with its CPU time (from `wait4`, which std's
//! `Child::wait` does not give), a server's CPU time from /proc, our producer and consumer with the settings
//! every bench uses, rounds in alternating order, medians and ratios, the verdicts, and the telemetry
//! comparison (a consumer with `--telemetry on` against one with it off, issue #14).
//!
//! Each bench keeps what belongs to its backend: the server, the reference client, the targets.

use std::fmt::Display;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Consumer throughput with telemetry on, at least this fraction of it without (issue #14's acceptance).
pub const TELEMETRY_TARGET: f64 = 0.9;

/// CPU seconds (user + system) a process has used so far, from /proc; 0 once it is gone.
pub fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, fields 14 and 15 of stat(5), 11 and 12 after the name.
    (get(11) + get(12)) / ticks
}

/// This process's CPU seconds so far: the fake nsqd runs on its threads while the main one waits.
pub fn own_cpu() -> f64 {
    proc_cpu(std::process::id())
}

/// A process started by [`spawn`], stdout and stderr going to temp files; killed if dropped unreaped.
pub struct Running {
    child: Option<Child>,
    what: String,
    started: Instant,
    stdout: File,
    stderr: File,
}

/// A process that exited 0: its output and what it cost.
pub struct Exited {
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit, as seen here.
    pub wall: Duration,
    /// User + system time, from wait4.
    pub cpu: Duration,
}

/// Starts `cmd` with stdin closed and stdout and stderr to temp files (files, not pipes: a pipe nobody reads
/// while the bench waits would stall the child). Reap it with [`Running::wait`].
pub fn spawn(mut cmd: Command) -> Running {
    let stdout = tempfile::tempfile().expect("temp file for stdout");
    let stderr = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("dup the stdout file"))
        .stderr(stderr.try_clone().expect("dup the stderr file"));
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    Running {
        child: Some(child),
        what,
        started,
        stdout,
        stderr,
    }
}

/// Runs `cmd` to its end (see [`spawn`] and [`Running::wait`]).
pub fn run(cmd: Command) -> Exited {
    spawn(cmd).wait()
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process with wait4 (which gives its resource usage); panics with its output unless it
    /// exited 0. Its stderr, if any, is echoed, so that warnings are not lost.
    pub fn wait(mut self) -> Exited {
        let mut child = self.child.take().expect("waited once");
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we own and have not reaped.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let wall = self.started.elapsed();
        assert_eq!(rc, child.id() as i32, "wait4 on {} failed", self.what);
        // wait4 reaped it already (for its rusage); this only tells std so.
        let _ = child.wait();
        let read = |f: &mut File| {
            let mut s = String::new();
            let _ = f.rewind();
            let _ = f.read_to_string(&mut s);
            s
        };
        let (stdout, stderr) = (read(&mut self.stdout), read(&mut self.stderr));
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{} failed (status {status}):\n{stdout}{stderr}",
            self.what
        );
        if !stderr.trim().is_empty() {
            eprint!("{stderr}");
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Exited {
            stdout,
            stderr,
            wall,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only on a panic between spawn and wait: no stray producer or consumer outlives the bench.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Exited {
    /// Every stdout line that is JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The binary's summary line.
    pub fn summary(&self) -> Value {
        self.json_lines()
            .into_iter()
            .find(|v| v["kind"] == "summary")
            .unwrap_or_else(|| panic!("no summary line in:\n{}", self.stdout))
    }

    /// The first JSON line (a reference client's own figures: `{"messages": N, "seconds": S}`).
    pub fn first_json(&self) -> Value {
        self.json_lines()
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no JSON line in:\n{}", self.stdout))
    }

    /// Asserts the summary's `field` (`sent`, `acked`) is `n` with no errors; returns the summary.
    pub fn expect_all(&self, field: &str, n: u64) -> Value {
        let s = self.summary();
        assert_eq!(
            (s[field].as_u64(), s["errors"].as_u64()),
            (Some(n), Some(0)),
            "{s}"
        );
        s
    }
}

/// One side's figures in one run: msgs/s, and CPU µs per message of the client and of the server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Side {
    /// Over the process's whole life, start-up (connecting, declaring queues) included.
    pub rate: f64,
    /// A consumer's: from its first receive to its last ack (0 when not known), the rate once it runs.
    pub drain: f64,
    pub client_us: f64,
    pub server_us: f64,
}

impl Side {
    pub fn new(n: u64, secs: f64, client_cpu: f64, server_cpu: f64) -> Side {
        let n = n as f64;
        Side {
            rate: n / secs,
            drain: 0.0,
            client_us: client_cpu * 1e6 / n,
            server_us: server_cpu * 1e6 / n,
        }
    }

    /// This side with its drain rate: `n` messages from the earliest `first_received_at_us` to the latest
    /// `last_acked_at_us` of the consumers' summary lines (unchanged when a summary lacks them).
    pub fn with_drain(mut self, n: u64, consumers: &[&Exited]) -> Side {
        let mut span = (u64::MAX, 0u64);
        for c in consumers {
            let s = c.summary();
            match (
                s["first_received_at_us"].as_u64(),
                s["last_acked_at_us"].as_u64(),
            ) {
                (Some(first), Some(last)) => span = (span.0.min(first), span.1.max(last)),
                _ => return self,
            }
        }
        if span.1 > span.0 {
            self.drain = n as f64 * 1e6 / (span.1 - span.0) as f64;
        }
        self
    }

    /// The medians of each figure over runs.
    pub fn medians(runs: &[Side]) -> Side {
        let m = |f: fn(&Side) -> f64| median(runs.iter().map(f).collect());
        Side {
            rate: m(|s| s.rate),
            drain: m(|s| s.drain),
            client_us: m(|s| s.client_us),
            server_us: m(|s| s.server_us),
        }
    }
}

/// Runs `cmd` to its end for `n` messages, with `server_cpu` read before and after: rates over the
/// process's wall time (start-up included), CPU from wait4.
pub fn measure(cmd: Command, n: u64, server_cpu: impl Fn() -> f64) -> (Exited, Side) {
    let s0 = server_cpu();
    let e = run(cmd);
    let server = server_cpu() - s0;
    let side = Side::new(n, e.wall.as_secs_f64(), e.cpu.as_secs_f64(), server);
    // Producers and reference clients have no such summary; their side keeps drain 0.
    let side = match e.json_lines().iter().any(|v| v["kind"] == "summary") {
        true => side.with_drain(n, &[&e]),
        false => side,
    };
    (e, side)
}

/// Our producer, as every bench runs it: `--rate 0 --count N --size S --batch B`, quiet, no stats lines
/// but the summary, telemetry off (its default) whatever the environment says. Add the backend's own flags.
pub fn producer(url: &str, n: u64, size: usize, batch: usize) -> Command {
    let mut cmd = ours("producer", url);
    cmd.args(["--rate", "0", "--count", &n.to_string()])
        .args(["--size", &size.to_string(), "--batch", &batch.to_string()])
        .args(["--stats-interval", "1h"]);
    cmd
}

/// Our consumer taking `n` messages without work: `--work none --count N --batch B --max-in-flight M`, quiet,
/// no stats lines but the summary, telemetry off (its default). Add the backend's own flags.
pub fn consumer(url: &str, n: u64, batch: usize, max_in_flight: usize) -> Command {
    let mut cmd = consumer_without_interval(url, n, batch, max_in_flight);
    cmd.args(["--stats-interval", "1h"]);
    cmd
}

/// [`consumer`] for the telemetry comparison: `--telemetry on|off`, and the default stats interval (1 s) on
/// both sides, so that the consumer with telemetry sends its heartbeats at the cadence it has when deployed.
pub fn telemetry_consumer(
    url: &str,
    n: u64,
    batch: usize,
    max_in_flight: usize,
    on: bool,
) -> Command {
    let mut cmd = consumer_without_interval(url, n, batch, max_in_flight);
    cmd.args(["--stats-interval", "1s"])
        .args(["--telemetry", if on { "on" } else { "off" }]);
    cmd
}

fn consumer_without_interval(url: &str, n: u64, batch: usize, max_in_flight: usize) -> Command {
    let mut cmd = ours("consumer", url);
    cmd.args(["--work", "none", "--count", &n.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--max-in-flight", &max_in_flight.to_string()]);
    cmd
}

fn ours(name: &str, url: &str) -> Command {
    let mut cmd = Command::new(crate::bin(name));
    cmd.args(["--queue", url])
        .env("RUST_LOG", "error")
        .env_remove("QUEUE_URL")
        .env_remove("MW_TELEMETRY")
        .env_remove("STATS_INTERVAL");
    cmd
}

/// The depth of a queue, read through our backend (no credentials: not for Azure, see `azurite::depth`),
/// such as a telemetry sibling's, to see that a consumer with telemetry did publish its records.
pub fn depth(url: &str) -> queues::Depth {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            let q = queues::open(url)
                .await
                .unwrap_or_else(|e| panic!("open {url}: {e}"));
            q.depth()
                .await
                .unwrap_or_else(|e| panic!("depth of {url}: {e}"))
        })
}

/// `cargo build --release` of every binary, as the brief's build command (`--workspace --all-features`):
/// another set unifies features differently, and cargo would rebuild half the tree from one to the other.
/// Returns the directory of the binaries.
///
/// Not the bench profile, though the bench (and the embedded spike in it) is built with that: `cargo bench
/// -p consumer` and this build share `target/release` and unify features differently, so each relinks the
/// other's binaries, and with the bench profile's LTO that took ~9 minutes a bench. What it costs the
/// binaries against the spike (SQLite at -O2, no LTO, against -O3 and thin LTO): nothing measurable here,
/// 133–145k msgs/s built this way and 133–158k with the bench profile (2026-12-07, 4 and 3 runs).
pub fn build_release() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--workspace",
            "--all-features",
            "--bins",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    crate::bin_dir()
}

/// Runs `a` then `b` in even rounds, `b` then `a` in odd ones, so that neither always meets the warmer server
/// (or the quieter machine).
pub fn in_turn<A, B>(round: usize, a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A, B) {
    if round.is_multiple_of(2) {
        let a = a();
        (a, b())
    } else {
        let b = b();
        (a(), b)
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of the per-round ratios of `a`'s rate to `b`'s (paired rounds: a drift of the machine over the
/// run cancels out within each pair).
pub fn rate_ratio(a: &[Side], b: &[Side]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x.rate / y.rate).collect())
}

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The targets checked so far; [`Verdicts::finish`] exits 1 when one was missed.
#[derive(Default)]
pub struct Verdicts {
    passed: usize,
    missed: usize,
}

impl Verdicts {
    pub fn check(&mut self, ok: bool, what: impl Display) {
        println!("{} {what}", if ok { "  ok  " } else { " MISS " });
        if ok {
            self.passed += 1;
        } else {
            self.missed += 1;
        }
    }

    /// Prints the tally; exits 1 when a target was missed. Whatever must be stopped (a server) is dropped
    /// before: exit skips destructors.
    pub fn finish(self) {
        println!("{} passed, {} missed", self.passed, self.missed);
        if self.missed > 0 {
            std::process::exit(1);
        }
    }
}

/// Whether to run only the telemetry comparison: `BENCH_ONLY=telemetry`, or `telemetry` among the arguments
/// (`cargo bench -p consumer --bench redis -- telemetry`).
pub fn telemetry_only() -> bool {
    std::env::var("BENCH_ONLY").is_ok_and(|v| v == "telemetry")
        || std::env::args().skip(1).any(|a| a == "telemetry")
}

/// Rounds of the telemetry comparison: `TELEMETRY_BENCH_ROUNDS`, default 5 (single rounds ranged from 0.8× to
/// 1.3× on one machine within minutes: three were too few for a median to mean much).
pub fn telemetry_rounds() -> usize {
    env_or("TELEMETRY_BENCH_ROUNDS", 5).max(1)
}

/// The telemetry comparison (issue #14): `run(round, on)` drains a backlog with our consumer with telemetry
/// on or off and returns its figures; each round runs both, the order alternating. Prints every round, the
/// medians, the median ratio on / off of the rates, and checks it against [`TELEMETRY_TARGET`].
///
/// The ratio is of the drain rates (first receive to last ack) when every run has one: the throughput the
/// target is about. The whole-process ratio is printed beside it: it adds start-up, where telemetry opens two
/// more queues once (on RabbitMQ, two quorum queues: ~0.1 s of a 0.3 s run), a cost a consumer pays once per
/// life, not per message.
pub fn telemetry(what: &str, rounds: usize, mut run: impl FnMut(usize, bool) -> Side) -> bool {
    println!(
        "== consumer throughput with telemetry on vs off: {what}, {rounds} alternating rounds =="
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Off first in even rounds, on first in odd ones.
        let mut pair = [Side::default(); 2];
        for on in [round % 2 == 1, round % 2 == 0] {
            pair[usize::from(on)] = run(round, on);
        }
        let [a, b] = pair;
        println!(
            "  round {round}: off {:>8.0} msgs/s ({:>8.0} whole process) {:>6.2} µs/msg (server {:>6.2}); on {:>8.0} msgs/s ({:>8.0}) {:>6.2} µs/msg (server {:>6.2}); {:.2}× ({:.2}×)",
            a.drain,
            a.rate,
            a.client_us,
            a.server_us,
            b.drain,
            b.rate,
            b.client_us,
            b.server_us,
            b.drain / a.drain,
            b.rate / a.rate
        );
        off.push(a);
        on.push(b);
    }
    let (m_off, m_on) = (Side::medians(&off), Side::medians(&on));
    let whole = rate_ratio(&on, &off);
    let drained = off.iter().chain(&on).all(|s| s.drain > 0.0);
    let ratio = if drained {
        median(
            on.iter()
                .zip(&off)
                .map(|(x, y)| x.drain / y.drain)
                .collect(),
        )
    } else {
        whole
    };
    let met = ratio >= TELEMETRY_TARGET;
    println!(
        "  medians: off {:.0} msgs/s ({:.0} whole process) {:.2} µs/msg (server {:.2}); on {:.0} msgs/s ({:.0}) {:.2} µs/msg (server {:.2})",
        m_off.drain,
        m_off.rate,
        m_off.client_us,
        m_off.server_us,
        m_on.drain,
        m_on.rate,
        m_on.client_us,
        m_on.server_us
    );
    // No server process (the embedded queue): no server figure to compare.
    let server = if m_off.server_us > 0.0 {
        format!(", server {:.2}×", m_on.server_us / m_off.server_us)
    } else {
        String::new()
    };
    println!(
        "  telemetry on / off: {ratio:.2}× the {} rate (target ≥ {TELEMETRY_TARGET}): {}; whole process {whole:.2}×; CPU/msg {:.2}×{server}",
        if drained { "drain" } else { "whole-process" },
        if met { "MET" } else { "MISSED" },
        m_on.client_us / m_off.client_us,
    );
    met
}

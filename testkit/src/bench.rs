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
    pub rate: f64,
    pub client_us: f64,
    pub server_us: f64,
}

impl Side {
    pub fn new(n: u64, secs: f64, client_cpu: f64, server_cpu: f64) -> Side {
        let n = n as f64;
        Side {
            rate: n / secs,
            client_us: client_cpu * 1e6 / n,
            server_us: server_cpu * 1e6 / n,
        }
    }

    /// The medians of each figure over runs.
    pub fn medians(runs: &[Side]) -> Side {
        let m = |f: fn(&Side) -> f64| median(runs.iter().map(f).collect());
        Side {
            rate: m(|s| s.rate),
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

/// Every binary built with the bench profile, the one this benchmark and its in-process anchors (the embedded
/// spike) were built with. Not `--release`: that profile builds SQLite at -O2 without LTO, and against the
/// spike's -O3 and thin LTO the ratio would compare compilers as well as code. The bench
/// profile is what the images ship (dist has the same settings). `--workspace --all-features` as the test
/// command's build: another set unifies features differently, and cargo would rebuild half the tree. Returns
/// the directory of the binaries.
pub fn build_bins() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "bench",
            "--workspace",
            "--all-features",
            "--bins",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --profile bench failed");
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

/// Rounds of the telemetry comparison: `TELEMETRY_BENCH_ROUNDS`, default 3.
pub fn telemetry_rounds() -> usize {
    env_or("TELEMETRY_BENCH_ROUNDS", 3).max(1)
}

/// The telemetry comparison (issue #14): `run(round, on)` drains a backlog with our consumer with telemetry
/// on or off and returns its figures; each round runs both, the order alternating. Prints every round, the
/// medians, the median ratio on / off of the rates, and checks it against [`TELEMETRY_TARGET`].
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
            "  round {round}: off {:>8.0} msgs/s {:>6.2} µs/msg (server {:>6.2}); on {:>8.0} msgs/s {:>6.2} µs/msg (server {:>6.2}); {:.2}×",
            a.rate,
            a.client_us,
            a.server_us,
            b.rate,
            b.client_us,
            b.server_us,
            b.rate / a.rate
        );
        off.push(a);
        on.push(b);
    }
    let (m_off, m_on, ratio) = (
        Side::medians(&off),
        Side::medians(&on),
        rate_ratio(&on, &off),
    );
    let met = ratio >= TELEMETRY_TARGET;
    println!(
        "  medians: off {:.0} msgs/s {:.2} µs/msg (server {:.2}); on {:.0} msgs/s {:.2} µs/msg (server {:.2})",
        m_off.rate, m_off.client_us, m_off.server_us, m_on.rate, m_on.client_us, m_on.server_us
    );
    println!(
        "  telemetry on / off: {ratio:.2}× the rate (target ≥ {TELEMETRY_TARGET}): {}; CPU/msg {:.2}×",
        if met { "MET" } else { "MISSED" },
        m_on.client_us / m_off.client_us
    );
    met
}

//! The Redis Streams backend against a real redis-server, beside references measured in the same run on the
//! same server: producer and consumer msgs/s, the client's CPU per message, and the server's.
//!
//! - Producer: ours (`producer --batch 100 --concurrency 1`: one pipelined round trip of 100 `XADD`s at a
//!   time) against `redis-benchmark -c 1 -P 100 XADD …` (Redis's own tool, the same pipelining, the same
//!   body size). redis-benchmark sends the same command over and over and builds nothing per message, so it
//!   is the ceiling of what one connection can push.
//! - Consumer: ours (`consumer --batch 100 --max-in-flight 200 --work none`, ledger off), which per batch runs
//!   `XREADGROUP` and the ack script (ownership check per entry, `XACK`, trim), against a minimal consumer of
//!   the Python `redis` client (`redis_reference.py`: `XREADGROUP COUNT 100`, one `XACK` per batch, no lease
//!   checks, no trimming). redis-benchmark cannot ack what it reads, so it has no consumer figure.
//!
//! Each round runs on a fresh server without persistence (what the server does per message, not the disk),
//! ours and the reference in alternating order. The figures printed are medians over the rounds. Targets
//! (exit non-zero when missed): our producer at least 25 % of redis-benchmark's rate and under 5 µs of CPU per
//! message; our consumer at least as fast as the Python reference and under 10 µs of CPU per message.
//!
//! Environment: `REDIS_BENCH_COUNT` (messages per run, default 100000), `REDIS_BENCH_ROUNDS` (default 3),
//! `REDIS_PY_VENV` (the venv with Python's redis, default target/redis-py, made by scripts/test). The machine
//! should be otherwise idle.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use testkit::azurite::repo_root;
use testkit::redis::RedisServer;

const SIZE: usize = 100;
const BATCH: usize = 100;
const TARGET_PRODUCER_RATIO: f64 = 0.25;
const TARGET_PRODUCER_US: f64 = 5.0;
const TARGET_CONSUMER_RATIO: f64 = 1.0;
const TARGET_CONSUMER_US: f64 = 10.0;

/// CPU seconds (user + system) a process has used so far, from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

/// Runs a command to its end; returns its stdout, wall time and CPU seconds (user + system, from wait4).
fn run_measured(mut cmd: Command) -> (String, f64, f64) {
    let out_file = tempfile::tempfile().expect("temp file");
    cmd.stdout(out_file.try_clone().expect("dup temp file"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start the measured command");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on the pid of a child we spawned and have not reaped.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    // wait4 reaped it already (for its rusage); this only tells std so.
    let _ = child.wait();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut out = String::new();
    use std::io::{Read, Seek};
    let mut f = out_file;
    let _ = f.rewind();
    let _ = f.read_to_string(&mut out);
    (out, wall, tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// One side's figures in one run.
#[derive(Clone, Copy, Default)]
struct Side {
    rate: f64,
    client_us: f64,
    server_us: f64,
}

/// Runs `cmd` for `n` messages against `server`, measuring the client and the server.
fn measure(server: &RedisServer, cmd: Command, n: u64) -> (String, Side) {
    let pid = server.pid().expect("redis-server pid");
    let s0 = proc_cpu(pid);
    let (out, wall, cpu) = run_measured(cmd);
    let server_cpu = proc_cpu(pid) - s0;
    let n = n as f64;
    (
        out,
        Side {
            rate: n / wall,
            client_us: cpu * 1e6 / n,
            server_us: server_cpu * 1e6 / n,
        },
    )
}

fn summary(out: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["kind"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"))
}

fn our_producer(server: &RedisServer, stream: &str, n: u64) -> Side {
    let mut cmd = Command::new(testkit::bin("producer"));
    cmd.args(["--queue", &server.url(stream, ""), "--rate", "0"])
        .args(["--count", &n.to_string(), "--size", &SIZE.to_string()])
        .args(["--batch", &BATCH.to_string(), "--concurrency", "1"])
        .args(["--stats-interval", "1h"])
        .env("RUST_LOG", "error");
    let (out, side) = measure(server, cmd, n);
    let s = summary(&out);
    assert_eq!(
        (s["sent"].as_u64(), s["errors"].as_u64()),
        (Some(n), Some(0)),
        "{s}"
    );
    side
}

fn reference_producer(server: &RedisServer, stream: &str, n: u64) -> Side {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args([
            "-c",
            "1",
            "-P",
            &BATCH.to_string(),
            "-n",
            &n.to_string(),
            "-q",
        ])
        .args(["XADD", stream, "*", "body", &".".repeat(SIZE)]);
    let (_, side) = measure(server, cmd, n);
    let len: u64 = server.cli(&["XLEN", stream]).trim().parse().expect("XLEN");
    assert_eq!(len, n, "redis-benchmark added every entry");
    side
}

fn our_consumer(server: &RedisServer, stream: &str, n: u64) -> Side {
    our_producer(server, stream, n);
    let mut cmd = Command::new(testkit::bin("consumer"));
    cmd.args(["--queue", &server.url(stream, ""), "--work", "none"])
        .args(["--count", &n.to_string(), "--batch", &BATCH.to_string()])
        .args(["--max-in-flight", "200", "--stats-interval", "1h"])
        .env("RUST_LOG", "error");
    let (out, side) = measure(server, cmd, n);
    let s = summary(&out);
    assert_eq!(
        (s["acked"].as_u64(), s["errors"].as_u64()),
        (Some(n), Some(0)),
        "{s}"
    );
    assert_eq!(
        server.figures(stream, stream),
        (0, 0, Some(0)),
        "drained and trimmed"
    );
    side
}

fn python() -> PathBuf {
    let venv = std::env::var_os("REDIS_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/redis-py"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test, which installs Python's redis there",
        py.display()
    );
    py
}

fn reference_consumer(server: &RedisServer, stream: &str, n: u64) -> Side {
    reference_producer(server, stream, n);
    server.cli(&["XGROUP", "CREATE", stream, stream, "0"]);
    let mut cmd = Command::new(python());
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/redis_reference.py"
    ))
    .args([
        &server.port().to_string(),
        stream,
        stream,
        &n.to_string(),
        &BATCH.to_string(),
    ]);
    let (out, side) = measure(server, cmd, n);
    assert_eq!(out.trim(), n.to_string(), "the reference read every entry");
    side
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let count: u64 = env_or("REDIS_BENCH_COUNT", 100_000);
    let rounds: usize = env_or("REDIS_BENCH_ROUNDS", 3).max(1);
    let mut sides: [Vec<Side>; 4] = Default::default();
    for round in 0..rounds {
        let server = RedisServer::start();
        let runs: [&dyn Fn() -> Side; 4] = [
            &|| our_producer(&server, "ours-p", count),
            &|| reference_producer(&server, "ref-p", count),
            &|| our_consumer(&server, "ours-c", count),
            &|| reference_consumer(&server, "ref-c", count),
        ];
        // Alternate the order, so that neither side always runs on a warmer machine.
        let order: [usize; 4] = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [1, 0, 3, 2]
        };
        for i in order {
            sides[i].push(runs[i]());
        }
        let last = |i: usize| sides[i][sides[i].len() - 1];
        println!(
            "  round {round}: producer ours {:>7.0}/s {:>5.2} µs/msg, redis-benchmark {:>7.0}/s {:>5.2} µs/msg; \
             consumer ours {:>7.0}/s {:>5.2} µs/msg (server {:>5.2}), python {:>7.0}/s {:>5.2} µs/msg (server {:>5.2})",
            last(0).rate,
            last(0).client_us,
            last(1).rate,
            last(1).client_us,
            last(2).rate,
            last(2).client_us,
            last(2).server_us,
            last(3).rate,
            last(3).client_us,
            last(3).server_us,
        );
    }
    let m = |i: usize, f: fn(&Side) -> f64| median(sides[i].iter().map(f).collect());
    let ratio = |a: usize, b: usize| {
        median(
            sides[a]
                .iter()
                .zip(&sides[b])
                .map(|(x, y)| x.rate / y.rate)
                .collect(),
        )
    };
    let (p_ratio, c_ratio) = (ratio(0, 1), ratio(2, 3));
    println!(
        "redis-server {} messages × {SIZE} B, batch {BATCH}, medians of {rounds} rounds:",
        count
    );
    println!(
        "  producer: ours {:.0} msgs/s, {:.2} µs CPU/msg (server {:.2}); redis-benchmark {:.0} msgs/s, {:.2} µs CPU/msg (server {:.2}); ratio {:.2}",
        m(0, |s| s.rate),
        m(0, |s| s.client_us),
        m(0, |s| s.server_us),
        m(1, |s| s.rate),
        m(1, |s| s.client_us),
        m(1, |s| s.server_us),
        p_ratio
    );
    println!(
        "  consumer: ours {:.0} msgs/s, {:.2} µs CPU/msg (server {:.2}); python redis {:.0} msgs/s, {:.2} µs CPU/msg (server {:.2}); ratio {:.2}",
        m(2, |s| s.rate),
        m(2, |s| s.client_us),
        m(2, |s| s.server_us),
        m(3, |s| s.rate),
        m(3, |s| s.client_us),
        m(3, |s| s.server_us),
        c_ratio
    );
    let mut failed = false;
    let mut check = |ok: bool, what: String| {
        println!("  {} {what}", if ok { "ok  " } else { "MISS" });
        failed |= !ok;
    };
    check(
        p_ratio >= TARGET_PRODUCER_RATIO,
        format!("producer ≥ {TARGET_PRODUCER_RATIO} of redis-benchmark's rate: {p_ratio:.2}"),
    );
    check(
        m(0, |s| s.client_us) < TARGET_PRODUCER_US,
        format!("producer < {TARGET_PRODUCER_US} µs CPU/msg"),
    );
    check(
        c_ratio >= TARGET_CONSUMER_RATIO,
        format!("consumer ≥ {TARGET_CONSUMER_RATIO} of the Python reference's rate: {c_ratio:.2}"),
    );
    check(
        m(2, |s| s.client_us) < TARGET_CONSUMER_US,
        format!("consumer < {TARGET_CONSUMER_US} µs CPU/msg"),
    );
    if failed {
        std::process::exit(1);
    }
}

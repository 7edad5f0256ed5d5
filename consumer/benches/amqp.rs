//! Producer and consumer throughput and CPU per message against a real RabbitMQ (Debian's 3.10, started by
//! `testkit::amqp`), beside a reference client measured in the same rounds on the same node: pika (the Python
//! client of RabbitMQ's own tutorials, pinned in scripts/test). RabbitMQ's own load tool, PerfTest, is a Java
//! program that Debian does not package.
//!
//! Each round starts a fresh node, then, each on its own durable quorum queue with persistent messages:
//! - ours: `producer --rate 0 --batch 100` publishes N messages of 100 B (publisher confirms, up to a batch
//!   in flight); then `consumer --count N --work none --max-in-flight 200 --batch 100` takes them all;
//! - pika: `pub` publishes N messages of 100 B, each confirmed before the next (pika's blocking channel has
//!   no confirm window); then `sub` consumes with prefetch 200 and one multiple ack per 100.
//!
//! Rates are messages over wall time (ours: the whole process, start-up and connection included; pika: its
//! own loop). CPU per message is the client's user + system time over N (from `wait4`, start-up included on
//! both sides) and the node's (the beam and its helpers, from /proc) over the same run. The node also
//! samples statistics in the background, which lands in both sides' server figures alike.
//!
//! Targets, checked on the medians: our producer and consumer at least as fast as pika's, each with less
//! client CPU per message. Exits non-zero on a missed target.
//!
//! Environment: `AMQP_BENCH_COUNT` (messages per run, default 20000), `AMQP_BENCH_ROUNDS` (default 3),
//! `PIKA_PY_VENV` (default target/pika-py). The machine should be otherwise idle.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use testkit::amqp::Rabbit;

const SIZE: usize = 100;
const BATCH: usize = 100;

/// CPU seconds (user + system) a process has used so far, from /proc (0 once it is gone).
fn proc_cpu(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

/// The node's CPU seconds so far: every process of it.
fn node_cpu(r: &Rabbit) -> f64 {
    r.pids().into_iter().map(proc_cpu).sum()
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
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let mut out = String::new();
    use std::io::{Read, Seek};
    let mut f = out_file;
    let _ = f.rewind();
    let _ = f.read_to_string(&mut out);
    (out, wall, cpu)
}

/// One client's figures in one run.
#[derive(Clone, Copy, Default)]
struct Side {
    rate: f64,
    client_us: f64,
    server_us: f64,
}

/// Runs `cmd` against the node for `n` messages; `loop_seconds` reads the client's own timing (pika's).
fn measure(r: &Rabbit, cmd: Command, n: u64, loop_seconds: bool) -> (String, Side) {
    let s0 = node_cpu(r);
    let (out, wall, cpu) = run_measured(cmd);
    let server_cpu = node_cpu(r) - s0;
    let wall = if loop_seconds {
        let v: serde_json::Value = out
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no JSON from pika: {out}"));
        assert_eq!(v["messages"], n, "pika: {v}");
        v["seconds"].as_f64().expect("seconds")
    } else {
        wall
    };
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
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"))
}

fn ours(r: &Rabbit, n: u64) -> (Side, Side) {
    let url = r.url("ours", "");
    let mut p = Command::new(testkit::bin("producer"));
    p.args(["--queue", &url, "--rate", "0", "--count", &n.to_string()])
        .args(["--size", &SIZE.to_string(), "--batch", &BATCH.to_string()])
        .args(["--stats-interval", "1h"])
        .env("RUST_LOG", "error")
        .env_remove("AMQP_PASSWORD");
    let (out, producer) = measure(r, p, n, false);
    let s = summary(&out);
    assert_eq!(
        (s["sent"].as_u64(), s["errors"].as_u64()),
        (Some(n), Some(0)),
        "{s}"
    );
    let mut c = Command::new(testkit::bin("consumer"));
    c.args(["--queue", &url, "--work", "none", "--count", &n.to_string()])
        .args(["--batch", &BATCH.to_string(), "--max-in-flight", "200"])
        .args(["--stats-interval", "1h"])
        .env("RUST_LOG", "error")
        .env_remove("AMQP_PASSWORD");
    let (out, consumer) = measure(r, c, n, false);
    let s = summary(&out);
    assert_eq!(
        (s["acked"].as_u64(), s["errors"].as_u64()),
        (Some(n), Some(0)),
        "{s}"
    );
    assert_eq!(testkit::amqp::depth(&url).visible, 0, "drained");
    (producer, consumer)
}

fn python() -> PathBuf {
    let venv = std::env::var_os("PIKA_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::azurite::repo_root().join("target/pika-py"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test, which installs Python's pika there",
        py.display()
    );
    py
}

fn pika(r: &Rabbit, n: u64) -> (Side, Side) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/amqp_reference.py");
    let run = |mode: &str, last: usize| {
        let mut cmd = Command::new(python());
        cmd.arg(script).args([
            mode,
            &r.port().to_string(),
            "pika",
            &n.to_string(),
            &last.to_string(),
        ]);
        measure(r, cmd, n, true).1
    };
    let producer = run("pub", SIZE);
    let consumer = run("sub", BATCH);
    assert_eq!(
        testkit::amqp::depth(&r.url("pika", "")).visible,
        0,
        "drained"
    );
    (producer, consumer)
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
    let n: u64 = env_or("AMQP_BENCH_COUNT", 20_000);
    let rounds: usize = env_or("AMQP_BENCH_ROUNDS", 3).max(1);
    // [our producer, pika's producer, our consumer, pika's consumer]
    let mut sides: [Vec<Side>; 4] = Default::default();
    for round in 0..rounds {
        let r = Rabbit::start();
        // Alternate the order, so that neither side always runs on a warmer node.
        let (o, p) = if round % 2 == 0 {
            let o = ours(&r, n);
            (o, pika(&r, n))
        } else {
            let p = pika(&r, n);
            (ours(&r, n), p)
        };
        for (i, s) in [o.0, p.0, o.1, p.1].into_iter().enumerate() {
            sides[i].push(s);
        }
        println!(
            "  round {round}: producer ours {:>6.0}/s {:>6.2} µs/msg (node {:>6.2}), pika {:>6.0}/s {:>6.2} µs/msg (node {:>6.2}); \
             consumer ours {:>6.0}/s {:>6.2} µs/msg (node {:>6.2}), pika {:>6.0}/s {:>6.2} µs/msg (node {:>6.2})",
            o.0.rate,
            o.0.client_us,
            o.0.server_us,
            p.0.rate,
            p.0.client_us,
            p.0.server_us,
            o.1.rate,
            o.1.client_us,
            o.1.server_us,
            p.1.rate,
            p.1.client_us,
            p.1.server_us,
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
        "RabbitMQ 3.10, quorum queue, {n} persistent messages × {SIZE} B, medians of {rounds} rounds:"
    );
    for (what, a, b, r) in [("producer", 0, 1, p_ratio), ("consumer", 2, 3, c_ratio)] {
        println!(
            "  {what}: ours {:.0} msgs/s, {:.2} µs CPU/msg (node {:.2}); pika {:.0} msgs/s, {:.2} µs CPU/msg (node {:.2}); ratio {r:.2}",
            m(a, |s| s.rate),
            m(a, |s| s.client_us),
            m(a, |s| s.server_us),
            m(b, |s| s.rate),
            m(b, |s| s.client_us),
            m(b, |s| s.server_us),
        );
    }
    let mut failed = false;
    let mut check = |ok: bool, what: String| {
        println!("  {} {what}", if ok { "ok  " } else { "MISS" });
        failed |= !ok;
    };
    check(
        p_ratio >= 1.0,
        format!("producer at least pika's rate: {p_ratio:.2}"),
    );
    check(
        m(0, |s| s.client_us) < m(1, |s| s.client_us),
        "producer below pika's CPU/msg".into(),
    );
    check(
        c_ratio >= 1.0,
        format!("consumer at least pika's rate: {c_ratio:.2}"),
    );
    check(
        m(2, |s| s.client_us) < m(3, |s| s.client_us),
        "consumer below pika's CPU/msg".into(),
    );
    if failed {
        std::process::exit(1);
    }
}

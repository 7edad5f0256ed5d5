//! Producer and consumer throughput and CPU per message against a real nats-server with JetStream, beside a
//! reference client measured in the same rounds: nats-py (the NATS project's Python client, pinned in
//! scripts/test), publishing with JetStream acks and pull-consuming with acks (the `nats` CLI's bench is not
//! packaged for Debian).
//!
//! Each round starts a fresh server (file storage in a temp dir), then, each on its own stream:
//! - ours: `producer --rate 0 --batch 100` publishes N messages of 100 B; then `consumer --count N --work none
//!   --max-in-flight 200 --batch 100` takes them all;
//! - nats-py: `bench-pub` publishes N messages of 100 B with 100 publish acks awaited together; then
//!   `bench-sub` fetches 100 at a time and acks each.
//!
//! Rates are messages over wall time (ours: the whole process, start-up included; nats-py: its own loop, so
//! the interpreter's start-up is not held against it). CPU per message is the client process's user +
//! system time over N (from `wait4`, start-up included on both sides), and the server's CPU over the same
//! run (from /proc). Our acks are requests the server answers (the contract: ack returns once the server
//! processed it); nats-py's `ack()` is a plain publish, cheaper for it and for the server.
//!
//! Targets, checked on the medians: our producer and consumer at least as fast as nats-py's, each with less
//! client CPU per message. Exits non-zero on a missed target.
//!
//! Environment: `NATS_BENCH_COUNT` (messages per run, default 20000), `NATS_BENCH_ROUNDS` (default 3),
//! `NATS_PY_VENV` (default target/nats-py). The machine should be otherwise idle.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use testkit::nats::NatsServer;

const SIZE: usize = 100;

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

/// Runs `cmd` against `server`, for `n` messages; `loop_seconds` reads the client's own timing, if any.
fn measure(server: &NatsServer, cmd: Command, n: u64, loop_seconds: bool) -> Side {
    let pid = server.pid().expect("server pid");
    let s0 = proc_cpu(pid);
    let (out, wall, cpu) = run_measured(cmd);
    let server_cpu = proc_cpu(pid) - s0;
    let wall = if loop_seconds {
        let v: serde_json::Value = out
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no JSON from nats-py: {out}"));
        assert_eq!(v["messages"], n, "nats-py: {v}");
        v["seconds"].as_f64().expect("seconds")
    } else {
        wall
    };
    let n = n as f64;
    Side {
        rate: n / wall,
        client_us: cpu * 1e6 / n,
        server_us: server_cpu * 1e6 / n,
    }
}

fn summary(out: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .expect("a summary line")
}

fn ours(server: &NatsServer, n: u64) -> (Side, Side) {
    let url = server.url("ours", "");
    let mut p = Command::new(testkit::bin("producer"));
    p.args(["--queue", &url, "--rate", "0", "--count", &n.to_string()])
        .args(["--size", &SIZE.to_string(), "--batch", "100"])
        .args(["--stats-interval", "1h"])
        .env("RUST_LOG", "error");
    let pid = server.pid().expect("server pid");
    let s0 = proc_cpu(pid);
    let (out, wall, cpu) = run_measured(p);
    let server_cpu = proc_cpu(pid) - s0;
    let s = summary(&out);
    assert_eq!(
        (s["sent"].as_u64(), s["errors"].as_u64()),
        (Some(n), Some(0)),
        "{s}"
    );
    let nf = n as f64;
    let producer = Side {
        rate: nf / wall,
        client_us: cpu * 1e6 / nf,
        server_us: server_cpu * 1e6 / nf,
    };
    let mut c = Command::new(testkit::bin("consumer"));
    c.args(["--queue", &url, "--count", &n.to_string(), "--work", "none"])
        .args(["--max-in-flight", "200", "--batch", "100"])
        .args(["--stats-interval", "1h"])
        .env("RUST_LOG", "error");
    let consumer = measure(server, c, n, false);
    assert_eq!(server.jsz_consumer("ours", "workers"), Some((0, 0)));
    (producer, consumer)
}

fn python() -> PathBuf {
    let venv = std::env::var_os("NATS_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::azurite::repo_root().join("target/nats-py"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test, which installs nats-py there",
        py.display()
    );
    py
}

fn reference(server: &NatsServer, n: u64) -> (Side, Side) {
    let address = format!("nats://127.0.0.1:{}", server.port());
    // The stream and consumer, as our producer makes them.
    testkit::nats::depth(&server.url("py", ""));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats_client.py");
    let mut p = Command::new(python());
    p.arg(script).args([
        "bench-pub",
        &address,
        "py",
        &n.to_string(),
        &SIZE.to_string(),
        "100",
    ]);
    let producer = measure(server, p, n, true);
    let mut c = Command::new(python());
    c.arg(script).args([
        "bench-sub",
        &address,
        "py",
        "workers",
        &n.to_string(),
        "100",
    ]);
    let consumer = measure(server, c, n, true);
    (producer, consumer)
}

fn median(mut v: Vec<f64>) -> f64 {
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

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n: u64 = env_or("NATS_BENCH_COUNT", 20_000);
    let rounds: usize = env_or("NATS_BENCH_ROUNDS", 3).max(1);
    let mut runs: Vec<[Side; 4]> = Vec::new();
    for round in 0..rounds {
        let server = NatsServer::start();
        // Alternate the order, so that neither side always meets a warmer server.
        let (op, oc, rp, rc) = if round % 2 == 0 {
            let (op, oc) = ours(&server, n);
            let (rp, rc) = reference(&server, n);
            (op, oc, rp, rc)
        } else {
            let (rp, rc) = reference(&server, n);
            let (op, oc) = ours(&server, n);
            (op, oc, rp, rc)
        };
        println!(
            "  round {round}: producer ours {:>6.0}/s {:>5.1} µs/msg, nats-py {:>6.0}/s {:>5.1} µs/msg; \
             consumer ours {:>6.0}/s {:>5.1} µs/msg, nats-py {:>6.0}/s {:>5.1} µs/msg",
            op.rate,
            op.client_us,
            rp.rate,
            rp.client_us,
            oc.rate,
            oc.client_us,
            rc.rate,
            rc.client_us
        );
        runs.push([op, oc, rp, rc]);
    }
    let m = |i: usize, f: fn(&Side) -> f64| median(runs.iter().map(|r| f(&r[i])).collect());
    let mut failed = false;
    println!(
        "\nmedians of {rounds} rounds, {n} messages of {SIZE} B, {}:\n\
         role      ours_msgs/s  nats-py_msgs/s  rate_ratio  ours_cpu_us/msg  nats-py_cpu_us/msg  cpu_ratio  server_us/msg(ours, nats-py)",
        server_version()
    );
    for (role, o, r) in [("producer", 0, 2), ("consumer", 1, 3)] {
        let (orate, rrate) = (m(o, |s| s.rate), m(r, |s| s.rate));
        let (ocpu, rcpu) = (m(o, |s| s.client_us), m(r, |s| s.client_us));
        let (osrv, rsrv) = (m(o, |s| s.server_us), m(r, |s| s.server_us));
        println!(
            "{role:<8}  {orate:>11.0}  {rrate:>14.0}  {:>10.2}  {ocpu:>15.1}  {rcpu:>18.1}  {:>9.2}  {osrv:.1}, {rsrv:.1}",
            orate / rrate,
            ocpu / rcpu
        );
        if orate < rrate {
            eprintln!(
                "MISSED: our {role} is slower than nats-py's ({orate:.0} < {rrate:.0} msgs/s)"
            );
            failed = true;
        }
        if ocpu > rcpu {
            eprintln!(
                "MISSED: our {role} uses more CPU per message than nats-py's ({ocpu:.1} > {rcpu:.1} µs)"
            );
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn server_version() -> String {
    Command::new(testkit::nats::binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

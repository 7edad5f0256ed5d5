//! Benchmark of the NSQ backend with the real binaries against the fake nsqd: CPU time per message of the
//! producer and of the consumer, the fake's own CPU excluded (it runs in this process; the binaries' CPU
//! comes from wait4 on each child).
//!
//! Run with `cargo bench -p consumer --bench nsq`. It builds the release binaries, then, three times:
//! 1. producer: 300,000 messages of 200 bytes, MPUB batches of 100, as fast as nsqd confirms;
//! 2. consumer: the same 300,000 with zero work, max-in-flight 200, no ledger (envelope decode, stats and
//!    the end-to-end latency histogram included).
//!
//! Targets (from the issue; NSQ's own Go tools against a real nsqd 1.3.0 on this kind of machine spent
//! 0.59 µs/msg in `bench_writer` and 1.49 µs/msg in `bench_reader`): producer < 1 µs/msg, consumer
//! < 2.5 µs/msg, medians of three runs. Prints one figure per line and exits 1 when a target is missed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::fake_nsqd::FakeNsqd;

const MESSAGES: u64 = 300_000;
const RUNS: usize = 3;
const PRODUCER_TARGET_US: f64 = 1.0;
const CONSUMER_TARGET_US: f64 = 2.5;

/// Starts a binary with stdout to a file; returns its pid, reaped by [`finish`] (wait4 gives its CPU time,
/// which std's `Child::wait` does not).
#[allow(clippy::zombie_processes)]
fn spawn(bin: &Path, args: &[&str], out: &Path) -> u32 {
    Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("QUEUE_URL")
        .stdin(Stdio::null())
        .stdout(File::create(out).expect("create stdout file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
        .id()
}

/// Waits for a child with wait4; returns its CPU time (user + system) and its summary line.
fn finish(pid: u32, out: &Path) -> (Duration, Value) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 only writes into the locals we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid as i32, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "pid {pid} failed: status {status}"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let summary = std::fs::read_to_string(out)
        .expect("read stdout")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .expect("a summary line");
    (tv(usage.ru_utime) + tv(usage.ru_stime), summary)
}

fn build_release() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "producer", "-p", "consumer"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    testkit::bin_dir()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bins = build_release();
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeNsqd::start();
    let count = MESSAGES.to_string();
    let (mut p_us, mut p_rate, mut c_us, mut c_rate) = (vec![], vec![], vec![], vec![]);
    for run in 0..RUNS {
        let topic = format!("bench{run}");
        let url = fake.url(&topic, "c");
        let out = dir.path().join(format!("p{run}.jsonl"));
        let started = Instant::now();
        let pid = spawn(
            &bins.join("producer"),
            &[
                "--queue", &url, "--count", &count, "--rate", "0", "--batch", "100", "--size",
                "200",
            ],
            &out,
        );
        let (cpu, s) = finish(pid, &out);
        let wall = started.elapsed();
        assert_eq!(s["sent"].as_u64(), Some(MESSAGES), "{s}");
        assert_eq!(fake.channel_depth(&topic, "c").0, MESSAGES);
        p_us.push(cpu.as_secs_f64() * 1e6 / MESSAGES as f64);
        p_rate.push(MESSAGES as f64 / wall.as_secs_f64());

        let out = dir.path().join(format!("c{run}.jsonl"));
        let started = Instant::now();
        let pid = spawn(
            &bins.join("consumer"),
            &[
                "--queue",
                &url,
                "--count",
                &count,
                "--work",
                "none",
                "--max-in-flight",
                "200",
                "--batch",
                "200",
            ],
            &out,
        );
        let (cpu, s) = finish(pid, &out);
        let wall = started.elapsed();
        assert_eq!(s["acked"].as_u64(), Some(MESSAGES), "{s}");
        c_us.push(cpu.as_secs_f64() * 1e6 / MESSAGES as f64);
        c_rate.push(MESSAGES as f64 / wall.as_secs_f64());
        println!(
            "run {run}: producer {:.2} µs/msg {:.0} msgs/s; consumer {:.2} µs/msg {:.0} msgs/s",
            p_us[run], p_rate[run], c_us[run], c_rate[run]
        );
    }
    let (p, c) = (median(p_us), median(c_us));
    let mut missed = false;
    for (what, got, target, rate) in [
        (
            "producer CPU per message (MPUB 100 × 200 B)",
            p,
            PRODUCER_TARGET_US,
            median(p_rate),
        ),
        (
            "consumer CPU per message (max-in-flight 200, zero work)",
            c,
            CONSUMER_TARGET_US,
            median(c_rate),
        ),
    ] {
        let ok = got < target;
        missed |= !ok;
        println!(
            "{} {what}: {got:.2} µs (target < {target} µs), {rate:.0} msgs/s",
            if ok { "  ok  " } else { " MISS " }
        );
    }
    if missed {
        std::process::exit(1);
    }
}

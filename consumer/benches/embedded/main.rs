//! Benchmark of the embedded (SQLite) backend with the real binaries, and of the binaries themselves.
//!
//! Run with `cargo bench -p consumer --bench embedded`. It builds the release binaries, then measures:
//! 1. End-to-end throughput: 1 producer + 2 consumer processes, 1,000,000 messages of 200 bytes, batch 100,
//!    zero work, ledgers on, the consumers taking what comes until the queue is empty (then SIGTERM, as the
//!    spike's stop when it is); msgs/s from the first send to the last ack, CPU time per message (all three
//!    processes, from wait4), and the audit (lost must be 0). The anchor, measured in the same run with
//!    rounds alternating: a bare SQLite queue of the same design (`embedded/spike.rs`: the same claim, acks
//!    in the next claim's transaction, WAL, 1 producer + 2 consumer processes, batch 100, 200 B) with nothing
//!    around it. Target: the binaries ≥ 0.8× the spike's rate (medians of 3); 200,000 msgs/s is printed
//!    for reference only (these machines vary by 2×).
//! 2. Each binary's time from exec to its first message (producer: first confirmed send; consumer: first
//!    receive from a filled queue; remainder: first work unit), median of 5, and peak RSS (the binary's own
//!    VmHWM from its summary line).
//!    Targets: < 50 ms and < 20 MB.
//! 3. The producer's rate accuracy: `--rate 1000 --duration 10s` holds 1000 ± 1 % in every interval after the
//!    first, with lateness p99 under 2,000 µs.
//! 4. Telemetry (issue #14): two consumer processes draining a backlog with `--telemetry on` (each ack batch's
//!    ledger records inserted into the sibling table `mw_telemetry` in its acks' transaction; heartbeats every
//!    second) against `--telemetry off`, alternating, median of `TELEMETRY_BENCH_ROUNDS` (default 5); target
//!    ≥ 0.9× the rate. `BENCH_ONLY=telemetry` (or `-- telemetry`) runs only this one.
//!
//! `BENCH_ONLY=throughput` runs only the first (the end-to-end rate against the spike), `EMBEDDED_RUNS` rounds
//! of it (default 3).
//!
//! Prints one figure per line and exits 1 when a target is missed.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::bench::{self, Verdicts};

mod spike;

const MESSAGES: u64 = 1_000_000;
/// Rounds of the end-to-end comparison by default (`EMBEDDED_RUNS` overrides).
const RUNS: usize = 3;

struct Finished {
    cpu: Duration,
    max_rss_kib: u64,
    lines: Vec<Value>,
}

/// Starts a program (RUST_LOG=warn, no queue or telemetry setting from the shell); reap it with [`finish`] or
/// [`bench::Running::wait`].
fn start(bin: &Path, args: &[&str]) -> bench::Running {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("QUEUE_URL")
        .env_remove("MW_TELEMETRY");
    bench::spawn(cmd)
}

/// Waits for one of our binaries: its CPU time, peak RSS and stdout lines (all JSON).
fn finish(running: bench::Running) -> Finished {
    let e = running.wait();
    let lines: Vec<Value> = e
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout is JSON lines"))
        .collect();
    // The binary's own VmHWM: wait4's ru_maxrss would include this (larger) bench process's image.
    let max_rss_kib = lines
        .iter()
        .find(|v| v["kind"] == "summary")
        .and_then(|v| v["peak_rss_kib"].as_u64())
        .unwrap_or(0);
    Finished {
        cpu: e.cpu,
        max_rss_kib,
        lines,
    }
}

fn summary(f: &Finished) -> &Value {
    f.lines
        .iter()
        .find(|v| v["kind"] == "summary")
        .expect("summary line")
}

/// One run of the bare SQLite spike: (msgs/s from the first insert to the last ack, CPU µs per message).
fn spike_run() -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("spike.db");
    let done = dir.path().join("done");
    spike::create(&db);
    let me = std::env::current_exe().expect("the bench's own path");
    let db_s = db.display().to_string();
    let done_s = done.display().to_string();
    let consumers: Vec<bench::Running> = (0..2)
        .map(|_| start(&me, &["spike-consumer", &db_s, &done_s]))
        .collect();
    let count = MESSAGES.to_string();
    let p = start(&me, &["spike-producer", &db_s, &count, "200"]).wait();
    File::create(&done).expect("create the done file");
    let first: u64 = p
        .stdout
        .trim()
        .parse()
        .expect("the spike producer's first_us");
    let (mut cpu, mut consumed, mut last) = (p.cpu, 0u64, 0u64);
    for c in consumers {
        let c = c.wait();
        let mut it = c
            .stdout
            .split_whitespace()
            .map(|w| w.parse::<u64>().expect("a number"));
        consumed += it.next().unwrap_or(0);
        last = last.max(it.next().unwrap_or(0));
        cpu += c.cpu;
    }
    assert_eq!(consumed, MESSAGES, "the spike lost or duplicated messages");
    assert_eq!(spike::left(&db), 0, "the spike left messages behind");
    let secs = (last - first) as f64 / 1e6;
    (
        MESSAGES as f64 / secs,
        cpu.as_secs_f64() * 1e6 / MESSAGES as f64,
    )
}

fn throughput(bins: &Path, v: &mut Verdicts) -> (u64, u64) {
    let mut rates = Vec::new();
    let mut cpus = Vec::new();
    let (mut s_rates, mut s_cpus) = (Vec::new(), Vec::new());
    let (mut rss_p, mut rss_c) = (0, 0);
    let runs: usize = bench::env_or("EMBEDDED_RUNS", RUNS).max(1);
    for run in 1..=runs {
        // The anchor first in odd runs, after the binaries in even ones.
        let spike_now = |s_rates: &mut Vec<f64>, s_cpus: &mut Vec<f64>| {
            let (rate, cpu) = spike_run();
            println!("run {run}: bare SQLite spike {rate:.0} msgs/s, CPU {cpu:.2} µs/msg");
            s_rates.push(rate);
            s_cpus.push(cpu);
        };
        if run % 2 == 1 {
            spike_now(&mut s_rates, &mut s_cpus);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("q.db").display());
        let consumer_args = |i: usize| {
            let ledger = dir
                .path()
                .join(format!("c{i}.ledger"))
                .display()
                .to_string();
            vec![
                "--queue".to_string(),
                url.clone(),
                "--work".into(),
                "none".into(),
                "--max-in-flight".into(),
                "200".into(),
                "--batch".into(),
                "100".into(),
                "--ledger".into(),
                ledger,
            ]
        };
        let consumers: Vec<bench::Running> = (0..2)
            .map(|i| {
                let args = consumer_args(i);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                start(&bins.join("consumer"), &args)
            })
            .collect();
        let count = MESSAGES.to_string();
        let p = start(
            &bins.join("producer"),
            &[
                "--queue", &url, "--rate", "0", "--count", &count, "--batch", "100", "--size",
                "200",
            ],
        );
        let producer = finish(p);
        // As the spike's consumers, ours take what comes until the queue is empty: then they are stopped
        // (SIGTERM: they drain and write their summary). A fixed share each (`--count` of half) measured how
        // evenly two consumers happened to split the work: the one that got its half first stopped, and the
        // other finished alone (0.4 s of a 6 s run).
        // The queue's own depth counter, on a read-only connection (a WAL reader never blocks the writers).
        let q = rusqlite::Connection::open_with_flags(
            dir.path().join("q.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the queue read-only");
        let left = || -> i64 {
            q.query_row(
                "SELECT value FROM mw_counters WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .expect("read the depth counter")
        };
        assert!(
            testkit::eventually(Duration::from_secs(60), || left() == 0),
            "{} messages still in the queue after a minute",
            left()
        );
        for c in &consumers {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.pid() as i32, libc::SIGTERM);
            }
        }
        let consumers: Vec<Finished> = consumers.into_iter().map(finish).collect();
        let first_sent = testkit::u(summary(&producer), "first_sent_at_us");
        let last_ack = consumers
            .iter()
            .map(|c| testkit::u(summary(c), "last_acked_at_us"))
            .max()
            .unwrap_or(0);
        let secs = (last_ack - first_sent) as f64 / 1e6;
        let rate = MESSAGES as f64 / secs;
        let cpu = producer.cpu + consumers.iter().map(|c| c.cpu).sum::<Duration>();
        let cpu_us_per_msg = cpu.as_secs_f64() * 1e6 / MESSAGES as f64;
        let (consumed, lost, dups, unexpected) = testkit::tally(
            &testkit::ledger_entries(dir.path()),
            testkit::u(summary(&producer), "sent"),
        );
        println!(
            "run {run}: {rate:.0} msgs/s end to end ({secs:.2} s), CPU {cpu_us_per_msg:.2} µs/msg, consumed {consumed}, lost {lost}, duplicates {dups}, unexpected {unexpected}"
        );
        v.check(
            lost == 0 && dups == 0 && unexpected == 0,
            format!("run {run}: audit lost 0 and no duplicates (lost {lost}, duplicates {dups})"),
        );
        rates.push(rate);
        cpus.push(cpu_us_per_msg);
        rss_p = rss_p.max(producer.max_rss_kib);
        rss_c = rss_c.max(consumers.iter().map(|c| c.max_rss_kib).max().unwrap_or(0));
        if run % 2 == 0 {
            spike_now(&mut s_rates, &mut s_cpus);
        }
    }
    let rate = bench::median(rates);
    let (s_rate, s_cpu) = (bench::median(s_rates), bench::median(s_cpus));
    println!(
        "end-to-end throughput (median of {runs}): binaries {rate:.0} msgs/s, CPU {:.2} µs/msg; bare SQLite spike {s_rate:.0} msgs/s, CPU {s_cpu:.2} µs/msg ({} 200,000 msgs/s, for reference)",
        bench::median(cpus),
        if rate >= 200_000.0 { "≥" } else { "<" }
    );
    let ratio = rate / s_rate;
    v.check(
        ratio >= 0.8,
        format!("throughput {ratio:.2}× the bare SQLite spike's (target ≥ 0.8)"),
    );
    (rss_p, rss_c)
}

/// Median time from spawn to the binary's first message (or work unit), in ms, and its peak RSS in KiB.
fn startup(bins: &Path, name: &str, field: &str) -> (f64, u64) {
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("q.db").display());
        if name == "consumer" {
            finish(start(
                &bins.join("producer"),
                &["--queue", &url, "--rate", "0", "--count", "100"],
            ));
        }
        let args: Vec<&str> = match name {
            "producer" => vec!["--queue", &url, "--rate", "0", "--count", "1"],
            "consumer" => vec!["--queue", &url, "--work", "none", "--count", "1"],
            _ => vec!["--threads", "1", "--duration", "300ms"],
        };
        let spawned_at = workload::clock::unix_micros();
        let f = finish(start(&bins.join(name), &args));
        let first = testkit::u(summary(&f), field);
        times.push((first.saturating_sub(spawned_at)) as f64 / 1000.0);
        rss = rss.max(f.max_rss_kib);
    }
    (bench::median(times), rss)
}

fn rate_accuracy(bins: &Path, v: &mut Verdicts) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("q.db").display());
    let f = finish(start(
        &bins.join("producer"),
        &["--queue", &url, "--rate", "1000", "--duration", "10s"],
    ));
    let intervals: Vec<&Value> = f.lines.iter().filter(|l| l["kind"] == "interval").collect();
    let rates: Vec<f64> = intervals
        .iter()
        .skip(1)
        .map(|l| l["rate"].as_f64().unwrap_or(0.0))
        .collect();
    let worst = rates
        .iter()
        .map(|r| (r - 1000.0).abs() / 10.0)
        .fold(0.0, f64::max);
    let p99s: Vec<u64> = intervals
        .iter()
        .map(|l| testkit::u(l, "lateness_p99_us"))
        .collect();
    let total_p99 = testkit::u(summary(&f), "lateness_p99_us");
    println!("producer --rate 1000: interval rates {rates:?}");
    println!(
        "producer --rate 1000: lateness p99 per interval {p99s:?} µs, whole run {total_p99} µs"
    );
    v.check(
        worst <= 1.0 && rates.len() >= 8,
        format!("every interval after the first within 1000 ± 1 % (worst {worst:.2} %)"),
    );
    v.check(
        p99s.iter().all(|p| *p < 2000) && total_p99 < 2000,
        format!(
            "lateness p99 under 2000 µs (worst interval {} µs)",
            p99s.iter().max().unwrap_or(&0)
        ),
    );
}

fn main() {
    // `cargo bench` passes --bench; the spike's roles come back in through their own first argument.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("spike-producer") if args.len() == 4 => {
            let count = args[2].parse().expect("count");
            let size = args[3].parse().expect("size");
            return spike::producer(Path::new(&args[1]), count, size);
        }
        Some("spike-consumer") if args.len() == 3 => {
            return spike::consumer(Path::new(&args[1]), Path::new(&args[2]));
        }
        _ => {}
    }
    let bins = bench::build_release();
    let mut v = Verdicts::default();
    if std::env::var("BENCH_ONLY").is_ok_and(|o| o == "throughput") {
        throughput(&bins, &mut v);
        return v.finish();
    }
    if !bench::telemetry_only() {
        measure_binaries(&bins, &mut v);
    }
    let met = telemetry();
    v.check(met, "consumers with telemetry ≥ 0.9× without");
    v.finish();
}

/// The telemetry comparison: a backlog of `EMBEDDED_TELEMETRY_COUNT` (default 200000) × 200 B drained by two
/// consumer processes, with telemetry on or off; msgs/s from their start to the later one's exit, CPU of both.
fn telemetry() -> bool {
    let n: u64 = bench::env_or("EMBEDDED_TELEMETRY_COUNT", 200_000);
    let what = format!(
        "2 consumer processes, {n} × 200 B, batch 100, max-in-flight 200, ledgers on (no server process: SQLite runs in the consumers)"
    );
    bench::telemetry(&what, bench::telemetry_rounds(), |_, on| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("q.db");
        let url = format!("sqlite:{}", db.display());
        bench::run(bench::producer(&url, n, 200, 100)).expect_all("sent", n);
        let started = std::time::Instant::now();
        let consumers: Vec<bench::Running> = (0..2)
            .map(|i| {
                let ledger = dir.path().join(format!("c{i}.ledger"));
                let mut cmd = bench::telemetry_consumer(&url, n / 2, 100, 200, on);
                cmd.arg("--ledger").arg(ledger);
                bench::spawn(cmd)
            })
            .collect();
        let done: Vec<bench::Exited> = consumers.into_iter().map(|c| c.wait()).collect();
        let secs = started.elapsed().as_secs_f64();
        let cpu: Duration = done.iter().map(|e| e.cpu).sum();
        for e in &done {
            e.expect_all("acked", n / 2);
        }
        if on {
            // The records' table beside the work queue's, in the same file.
            let records: i64 = rusqlite::Connection::open(&db)
                .and_then(|c| c.query_row("SELECT count(*) FROM mw_telemetry", [], |r| r.get(0)))
                .expect("count the ledger records");
            assert!(records > 0, "telemetry on, yet no ledger records");
        }
        bench::Side::new(n, secs, cpu.as_secs_f64(), 0.0)
            .with_drain(n, &done.iter().collect::<Vec<_>>())
    })
}

fn measure_binaries(bins: &Path, v: &mut Verdicts) {
    println!(
        "== embedded backend: 1 producer + 2 consumers, {MESSAGES} × 200 B, batch 100, zero work =="
    );
    let (rss_p, rss_c) = throughput(bins, v);
    println!("== start to first message, peak RSS ==");
    for (name, field, rss_run) in [
        ("producer", "first_sent_at_us", rss_p),
        ("consumer", "first_received_at_us", rss_c),
        ("remainder", "first_unit_at_us", 0),
    ] {
        let (ms, rss) = startup(bins, name, field);
        let rss = rss.max(rss_run);
        println!(
            "{name}: first message {ms:.1} ms after exec, peak RSS {:.1} MB",
            rss as f64 / 1024.0
        );
        v.check(
            ms < 50.0,
            format!("{name} start to first message {ms:.1} ms < 50 ms"),
        );
        v.check(
            rss < 20 * 1024,
            format!("{name} peak RSS {:.1} MB < 20 MB", rss as f64 / 1024.0),
        );
    }
    println!("== producer rate accuracy ==");
    rate_accuracy(bins, v);
}

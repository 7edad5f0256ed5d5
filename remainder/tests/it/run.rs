//! The real `remainder` binary, run as a child process: what it reports, how fast it stops, and that sleep mode
//! really idles.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{Proc, u};

/// The fields every interval line carries, as documented in the CLI help and the README's stats contract.
const INTERVAL_FIELDS: &[&str] = &[
    "role",
    "kind",
    "ts_us",
    "elapsed_s",
    "units",
    "units_per_s",
    "threads",
    "mode",
];

/// The fields of the summary line.
const SUMMARY_FIELDS: &[&str] = &[
    "role",
    "kind",
    "ts_us",
    "elapsed_s",
    "units",
    "units_per_s",
    "threads",
    "mode",
    "priority",
    "unit_us",
    "first_unit_at_us",
];

/// A remainder command with no thread count or stats interval inherited from the environment.
fn remainder(args: &[&str]) -> std::process::Command {
    let mut cmd = testkit::command("remainder");
    cmd.env_remove("REMAINDER_THREADS")
        .env_remove("STATS_INTERVAL")
        .args(args);
    cmd
}

/// Asserts that a stats line carries every one of `fields` (it may carry more: `workload` adds fields to every
/// role's lines, such as `peak_rss_kib` in summaries).
fn assert_has_fields(line: &Value, fields: &[&str]) {
    let missing: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| line.get(f).is_none())
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} in {line}");
}

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, so 11 and 12 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads its argument.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_s)
}

#[test]
fn reports_units_in_documented_interval_and_summary_lines() {
    let mut cmd = remainder(&["--stats-interval", "100ms"]);
    // The thread count comes from the environment variable, which must be honoured.
    cmd.env("REMAINDER_THREADS", "1");
    let mut p = Proc::spawn("remainder", cmd);
    // Waits for units rather than running for a fixed time: on a saturated machine a SCHED_IDLE worker may get
    // its first turn late, and that is the remainder working as intended.
    p.wait_for_line(Duration::from_secs(10), |v| {
        v["kind"] == "interval" && u(v, "units") > 0
    });
    assert!(
        testkit::eventually(Duration::from_secs(5), || {
            p.stats().iter().filter(|v| v["kind"] == "interval").count() >= 3
        }),
        "expected an interval line every 100 ms: {:?}",
        p.lines()
    );
    p.signal(libc::SIGTERM);
    let status = p.wait(Duration::from_secs(5));
    assert!(status.success(), "exit {status}; stderr:\n{}", p.stderr());

    let stats = p.stats();
    let intervals: Vec<&Value> = stats.iter().filter(|v| v["kind"] == "interval").collect();
    for line in &intervals {
        assert_has_fields(line, INTERVAL_FIELDS);
        assert_eq!(line["role"], "remainder");
        assert_eq!(line["mode"], "cpu");
        assert_eq!(u(line, "threads"), 1, "REMAINDER_THREADS=1 honoured");
        assert!(line["units_per_s"].is_number(), "{line}");
    }
    let units: Vec<u64> = intervals.iter().map(|l| u(l, "units")).collect();
    assert!(
        units.windows(2).all(|w| w[0] <= w[1]),
        "units is a running total: {units:?}"
    );

    let summary = p.summary().expect("a summary line");
    assert_has_fields(&summary, SUMMARY_FIELDS);
    assert!(u(&summary, "units") > 0, "{summary}");
    assert!(
        u(&summary, "units") >= *units.last().unwrap_or(&0),
        "{summary}"
    );
    assert!(
        summary["units_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{summary}"
    );
    assert!(
        ["sched_idle", "nice19", "normal"].contains(&summary["priority"].as_str().unwrap_or("")),
        "{summary}"
    );
    // Calibrated to about 1 ms; loose bounds, as this is the debug build on a machine running other tests.
    let unit_us = u(&summary, "unit_us");
    assert!((200..=5_000).contains(&unit_us), "unit_us {unit_us}");
    let first = u(&summary, "first_unit_at_us");
    assert!(first > 0 && first <= u(&summary, "ts_us"), "{summary}");
}

#[test]
fn duration_stops_it_by_itself_with_a_summary() {
    let mut p = Proc::spawn(
        "remainder",
        remainder(&["--threads", "1", "--duration", "300ms"]),
    );
    let status = p.wait(Duration::from_secs(10));
    assert!(status.success(), "exit {status}; stderr:\n{}", p.stderr());
    let summary = p.summary().expect("a summary line");
    let elapsed = summary["elapsed_s"].as_f64().unwrap_or(0.0);
    assert!((0.3..1.0).contains(&elapsed), "ran {elapsed} s: {summary}");
}

#[test]
fn sigterm_stops_it_within_100ms_with_a_summary() {
    let mut p = Proc::spawn("remainder", remainder(&["--stats-interval", "100ms"]));
    p.wait_for_line(Duration::from_secs(10), |v| {
        v["kind"] == "interval" && u(v, "units") > 0
    });

    p.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let exited = testkit_poll(Duration::from_secs(5), || !p.running());
    let took = signalled.elapsed();
    assert!(exited, "still running 5 s after SIGTERM");
    eprintln!("remainder exited {} ms after SIGTERM", took.as_millis());

    let status = p.wait(Duration::from_secs(1));
    assert!(status.success(), "exit {status}; stderr:\n{}", p.stderr());
    // The target is 100 ms; the slack is for a loaded CI machine, not for the remainder.
    assert!(
        took < Duration::from_millis(300),
        "took {took:?} to exit after SIGTERM"
    );
    let summary = p.summary().expect("a summary line after SIGTERM");
    assert!(u(&summary, "units") > 0, "{summary}");
    assert!(u(&summary, "threads") >= 1, "{summary}");
}

#[test]
fn sleep_mode_holds_its_slot_without_using_cpu() {
    let mut p = Proc::spawn(
        "remainder",
        remainder(&[
            "--mode",
            "sleep",
            "--threads",
            "2",
            "--stats-interval",
            "100ms",
        ]),
    );
    p.wait_for_line(Duration::from_secs(10), |v| v["kind"] == "interval");
    let before = cpu_time(p.pid());
    let watched = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(p.pid()).saturating_sub(before);
    let over = watched.elapsed();
    eprintln!(
        "sleep mode used {} ms of CPU in {} ms",
        used.as_millis(),
        over.as_millis()
    );
    // Writing ten stats lines costs microseconds; 50 ms allows for the clock-tick granularity of /proc.
    assert!(
        used <= Duration::from_millis(50),
        "sleep mode used {used:?} of CPU in {over:?}"
    );

    p.signal(libc::SIGTERM);
    let status = p.wait(Duration::from_secs(5));
    assert!(status.success(), "exit {status}; stderr:\n{}", p.stderr());
    let stats = p.stats();
    assert!(
        stats
            .iter()
            .filter(|v| v["kind"] == "interval")
            .all(|v| u(v, "units") == 0 && v["mode"] == "sleep"),
        "{stats:?}"
    );
    let summary = p.summary().expect("a summary line");
    assert_eq!(u(&summary, "units"), 0, "{summary}");
    assert_eq!(u(&summary, "threads"), 2, "{summary}");
    assert!(
        summary["first_unit_at_us"].is_null(),
        "no unit ever completed: {summary}"
    );
    assert!(
        summary["unit_us"].is_null(),
        "sleep mode does not calibrate: {summary}"
    );
}

/// Polls `cond` every millisecond (finer than testkit's 10 ms, because this measures an exit latency).
fn testkit_poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

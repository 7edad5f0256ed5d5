//! The real `demo` binary, run non-interactively (stdin is not a terminal), starting the real producer,
//! consumers and remainder. Build every binary first: `cargo build --workspace --bins`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use testkit::{Proc, u};

/// The fields of every demo interval line, in the README's stats contract.
const INTERVAL_FIELDS: &[&str] = &[
    "depth",
    "in_flight",
    "produce_rate",
    "consume_rate",
    "consumers",
    "e2e_p99_us",
    "remainder_units_per_s",
];

/// The fields of the demo's summary line.
const SUMMARY_FIELDS: &[&str] = &[
    "produced",
    "consumed",
    "lost",
    "duplicates",
    "e2e_p50_us",
    "e2e_p99_us",
    "e2e_max_us",
    "duration_s",
    "consumers_max",
];

pub(super) fn demo(args: &[&str]) -> Proc {
    let mut cmd = testkit::command("demo");
    cmd.args(args);
    Proc::spawn("demo", cmd)
}

fn intervals(p: &Proc) -> Vec<Value> {
    p.stats()
        .into_iter()
        .filter(|v| v["role"] == "demo" && v["kind"] == "interval")
        .collect()
}

/// The directory the demo printed as kept ("files      /tmp/queue-demo-…" or "files are kept in …").
pub(super) fn kept_dir(stderr: &str) -> PathBuf {
    let start = stderr
        .find("/queue-demo-")
        .and_then(|i| stderr[..i].rfind(char::is_whitespace).map(|s| s + 1))
        .unwrap_or_else(|| panic!("no kept directory in stderr:\n{stderr}"));
    let rest = &stderr[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ':' || c == ')')
        .unwrap_or(rest.len());
    PathBuf::from(&rest[..end])
}

/// Removes a directory the demo kept, even when an assertion fails.
pub(super) struct RemoveOnDrop(pub(super) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Processes whose command line mentions `needle`: the demo's children, if any are left.
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn a_short_demo_consumes_everything_it_produced() {
    // Two consumers taking 4 messages at a time keep up with 200/s, so the test does not wait on a long drain.
    let mut p = demo(&[
        "--duration",
        "4s",
        "--rate",
        "200",
        "--consumers",
        "2",
        "--max-in-flight",
        "4",
    ]);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let summary = p.summary().expect("a summary line");
    assert_eq!(summary["role"], "demo");
    for f in SUMMARY_FIELDS {
        assert!(summary.get(f).is_some(), "{f} missing in {summary}");
    }
    assert!(u(&summary, "produced") > 0, "{summary}");
    assert_eq!(u(&summary, "lost"), 0, "{summary}\n{stderr}");
    assert_eq!(
        u(&summary, "consumed"),
        u(&summary, "produced"),
        "{summary}"
    );
    assert_eq!(u(&summary, "consumers_max"), 2, "{summary}");
    // 4 s at 200/s is 800 messages: the producer times its own run. A little less only if it started so late
    // (a loaded machine) that the demo's SIGTERM came first.
    assert!((700..=800).contains(&u(&summary, "produced")), "{summary}");
    let lines = intervals(&p);
    assert!(lines.len() >= 3, "one interval line per second: {lines:?}");
    for l in &lines {
        for f in INTERVAL_FIELDS {
            assert!(l.get(f).is_some(), "{f} missing in {l}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l["produce_rate"].as_f64() > Some(100.0)),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["remainder_units_per_s"].as_f64() > Some(0.0)),
        "the remainder ran: {lines:?}"
    );
    // The summary is the last stdout line, and stdout holds nothing but JSON lines (Proc::stats checks).
    assert_eq!(p.stats().last(), Some(&summary));
    assert!(
        stderr.contains("OK: every message"),
        "human report on stderr:\n{stderr}"
    );
}

#[test]
fn a_consumer_schedule_changes_the_consumer_count() {
    let mut p = demo(&[
        "--duration",
        "4s",
        "--consumers",
        "2,0@1s,3@2s",
        "--no-remainder",
        "--keep",
    ]);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    let dir = kept_dir(&stderr);
    let _cleanup = RemoveOnDrop(dir.clone());
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let counts: Vec<u64> = intervals(&p).iter().map(|l| u(l, "consumers")).collect();
    // 2 at first, 0 once the first step applied, 3 after the second, in that order.
    let first_zero = counts.iter().position(|&c| c == 0);
    let first_three = counts.iter().position(|&c| c == 3);
    assert_eq!(counts.first(), Some(&2), "{counts:?}");
    assert!(
        matches!((first_zero, first_three), (Some(z), Some(t)) if z < t),
        "{counts:?}"
    );
    let summary = p.summary().expect("a summary line");
    assert_eq!(u(&summary, "lost"), 0, "{summary}\n{stderr}");
    assert_eq!(u(&summary, "consumers_max"), 3, "{summary}");
    assert!(u(&summary, "produced") > 0, "{summary}");
    // Every consumer ever started had its own ledger: 2 at first, then 3 new ones.
    let mut ledgers: Vec<String> = std::fs::read_dir(dir.join("ledgers"))
        .expect("kept ledgers")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    ledgers.sort();
    assert_eq!(
        ledgers,
        (1..=5)
            .map(|k| format!("consumer-{k}.ledger"))
            .collect::<Vec<_>>()
    );
    assert!(dir.join("logs").join("producer.log").exists());
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    for (args, needle) in [
        (
            &["--consumers", "3,x@"][..],
            "invalid consumer schedule \"3,x@\"",
        ),
        (&["--bogus"][..], "unexpected argument '--bogus'"),
        (&["--work", "nap:1s"][..], "invalid work spec"),
        (&["--duration", "ten"][..], "invalid duration"),
        (
            &["--no-remainder", "--remainder-threads", "2"][..],
            "cannot be used with",
        ),
    ] {
        let mut p = demo(args);
        let status = p.wait(Duration::from_secs(10));
        let stderr = p.stderr();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(p.lines().is_empty(), "{args:?}: nothing on stdout");
    }
    let mut p = demo(&["--consumers", "3,x@"]);
    p.wait(Duration::from_secs(10));
    assert!(
        p.stderr().contains("3,0@10s,6@20s"),
        "the error shows the syntax: {}",
        p.stderr()
    );
}

#[test]
fn a_failing_child_stops_the_demo_and_shows_its_log() {
    // A producer that fails at once, beside the real consumer and remainder.
    let bins = tempfile::tempdir().expect("tempdir");
    let fake = bins.path().join("producer");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'fake producer: cannot reach the queue' >&2\nsleep 0.5\nexit 3\n",
    )
    .expect("write fake producer");
    let mut perms = std::fs::metadata(&fake).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).expect("chmod");
    for real in ["consumer", "remainder"] {
        std::os::unix::fs::symlink(testkit::bin(real), bins.path().join(real)).expect("symlink");
    }
    let mut p = demo(&[
        "--bin-dir",
        bins.path().to_str().expect("utf-8 temp path"),
        "--duration",
        "20s",
    ]);
    let status = p.wait(Duration::from_secs(20));
    let stderr = p.stderr();
    let dir = kept_dir(&stderr);
    let _cleanup = RemoveOnDrop(dir.clone());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("producer exited unexpectedly (exit status: 3)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fake producer: cannot reach the queue"),
        "the log tail: {stderr}"
    );
    assert!(
        p.summary().is_none(),
        "no summary for a failed demo: {:?}",
        p.lines()
    );
    // The consumers and the remainder it had started are gone with it (their command lines name the binary
    // directory; the consumers' also name the demo's directory).
    let mut left = processes_mentioning(bins.path());
    left.extend(processes_mentioning(&dir));
    assert!(left.is_empty(), "left running: {left:?}");
}

/// Waits until the demo has written `n` interval lines (it is running), at most `limit`.
fn wait_for_intervals(p: &Proc, n: usize, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    while intervals(p).len() < n {
        assert!(
            std::time::Instant::now() < until,
            "no {n} interval lines within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo's temporary directory, read from its children's command lines (its stderr is only complete
/// once it has exited).
fn demo_dir_of(pid: i32) -> Option<PathBuf> {
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The parent pid is the second field after the command name, which is in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(pid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // `--queue sqlite:/tmp/queue-demo-XXXX/queue.db`: the path between the colon and the next slash.
        if let Some(i) = cmdline.find("/queue-demo-") {
            let start = cmdline[..i].rfind([' ', ':']).map_or(0, |s| s + 1);
            let after = i + "/queue-demo-".len();
            let end = cmdline[after..]
                .find(['/', ' '])
                .map_or(cmdline.len(), |e| after + e);
            return Some(PathBuf::from(&cmdline[start..end]));
        }
    }
    None
}

#[test]
fn the_header_says_what_the_children_are_told_and_p99_reads_a_dash_before_any_consumption() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/burst.toml");
    let out = tempfile::tempdir().expect("tempdir");
    let mut p = demo(&[
        "--scenario",
        scenario.to_str().expect("utf-8 path"),
        "--autoscale",
        "on",
        "--work",
        "sleep:exp(20ms)",
        "--duration",
        "2s",
        "--scorecard-dir",
        out.path().to_str().expect("utf-8 path"),
    ]);
    let status = p.wait(Duration::from_secs(60));
    let stderr = p.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let header = stderr.lines().next().expect("a header line");
    // The work the producer stamps (and the consumers do), written compactly: no `82ms 436us 64ns`.
    assert!(
        header.contains("work sleep:exp(20ms,max=") && header.contains("(stamped by the producer)"),
        "{header}"
    );
    assert!(!header.contains("sleep:25ms"), "{header}");
    assert!(
        !header.contains("us ") && !header.contains("ns)"),
        "durations compact: {header}"
    );
    // The autoscaler runs remainders in the spare slots, not one remainder of one thread.
    assert!(
        header.contains("remainders in the spare slots (8 slots - consumers, up to 8)"),
        "{header}"
    );
    assert!(!header.contains("remainder with 1 thread"), "{header}");

    // Nothing consumed yet: the live line says so rather than claiming 0 µs.
    let mut p = demo(&[
        "--consumers",
        "0,1@2s",
        "--duration",
        "3s",
        "--no-remainder",
    ]);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let first = stderr
        .lines()
        .find(|l| l.contains(" running "))
        .unwrap_or_else(|| panic!("a status line in:\n{stderr}"));
    assert!(first.contains("e2e p99 -"), "{first}");
    assert!(!stderr.contains("p99 0µs"), "{stderr}");
}

#[test]
fn stopping_early_leaves_messages_in_the_queue_not_lost_and_the_kept_dir_re_audits() {
    // One slow consumer against 300 msgs/s: a backlog builds, and a double Ctrl-C leaves it in the queue.
    let mut p = demo(&[
        "--rate",
        "300",
        "--consumers",
        "1",
        "--work",
        "sleep:20ms",
        "--duration",
        "30s",
        "--no-remainder",
        "--keep",
    ]);
    wait_for_intervals(&p, 2, Duration::from_secs(20));
    p.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGINT);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    let dir = kept_dir(&stderr);
    let _cleanup = RemoveOnDrop(dir.clone());
    assert!(
        status.success(),
        "stopped early, nothing lost: {status}\n{stderr}"
    );
    let summary = p.summary().expect("a summary line");
    let left = u(&summary, "left_in_queue");
    assert!(left > 0, "{summary}");
    assert_eq!(u(&summary, "lost"), 0, "{summary}");
    assert!(!stderr.contains("LOST"), "{stderr}");
    assert!(
        stderr.contains(&format!("left       {left} in the queue")),
        "{stderr}"
    );
    // The re-audit it suggests counts those as lost (it cannot see the queue): the report says so.
    assert!(
        stderr.contains(&format!(
            "its lost count includes the {left} message(s) still in"
        )),
        "{stderr}"
    );

    // The kept directory holds what the audit needs, and the audit finds the same figures: what the demo
    // calls left in the queue, the audit (which cannot see the queue) counts as unconsumed.
    let mut cmd = testkit::command("audit");
    cmd.arg("--producer")
        .arg(dir.join("producer.jsonl"))
        .arg("--ledger")
        .arg(dir.join("ledgers"));
    let mut audit = Proc::spawn("audit", cmd);
    audit.wait(Duration::from_secs(20));
    let a = audit
        .stats()
        .into_iter()
        .find(|v| v["role"] == "audit")
        .unwrap_or_else(|| panic!("an audit line; stderr:\n{}", audit.stderr()));
    assert_eq!(u(&a, "produced"), u(&summary, "produced"), "{a}\n{summary}");
    assert_eq!(u(&a, "consumed"), u(&summary, "consumed"), "{a}\n{summary}");
    assert_eq!(
        u(&a, "duplicates"),
        u(&summary, "duplicates"),
        "{a}\n{summary}"
    );
    assert_eq!(u(&a, "lost"), left, "{a}\n{summary}");
}

#[test]
fn a_queue_that_does_not_drain_fails_and_keeps_the_directory_without_keep() {
    let mut p = demo(&[
        "--rate",
        "300",
        "--consumers",
        "1",
        "--work",
        "sleep:20ms",
        "--duration",
        "2s",
        "--drain-timeout",
        "1s",
        "--no-remainder",
    ]);
    let status = p.wait(Duration::from_secs(40));
    let stderr = p.stderr();
    let dir = kept_dir(&stderr);
    let _cleanup = RemoveOnDrop(dir.clone());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not drain"), "{stderr}");
    assert!(!stderr.contains("LOST"), "{stderr}");
    assert!(dir.join("producer.jsonl").exists(), "kept: {stderr}");
    assert!(dir.join("ledgers").join("consumer-1.ledger").exists());
}

#[test]
fn a_manual_schedule_gets_a_series_scorecard_and_chart_too() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut p = demo(&[
        "--consumers",
        "1,2@1s",
        "--duration",
        "3s",
        "--no-remainder",
        "--scorecard-dir",
        out.path().to_str().expect("utf-8 path"),
    ]);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let series: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("series.json")).expect("series.json"),
    )
    .expect("json");
    let samples = series["samples"].as_array().expect("samples");
    assert!(samples.len() >= 2, "{series}");
    // Sampled until the final stop, which is the demo's doing, not part of the schedule.
    assert_eq!(
        samples.last().map(|x| &x["consumers"]),
        Some(&Value::from(2)),
        "{series}"
    );
    let manual = series["manual"].as_array().expect("manual events");
    assert!(
        manual
            .iter()
            .any(|m| m["source"] == "schedule" && m["consumers"] == 2),
        "{series}"
    );
    let title = series["title"].as_str().expect("a title");
    assert!(
        title.contains("consumers by hand (1, then 2 from 1s)"),
        "{title}"
    );
    // The constant rate is recorded as its shape, so the run gets its demand and elasticity figures.
    assert_eq!(series["shape"], "const:100", "{series}");
    let card: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("scorecard.json")).expect("scorecard.json"),
    )
    .expect("json");
    assert!(card["elasticity"].is_object(), "{card}");
    // The schedule's step is applied just after that second's sample: it is the schedule's, not the engine's.
    assert_eq!(card["manual_changes"], 1, "{card}");
    assert!(card["worst_scale_out_s"].is_null(), "{card}");
    let chart = std::fs::read_to_string(out.path().join("chart.svg")).expect("chart.svg");
    roxmltree::Document::parse(&chart).expect("well-formed chart");
    assert!(stderr.contains("peak overshoot"), "the table:\n{stderr}");
}

#[test]
fn closing_the_terminal_sighup_stops_the_demo_and_removes_its_directory() {
    let mut p = demo(&["--duration", "60s", "--consumers", "2"]);
    wait_for_intervals(&p, 1, Duration::from_secs(20));
    let dir = demo_dir_of(p.pid()).expect("the demo's directory, from its children");
    assert!(dir.exists(), "{}", dir.display());
    p.signal(libc::SIGHUP);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    assert!(
        status.code().is_some(),
        "exited, not killed by SIGHUP: {status}\n{stderr}"
    );
    assert!(!dir.exists(), "{} left behind:\n{stderr}", dir.display());
    let left = processes_mentioning(&dir);
    assert!(left.is_empty(), "left running: {left:?}");
}

/// `demo --queue nats://…` runs the producer, the consumers and the autoscaler on a real nats-server's
/// JetStream stream instead of the embedded queue: it scales out on the backlog, consumes everything, and
/// leaves the durable consumer empty.
#[test]
fn the_autoscaler_runs_on_a_nats_jetstream_queue() {
    let server = testkit::nats::NatsServer::start();
    let url = server.url("demo", "");
    let mut cmd = testkit::command("demo");
    testkit::nats::clear_credentials(&mut cmd);
    cmd.args([
        "--queue",
        &url,
        "--autoscale",
        "target=20,min=1,max=4,interval=500ms",
        "--rate",
        "200",
        "--work",
        "sleep:20ms",
        "--duration",
        "3s",
        "--no-remainder",
        "--drain-timeout",
        "20s",
        "--keep",
    ]);
    let out = tempfile::tempdir().unwrap();
    cmd.arg("--scorecard-dir").arg(out.path());
    let mut p = Proc::spawn("demo", cmd);
    let status = p.wait(Duration::from_secs(60));
    let stderr = p.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    let summary = p.summary().expect("a summary line");
    assert_eq!(u(&summary, "lost"), 0, "{summary}\n{stderr}");
    assert!(u(&summary, "produced") >= 500, "{summary}");
    assert_eq!(
        u(&summary, "consumed"),
        u(&summary, "produced"),
        "{summary}"
    );
    // One consumer takes ~50 msgs/s of 200: the backlog passes the target and the autoscaler adds more.
    assert!(u(&summary, "consumers_max") >= 2, "{summary}");
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|h| h.contains("queue nats://127.0.0.1:")),
        "the header names the queue:\n{stderr}"
    );
    assert_eq!(server.jsz_consumer("demo", "workers"), Some((0, 0)));
    // The kept directory's listing names what is there: no queue.db on a broker's queue.
    let files = stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("files "))
        .unwrap_or_else(|| panic!("a files line:\n{stderr}"))
        .trim();
    let (dir, listed) = files.split_once(" (").unwrap_or_else(|| panic!("{files}"));
    let dir = std::path::Path::new(dir);
    assert!(!dir.join("queue.db").exists(), "{}", dir.display());
    assert!(!listed.contains("queue.db"), "{files}");
    for name in ["producer.jsonl", "ledgers/", "logs/"] {
        assert!(listed.contains(name), "{name} in {files}");
        assert!(dir.join(name).exists(), "{name} in {}", dir.display());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

//! The real producer binary: schedule, limits, legacy variables, bad input.

use std::time::Duration;

use testkit::{Proc, command, depth, sqlite_url};
use workload::contract::Kind;

fn run_producer(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = command("producer");
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn("producer", cmd);
    p.wait(Duration::from_secs(30));
    p
}

#[test]
fn a_paced_run_sends_exactly_its_schedule_at_the_asked_rate() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let p = run_producer(
        &[
            "--queue",
            &url,
            "--rate",
            "1000",
            "--duration",
            "3s",
            "--batch",
            "10",
        ],
        &[],
    );
    let s = p.producer_summary().expect("summary");
    // Messages due inside [0, 3 s) at 1000/s: exactly 3000, whatever the timer did.
    assert_eq!(s.sent, 3000);
    assert_eq!(
        depth(&url).visible,
        3000,
        "sent means confirmed: every one is in the queue"
    );
    let intervals: Vec<_> = p
        .typed()
        .into_iter()
        .filter_map(|l| {
            l.producer()
                .filter(|l| l.head.kind == Kind::Interval)
                .cloned()
        })
        .collect();
    assert!(intervals.len() >= 2, "{intervals:?}");
    for v in &intervals[1..] {
        let rate = v.rate;
        // The strict ±1 % / p99 < 2 ms figures are the benchmark's job; here a loaded CI must not flake.
        assert!(
            (900.0..=1100.0).contains(&rate),
            "interval rate {rate}: {v:?}"
        );
    }
    for field in [
        "run_id",
        "producer_id",
        "sent",
        "errors",
        "rate",
        "lateness_p99_us",
    ] {
        // The JSON itself, not the struct (whose defaults would hide a missing field).
        let json = p.summary().expect("summary");
        assert!(!json[field].is_null(), "summary has {field}");
    }
}

#[test]
fn count_limits_and_run_and_producer_ids_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let p = run_producer(
        &[
            "--queue",
            &url,
            "--rate",
            "0",
            "--count",
            "1234",
            "--run-id",
            "abc",
            "--producer-id",
            "7",
            "--size",
            "300",
        ],
        &[],
    );
    let s = p.producer_summary().unwrap();
    assert_eq!((s.sent, s.producer_id), (1234, 7));
    assert_eq!(s.run_id, "0000000000000abc");
    assert_eq!(depth(&url).visible, 1234);
}

#[test]
fn the_original_sleep_variable_sets_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    // MSS_PRODUCER_SLEEP_MS=50 → 20 msgs/s → 40 messages in 2 s.
    let p = run_producer(
        &["--queue", &url, "--duration", "2s"],
        &[("MSS_PRODUCER_SLEEP_MS", "50")],
    );
    assert_eq!(p.producer_summary().unwrap().sent, 40);
    let p = run_producer(
        &["--queue", &url, "--duration", "1s"],
        &[("MSS_PRODUCER_SLEEP_MS", "soon")],
    );
    assert!(
        p.stderr().contains("MSS_PRODUCER_SLEEP_MS"),
        "{}",
        p.stderr()
    );
}

#[test]
fn sigterm_stops_a_producer_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut cmd = command("producer");
    cmd.args([
        "--queue",
        &url,
        "--rate",
        "200",
        "--stats-interval",
        "100ms",
    ]);
    let mut p = Proc::spawn("producer", cmd);
    p.wait_for_stats(Duration::from_secs(10), |l| {
        l.producer().is_some_and(|l| l.sent > 0)
    });
    p.signal(libc::SIGTERM);
    assert!(p.wait(Duration::from_secs(5)).success(), "{}", p.stderr());
    let sent = p.producer_summary().expect("summary on SIGTERM").sent;
    assert_eq!(
        depth(&url).visible,
        sent,
        "every message counted as sent is in the queue, and no other"
    );
}

#[test]
fn bad_input_is_a_clear_usage_error() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--queue", "sqlite:q.db", "--duration", "10 parsecs"],
            "expected a number with a unit",
        ),
        (&["--queue", "sqlite:q.db", "--rate=-5"], "--rate: must be"),
        (
            &["--queue", "sqlite:q.db", "--batch", "0"],
            "--batch: must be from 1 to 1000000 (got 0)",
        ),
        (
            &["--queue", "sqlite:q.db", "--run-id", "xyz"],
            "--run-id: \"xyz\" is not a run id",
        ),
        (&["--queue", "mq://x"], "unknown scheme \"mq\""),
        (&["--rate", "5"], "no queue given"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in cases {
        let mut cmd = command("producer");
        cmd.current_dir(dir.path()).args(args);
        let mut p = Proc::spawn("producer", cmd);
        let status = p.wait(Duration::from_secs(10));
        let err = p.stderr();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

/// The producer's one-line error and exit status for `args` with the environment `vars`.
fn refused(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command("producer");
    cmd.current_dir(dir.path()).args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn("producer", cmd);
    let status = p.wait(Duration::from_secs(10));
    (status.code(), p.stderr().trim_end().to_string())
}

#[test]
fn a_zero_duration_is_refused_naming_the_flag_or_its_variable_not_the_default_shape() {
    let says = "\"0s\" sends no message: give a duration above 0 (e.g. 10s), or none to run until --count \
                or a stop (see --help)";
    assert_eq!(
        refused(&["--queue", "sqlite:q.db", "--duration", "0s"], &[]),
        (Some(2), format!("error: --duration: {says}"))
    );
    assert_eq!(
        refused(&["--queue", "sqlite:q.db"], &[("PRODUCER_DURATION", "0s")]),
        (
            Some(2),
            format!("error: --duration (from PRODUCER_DURATION): {says}")
        )
    );
    // An explicit shape that sends nothing within a positive duration still says so.
    let (code, err) = refused(
        &[
            "--queue",
            "sqlite:q.db",
            "--shape",
            "burst:5@10s",
            "--duration",
            "5s",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("error: --shape burst:5@10s sends no message in 5s"),
        "{err}"
    );
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable_unless_the_flag_was_given() {
    let says = "must be a number of messages per second, 0 or more";
    assert_eq!(
        refused(
            &["--queue", "sqlite:q.db", "--count", "1"],
            &[("PRODUCER_RATE", "-3")]
        ),
        (
            Some(2),
            format!("error: --rate (from PRODUCER_RATE): {says} (got -3) (see --help)")
        )
    );
    assert_eq!(
        refused(
            &["--queue", "sqlite:q.db", "--count", "1", "--rate=-4"],
            &[("PRODUCER_RATE", "-3")]
        ),
        (
            Some(2),
            format!("error: --rate: {says} (got -4) (see --help)")
        )
    );
}

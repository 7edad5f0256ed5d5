//! A consumer whose queue never answers (nsqd down): its log is not flooded by retries, it waits the back-off
//! it announces, a run with --count ends with a clear error after --give-up-after, and a run without one keeps
//! retrying (a scaled consumer must outlive a broker restart).

use std::time::{Duration, Instant};

use testkit::{Proc, command, u};

/// Nothing listens on port 1 of the loopback: every connection is refused at once.
const DEAD_NSQD: &str = "nsq://127.0.0.1:1/t/c";

#[test]
fn a_counted_run_against_a_dead_queue_gives_up_with_one_clear_error() {
    let mut cmd = command("consumer");
    cmd.env("RUST_LOG", "info").args([
        "--queue",
        DEAD_NSQD,
        "--count",
        "1",
        "--give-up-after",
        "3s",
    ]);
    let started = Instant::now();
    let mut p = Proc::spawn("consumer", cmd);
    let status = p.wait(Duration::from_secs(20));
    let took = started.elapsed();
    let err = p.stderr();
    // Before the fix it retried for ever: the wait above ran out and the status was not 1.
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "gave up after {took:?}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("answered nothing for") && errors[0].contains("--give-up-after"),
        "{err}"
    );
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
    let warns = err.lines().filter(|l| l.contains("WARN")).count();
    assert_eq!(warns, 1, "{err}");
    let s = p.summary().expect("a summary even when giving up");
    assert_eq!(u(&s, "received"), 0);
    assert!(u(&s, "errors") >= 2, "it did retry: {s}");
}

#[test]
fn an_endless_run_against_a_dead_queue_keeps_retrying_with_a_quiet_log() {
    let mut cmd = command("consumer");
    // No --give-up-after either, so that the same test runs against a consumer from before that flag.
    cmd.env("RUST_LOG", "info").args(["--queue", DEAD_NSQD]);
    let mut p = Proc::spawn("consumer", cmd);
    std::thread::sleep(Duration::from_secs(12));
    assert!(p.running(), "it stopped: {}", p.stderr());
    p.signal(libc::SIGTERM);
    let status = p.wait(Duration::from_secs(10));
    let err = p.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    // Before the fix: a WARN line per attempt, and an attempt every stats tick (1 s), ~12 lines.
    // Now: the first failure, then a summary every 10 s.
    let warns = err.lines().filter(|l| l.contains("WARN")).count();
    assert!((1..=3).contains(&warns), "{warns} WARN lines:\n{err}");
    let s = p.summary().expect("a summary");
    // Back-off grows to 2.5-5 s: 100 ms doubling reaches it in ~6 attempts, then 2-3 more in 12 s. An
    // attempt per second (the stats tick cutting the back-off short) would be 15 or more.
    let errors = u(&s, "errors");
    assert!((3..=12).contains(&errors), "{errors} attempts in 12 s: {s}");
}

//! Bad input to the real `remainder` binary: a usage error (exit 2) that says what was wrong, never a panic and
//! never a stats line.

use std::time::Duration;

use testkit::Proc;

/// Runs the remainder with `args` (and `env`), expecting it to refuse them at once; returns its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = testkit::command("remainder");
    cmd.env_remove("REMAINDER_THREADS")
        .env_remove("STATS_INTERVAL")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn("remainder", cmd);
    let status = p.wait(Duration::from_secs(5));
    let stderr = p.stderr();
    assert_eq!(
        status.code(),
        Some(2),
        "{args:?} {env:?}: exit {status}; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(
        p.lines().is_empty(),
        "{args:?}: no stats on a usage error: {:?}",
        p.lines()
    );
    stderr
}

#[test]
fn zero_threads_is_a_usage_error() {
    let e = refused(&["--threads", "0"], &[]);
    assert!(
        e.contains("--threads") && e.contains("from 1 to 4096 (got 0)"),
        "{e}"
    );
}

#[test]
fn a_bad_thread_count_in_the_environment_is_a_usage_error() {
    let e = refused(&[], &[("REMAINDER_THREADS", "lots")]);
    assert!(
        e.contains("\"lots\"") && e.contains("from 1 to 4096"),
        "{e}"
    );
}

#[test]
fn an_unknown_mode_lists_the_modes() {
    let e = refused(&["--mode", "foo"], &[]);
    assert!(
        e.contains("\"foo\"") && e.contains("cpu") && e.contains("sleep"),
        "{e}"
    );
}

#[test]
fn a_bad_duration_states_the_syntax() {
    let e = refused(&["--duration", "abc"], &[]);
    assert!(
        e.contains("--duration") && e.contains("expected a number with a unit"),
        "{e}"
    );
}

#[test]
fn a_zero_stats_interval_is_a_usage_error() {
    let e = refused(&["--stats-interval", "0s"], &[]);
    assert!(
        e.contains("--stats-interval") && e.contains("must be more than 0"),
        "{e}"
    );
}

#[test]
fn help_documents_the_defaults() {
    let mut cmd = testkit::command("remainder");
    cmd.arg("--help");
    let mut p = Proc::spawn("remainder", cmd);
    assert!(p.wait(Duration::from_secs(5)).success());
    let help = p.lines().join("\n");
    for needle in [
        "--threads",
        "REMAINDER_THREADS",
        "--mode",
        "[default: cpu]",
        "--duration",
        "--stats-interval",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

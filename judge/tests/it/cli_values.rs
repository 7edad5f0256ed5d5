//! Values and side effects on the command line, checked on the real binaries: numbers out of range (negative
//! ones included) are one line naming the flag and its range, and a run that cannot start leaves nothing
//! behind and says what to check.

use crate::cli_contract::{assert_usage_errors, run_in};

/// Negative numbers reach the flag's own check (not clap's "unexpected argument '-1'"), and zero where a count
/// must be 1 or more: each is one line naming the flag and its range.
#[test]
fn numbers_out_of_range_say_the_flag_and_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        // Negative numbers reach the flag's own check (not clap's "unexpected argument '-1'"), and zero where
        // a count must be 1 or more: each says the range.
        (
            "producer",
            &["--queue", "sqlite:q.db", "--count", "-1"],
            &["--count", "1 or more (got -1)"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--batch", "0"],
            &["--batch", "from 1 to 1000000 (got 0)"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--concurrency", "-2"],
            &["--concurrency", "from 1 to"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--producers", "0"],
            &["--producers", "from 1 to"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--size", "-1"],
            &["--size", "from 0 to 67108864 (got -1)"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--seed", "-1"],
            &["--seed", "0 or more"],
        ),
        (
            "consumer",
            &["--queue", "sqlite:q.db", "--max-in-flight", "0"],
            &["--max-in-flight", "from 1 to 1000000 (got 0)"],
        ),
        (
            "consumer",
            &["--queue", "sqlite:q.db", "--max-in-flight", "-3"],
            &["--max-in-flight", "from 1 to 1000000 (got -3)"],
        ),
        (
            "consumer",
            &["--queue", "sqlite:q.db", "--batch", "0"],
            &["--batch", "from 1 to"],
        ),
        (
            "consumer",
            &["--queue", "sqlite:q.db", "--count", "0"],
            &["--count", "1 or more (got 0)"],
        ),
        (
            "consumer",
            &["--queue", "sqlite:q.db", "--max-deliveries", "-1"],
            &["--max-deliveries", "from 1 to 65535"],
        ),
        ("demo", &["--rate", "-1"], &["--rate", "0 or more"]),
        (
            "demo",
            &["--max-in-flight", "0"],
            &["--max-in-flight", "from 1 to"],
        ),
        (
            "demo",
            &["--remainder-threads", "-1"],
            &["--remainder-threads", "from 1 to 4096"],
        ),
        (
            "demo",
            &["--consumers", "-1"],
            &["--consumers", "from 0 to 64"],
        ),
        (
            "remainder",
            &["--threads", "0"],
            &["--threads", "from 1 to 4096"],
        ),
        (
            "scorecard",
            &[
                "watch",
                "--queue",
                "sqlite:q.db",
                "--consumers",
                "telemetry",
                "--consumer-slots",
                "0",
            ],
            &["--consumer-slots", "from 1 to"],
        ),
        (
            "scorecard",
            &[
                "watch",
                "--queue",
                "sqlite:q.db",
                "--consumers",
                "telemetry",
                "--target",
                "-4",
            ],
            &["--target", "1 or more (got -4)"],
        ),
        (
            "marathon-install",
            &["--dry-run", "--consumer-instances", "-1"],
            &["--consumer-instances", "from 0 to"],
        ),
        (
            "marathon-install",
            &["--dry-run", "--consumer-cpus", "-1"],
            &["--consumer-cpus", "more than 0 (got -1)"],
        ),
        (
            "marathon-install",
            &["--dry-run", "--engine", "--target-queue-length", "0"],
            &["--target-queue-length", "from 1 to"],
        ),
        (
            "audit",
            &["--queue", "sqlite:q.db", "--run", "-1"],
            &["--run", "1 to 16 hex digits"],
        ),
    ];
    for (err, (bin, args, _)) in assert_usage_errors(dir.path(), cases).iter().zip(cases) {
        assert!(
            !err.contains("unexpected argument"),
            "{bin} {args:?}: {err}"
        );
    }
}

/// A broker that is down: the one error line says what to check, on Redis as on NATS and RabbitMQ, for the
/// roles that ran (and wrote their stats) until they gave up.
#[test]
fn a_redis_server_that_is_down_is_named_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    for bin in ["producer", "consumer"] {
        let (code, _, err) = run_in(
            dir.path(),
            bin,
            &[
                "--queue",
                "redis://127.0.0.1:1/q",
                "--count",
                "1",
                "--give-up-after",
                "1s",
            ],
        );
        assert_eq!(code, Some(1), "{bin}: {err}");
        let error: Vec<_> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(error.len(), 1, "{bin}: {err}");
        assert!(
            error[0].contains("redis://127.0.0.1:1/q")
                && error[0].ends_with("(is redis-server running there?)"),
            "{bin}: {err}"
        );
    }
}

/// A --ledger that cannot be written stops the consumer before it opens the queue: bad usage, and no queue
/// file is left behind.
#[test]
fn a_consumer_ledger_that_cannot_be_written_leaves_no_queue_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_in(
        dir.path(),
        "consumer",
        &["--queue", "sqlite:q.db", "--ledger", "no/such/dir/c.ledger"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("cannot open ledger no/such/dir/c.ledger"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

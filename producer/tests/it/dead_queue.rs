//! A producer whose queue never answers (nsqd down): its log is not flooded by retries, and a run with an end
//! (--count, --duration) ends with a clear error after --give-up-after instead of retrying for ever.

use std::time::{Duration, Instant};

use testkit::{Proc, command, u};

/// Nothing listens on ports 1 and 2 of the loopback: every connection is refused at once.
const DEAD_NSQD: &str = "nsq://127.0.0.1:1/t/c?http=127.0.0.1:2";

#[test]
fn a_bounded_run_against_a_dead_queue_gives_up_with_a_clear_error_and_a_quiet_log() {
    for limit in [&["--count", "1"][..], &["--duration", "2s"][..]] {
        let mut cmd = command("producer");
        cmd.env("RUST_LOG", "info")
            .args([
                "--queue",
                DEAD_NSQD,
                "--rate",
                "10",
                "--give-up-after",
                "4s",
            ])
            .args(limit);
        let started = Instant::now();
        let mut p = Proc::spawn("producer", cmd);
        let status = p.wait(Duration::from_secs(20));
        let took = started.elapsed();
        let err = p.stderr();
        assert_eq!(status.code(), Some(1), "{limit:?}: {err}");
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(10),
            "{limit:?}: gave up after {took:?}"
        );
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ")
                && last.contains("confirmed nothing for")
                && last.contains("--give-up-after"),
            "{limit:?}: {err}"
        );
        // Dozens of retries in 4 s; the log reports the first failure once (the next summary is due at 10 s).
        let warns = err.lines().filter(|l| l.contains("WARN")).count();
        assert!(
            (1..=2).contains(&warns),
            "{limit:?}: {warns} WARN lines:\n{err}"
        );
        let s = p.summary().expect("a summary even when giving up");
        assert_eq!(u(&s, "sent"), 0);
        assert!(u(&s, "errors") > 3, "it did retry: {s}");
        assert_eq!(u(&s, "unconfirmed"), u(&s, "seq_end"), "{s}");
    }
}

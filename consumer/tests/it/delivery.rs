//! Loss and duplicate accounting across real producer and consumer processes sharing one SQLite queue.
//!
//! Every test checks the ledgers with its own tally (testkit::tally), independent of the audit command.

use std::time::{Duration, Instant};

use testkit::{Proc, command, delivery, depth, eventually, ledger_entries, sqlite_url, tally, u};

const ROLES: delivery::Roles = delivery::PLAIN;

/// Waits until every message is acked, then stops the consumers with SIGTERM and checks they exit 0.
fn drain_and_stop(url: &str, consumers: &mut [Proc], limit: Duration) {
    assert!(
        eventually(limit, || depth(url).total() == 0),
        "queue did not drain: {:?}",
        depth(url)
    );
    testkit::stop_gracefully(consumers);
}

#[test]
fn one_producer_three_consumers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut consumers = testkit::spawn_with_ledgers(3, dir.path(), |ledger| {
        ROLES.consumer(&url, ledger, &["--work", "none", "--max-in-flight", "100"])
    });
    let mut p = Proc::spawn("producer", ROLES.producer(&url, 100_000, 0));
    assert!(p.wait(Duration::from_secs(60)).success(), "{}", p.stderr());
    let sent = u(&p.summary().expect("producer summary"), "sent");
    assert_eq!(sent, 100_000);
    drain_and_stop(&url, &mut consumers, Duration::from_secs(60));

    let entries = ledger_entries(dir.path());
    let (consumed, lost, dups, unexpected) = tally(&entries, sent);
    assert_eq!((consumed, lost, dups, unexpected), (100_000, 0, 0, 0));
    let acked: u64 = consumers
        .iter()
        .map(|c| u(&c.summary().expect("consumer summary"), "acked"))
        .sum();
    assert_eq!(acked, 100_000, "acked counts agree with the ledgers");
    let busy = consumers
        .iter()
        .filter(|c| u(&c.summary().unwrap(), "acked") > 0)
        .count();
    assert!(
        busy >= 2,
        "the consumers shared the work ({busy} of 3 acked anything)"
    );
}

#[test]
fn a_consumer_killed_midway_loses_nothing_and_redeliveries_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    // Short lease so the killed consumer's messages come back quickly; slow enough work that it holds many.
    let load = delivery::KillLoad {
        count: 100_000,
        rate: 0,
        consumer_args: &[
            "--work",
            "sleep:2ms",
            "--max-in-flight",
            "50",
            "--lease",
            "1s",
        ],
        acked_before_kill: 1000,
        duplicates_at_most: Some(50),
    };
    let url = sqlite_url(dir.path());
    delivery::a_consumer_killed_midway_loses_nothing(&delivery::Backend::sqlite(&url), &load);
}

#[test]
fn more_in_flight_than_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    delivery::more_in_flight_than_a_batch(&delivery::Backend::sqlite(&url));
}

#[test]
fn sigterm_finishes_held_messages_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    delivery::sigterm_finishes_held_messages(&delivery::Backend::sqlite(&url));
}

#[test]
fn sigterm_releases_what_it_cannot_finish_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    delivery::sigterm_releases_what_it_cannot_finish(&delivery::Backend::sqlite(&url));
}

#[test]
fn foreign_bodies_are_counted_and_acked_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let foreign: Vec<Vec<u8>> = vec![
        b"6fa459ea-ee8a-3ca4-894e-db77e160355e".to_vec(), // what the original Ruby producer sent
        vec![0xff, 0x00, 0xfe, 0x01],
        Vec::new(),
        b"mw2 from a future version".to_vec(),
        b"mw1 0123456789abcdef not-a-number".to_vec(),
    ];
    testkit::publish_raw(&url, foreign);
    let mut p = Proc::spawn("producer", ROLES.producer(&url, 10, 0));
    assert!(p.wait(Duration::from_secs(20)).success());
    let mut c = Proc::spawn(
        "consumer",
        ROLES.consumer(
            &url,
            &dir.path().join("c.ledger"),
            &["--work", "none", "--count", "15"],
        ),
    );
    assert!(c.wait(Duration::from_secs(20)).success(), "{}", c.stderr());
    let s = c.summary().unwrap();
    assert_eq!(
        (u(&s, "received"), u(&s, "acked"), u(&s, "foreign")),
        (15, 15, 5)
    );
    assert!(!c.stderr().contains("panicked"));
    assert_eq!(
        tally(&ledger_entries(dir.path()), 10),
        (10, 0, 0, 0),
        "only envelopes reach the ledger"
    );
    assert_eq!(depth(&url).total(), 0);
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let not_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_db,
        "plain text, certainly not SQLite, and long enough to fill a header page....",
    )
    .unwrap();
    let not_db_url = format!("sqlite:{}", not_db.display());
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["--queue", "kafka://broker/topic"],
            2,
            "unknown scheme \"kafka\"",
        ),
        (&["--queue", &not_db_url], 1, "not a SQLite database"),
        (
            &["--queue", "sqlite:q.db", "--lease", "ten"],
            2,
            "expected a number with a unit",
        ),
        (
            &["--queue", "sqlite:q.db", "--work", "nap:1s"],
            2,
            "unknown kind \"nap\"",
        ),
        (
            &["--queue", "sqlite:q.db", "--max-in-flight", "0"],
            2,
            "--max-in-flight: must be from 1 to 1000000 (got 0)",
        ),
        (&[], 2, "no queue given"),
    ];
    for (args, code, needle) in cases {
        let mut cmd = command("consumer");
        cmd.current_dir(dir.path()).args(args);
        let mut c = Proc::spawn("consumer", cmd);
        let status = c.wait(Duration::from_secs(10));
        let err = c.stderr();
        assert_eq!(status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Every role names every backend of this build (Azure was missing): the `--queue` help, the error for an
/// unknown scheme and the "no queue given" error all come from the queue registry.
#[test]
fn every_role_lists_every_scheme_of_this_build() {
    let dir = tempfile::tempdir().unwrap();
    let forms = ["sqlite:PATH", "nsq://HOST", "azure://ACCOUNT/QUEUE"];
    let cases: [(&[&str], i32, &[&str]); 4] = [
        (&["-h"], 0, &forms),
        (&["--help"], 0, &forms),
        (
            &["--queue", "kafka://broker/topic"],
            2,
            &["the schemes this build knows are sqlite, nsq, azure, redis, nats and amqp"],
        ),
        (&[], 2, &forms),
    ];
    for role in ["producer", "consumer"] {
        for (args, code, needles) in cases {
            let mut cmd = command(role);
            cmd.current_dir(dir.path()).args(args);
            let mut p = Proc::spawn(role, cmd);
            let status = p.wait(Duration::from_secs(10));
            let out = format!("{}\n{}", p.lines().join("\n"), p.stderr());
            assert_eq!(status.code(), Some(code), "{role} {args:?}: {out}");
            for needle in needles {
                assert!(
                    out.contains(needle),
                    "{role} {args:?} should name {needle}: {out}"
                );
            }
        }
    }
}

#[test]
fn legacy_sleep_variable_sets_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut p = Proc::spawn("producer", ROLES.producer(&url, 4, 0));
    assert!(p.wait(Duration::from_secs(20)).success());
    let mut cmd = ROLES.consumer(
        &url,
        &dir.path().join("c.ledger"),
        &["--count", "4", "--max-in-flight", "1"],
    );
    cmd.env("MSS_CONSUMER_SLEEP_MS", "150");
    let started = Instant::now();
    let mut c = Proc::spawn("consumer", cmd);
    assert!(c.wait(Duration::from_secs(20)).success(), "{}", c.stderr());
    // Four messages one at a time at 150 ms each: at least 600 ms of work.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "took {:?}",
        started.elapsed()
    );
    let s = c.summary().unwrap();
    assert_eq!(u(&s, "acked"), 4);
    // End-to-end latency runs to the ack, so it includes the 150 ms of work.
    assert!(u(&s, "e2e_p50_us") >= 150_000, "{s}");
}

/// A ledger that fails mid-run (`/dev/full`: it opens, every write fails) stops the consumer at once: what it
/// holds can never be recorded, so it is not acked and is given back now, not after the whole
/// `--drain-timeout` spent waiting for acks that cannot come. Nothing is lost: every message is back in the
/// queue, none leased.
#[test]
fn a_ledger_that_fails_gives_back_what_is_held_at_once_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut p = Proc::spawn("producer", ROLES.producer(&url, 500, 0));
    assert!(p.wait(Duration::from_secs(20)).success());
    let started = Instant::now();
    let mut c = Proc::spawn(
        "consumer",
        ROLES.consumer(
            &url,
            std::path::Path::new("/dev/full"),
            &[
                "--work",
                "none",
                "--max-in-flight",
                "50",
                "--drain-timeout",
                "120s",
            ],
        ),
    );
    let status = c.wait(Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "{}", c.stderr());
    assert!(
        c.stderr()
            .contains("acked messages could no longer be recorded")
            && c.stderr().contains("No space left on device"),
        "{}",
        c.stderr()
    );
    // Well inside the 120 s drain timeout: it did not wait for acks that cannot be recorded.
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
    let s = c.summary().unwrap();
    assert_eq!(u(&s, "acked"), 0, "{s}");
    assert_eq!(u(&s, "unreleased"), 0, "{s}");
    assert!(u(&s, "released") >= 1, "{s}");
    let d = depth(&url);
    assert_eq!(
        (d.visible, d.in_flight),
        (500, Some(0)),
        "every message is back"
    );
}

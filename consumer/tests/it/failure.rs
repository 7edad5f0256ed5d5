//! The consumer's failure model and busy time, on real producer, consumer and audit processes: SQLite, the fake
//! nsqd, a real Azurite and a real redis-server.
//!
//! - `--fail-rate 1 --max-deliveries 3`: every message is delivered exactly three times (it fails on the first
//!   two and is given back; it fails on the third, its last allowed delivery, and is set aside), ends as poison
//!   in the ledger, and the audit loses nothing.
//! - `--fail-rate 0.2`: every message is eventually consumed exactly once, and the counters add up:
//!   `received = acked + lease_lost + failed + released + unreleased + in_flight` (consumer/src/consume.rs).
//! - A message that arrives already past its limit (earlier deliveries died with their consumer) is set aside
//!   without being worked on.
//! - `busy_s` counts work time over the slots, work still running included.
//!
//! Every test checks the ledgers itself (read with their outcomes) and runs the real `audit` binary on them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::azurite::Azurite;
use testkit::delivery::{self, Backend, assert_counts_add_up, audit, ledger_outcomes, sum};
use testkit::fake_nsqd::FakeNsqd;
use testkit::redis::RedisServer;
use testkit::{Proc, command, sqlite_url, u};
use workload::ledger::Outcome;

/// Publishes `count` messages with the real producer; returns its stats file (for the audit) and `sent`.
fn produce(b: &Backend, dir: &Path, count: u64) -> (PathBuf, u64) {
    let mut p = Proc::spawn("producer", b.producer(count, 0));
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
    let sent = u(&p.summary().expect("producer summary"), "sent");
    assert_eq!(sent, count);
    (delivery::save_stats(&p, &dir.join("producer.jsonl")), sent)
}

#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::sqlite(&sqlite_url(dir.path()));
    testkit::publish_raw(&b.url, foreign_bodies(3));
    delivery::every_message_ends_as_poison(&b, 300, "100ms", 3);
}

#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_nsq() {
    let fake = FakeNsqd::start();
    let url = fake.url("t", "c");
    delivery::every_message_ends_as_poison(&Backend::nsq(&fake, &url), 300, "100ms", 0);
    // nsqd's own counters agree: two REQs per message, no timeouts.
    assert_eq!(fake.channel_counts("t", "c"), (0, 600));
}

/// Redis: a release with a delay stays pending with its idle time set, then an XAUTOCLAIM raises the count;
/// foreign entries (no `body` field) are acked at their first delivery.
#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_redis() {
    let server = RedisServer::start();
    let b = Backend::redis(&server, "poison");
    testkit::publish_raw(&b.url, foreign_bodies(3));
    delivery::every_message_ends_as_poison(&b, 300, "100ms", 3);
    // The server's own pending list agrees: nothing left, everything trimmed.
    assert_eq!(server.figures("poison", "poison"), (0, 0, Some(0)));
}

#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_azurite() {
    let az = Azurite::start();
    // Azure visibility timeouts are whole seconds: a 1 s delay each time.
    delivery::every_message_ends_as_poison(&Backend::azure(&az, "poison"), 60, "1s", 0);
}

/// `--fail-rate 0.2` on two consumers: everything is consumed exactly once, some deliveries failed on the way,
/// and the counters add up.
fn a_fifth_fail_and_everything_is_consumed_once(b: &Backend, dir: &Path, n: u64) {
    let (producer, sent) = produce(b, dir, n);
    let args = [
        "--fail-rate",
        "0.2",
        // 0.2^20 per message: nothing is poisoned in practice.
        "--max-deliveries",
        "20",
        "--fail-delay",
        "50ms",
        "--work",
        "sleep:1ms",
        "--max-in-flight",
        "20",
        "--batch",
        "20",
    ];
    let mut cs = b.consumers(dir, 2, &args);
    b.drain_and_stop(&mut cs, Duration::from_secs(60));

    let (received, failed) = (sum(&cs, "received"), sum(&cs, "failed"));
    assert!(failed > 0, "some deliveries failed");
    // Each delivery fails with probability 0.2: about a fifth of them did.
    let share = failed as f64 / received as f64;
    assert!((0.15..=0.25).contains(&share), "{failed} of {received}");
    assert_eq!(sum(&cs, "poison"), 0);
    assert_eq!(sum(&cs, "acked"), sent, "every message acked once");
    assert_eq!(
        received,
        sent + failed,
        "each failure costs one more delivery"
    );
    assert_eq!(sum(&cs, "redelivered"), failed);
    assert_eq!(
        (
            sum(&cs, "lease_lost"),
            sum(&cs, "released"),
            sum(&cs, "unreleased")
        ),
        (0, 0, 0)
    );
    assert_counts_add_up(&cs);
    assert!(
        cs.iter().all(|c| u(&c.summary().unwrap(), "failed") > 0),
        "both consumers ran the failure model"
    );

    let lines = ledger_outcomes(dir);
    assert!(lines.iter().all(|(_, o)| *o == Outcome::Consumed));
    let (code, a) = audit(&producer, dir);
    assert_eq!(code, 0, "{a}");
    assert_eq!(
        (
            u(&a, "consumed"),
            u(&a, "lost"),
            u(&a, "duplicates"),
            u(&a, "poison")
        ),
        (sent, 0, 0, 0),
        "{a}"
    );
}

#[test]
fn fail_rate_0_2_two_consumers_consume_everything_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::sqlite(&sqlite_url(dir.path()));
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).unwrap();
    a_fifth_fail_and_everything_is_consumed_once(&b, &ledgers, 2_000);
}

#[test]
fn fail_rate_0_2_two_consumers_consume_everything_once_on_nsq() {
    let fake = FakeNsqd::start();
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url("t", "c");
    a_fifth_fail_and_everything_is_consumed_once(&Backend::nsq(&fake, &url), dir.path(), 2_000);
}

/// Bodies that are not our envelopes, published before a run.
fn foreign_bodies(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("not ours {i}").into_bytes())
        .collect()
}

/// Receives and gives back one message `times` times without working on it, as consumers that died would.
fn bump_deliveries(url: &str, times: usize) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let q = queues::open(url).await.unwrap();
            for i in 0..times {
                let got = q
                    .receive(1, Duration::from_secs(30), Duration::from_secs(1))
                    .await
                    .unwrap();
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].deliveries as usize, i + 1);
                let receipts = got.into_iter().map(|d| d.receipt).collect();
                assert_eq!(q.release(receipts, Duration::ZERO).await.unwrap(), 1);
            }
        });
}

#[test]
fn a_message_already_past_its_limit_is_set_aside_without_work() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::sqlite(&sqlite_url(dir.path()));
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).unwrap();
    let (producer, _) = produce(&b, &ledgers, 1);
    bump_deliveries(&b.url, 2);
    // Its third delivery is over --max-deliveries 2: poison at once, not ten minutes of work.
    let started = Instant::now();
    let mut cs = b.consumers(
        &ledgers,
        1,
        &[
            "--max-deliveries",
            "2",
            "--work",
            "sleep:10m",
            "--count",
            "1",
        ],
    );
    assert!(
        cs[0].wait(Duration::from_secs(20)).success(),
        "{}",
        cs[0].stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = cs[0].summary().unwrap();
    assert_eq!(
        (
            u(&s, "received"),
            u(&s, "poison"),
            u(&s, "failed"),
            u(&s, "acked")
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(s["busy_s"].as_f64(), Some(0.0), "no work was done: {s}");
    assert!(
        cs[0].stderr().contains("poison message"),
        "logged: {}",
        cs[0].stderr()
    );
    let lines = ledger_outcomes(&ledgers);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].1, Outcome::Poison { deliveries: 3 });
    let (code, a) = audit(&producer, &ledgers);
    assert_eq!((code, u(&a, "lost"), u(&a, "poison")), (0, 0, 1), "{a}");
}

#[test]
fn busy_time_is_work_time_over_the_slots_running_work_included() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::sqlite(&sqlite_url(dir.path()));
    produce(&b, dir.path(), 10);
    let mut cs = b.consumers(
        dir.path(),
        1,
        &[
            "--work",
            "sleep:400ms",
            "--max-in-flight",
            "2",
            "--count",
            "10",
        ],
    );
    // Before the first message is done, the running work already shows.
    let early = cs[0].wait_for_line(Duration::from_secs(10), |v| {
        v["kind"] == "interval" && v["elapsed_s"].as_f64().unwrap_or(0.0) > 0.3
    });
    if u(&early, "acked") == 0 {
        assert!(early["busy_s"].as_f64().unwrap() > 0.1, "{early}");
    }
    assert!(
        cs[0].wait(Duration::from_secs(20)).success(),
        "{}",
        cs[0].stderr()
    );
    let lines = cs[0].stats();
    let s = lines.last().unwrap();
    assert_eq!(s["kind"], "summary");
    assert_eq!(u(s, "slots"), 2);
    // Ten messages of 400 ms on two slots: 2 s of busy time, plus what it takes to notice each finished.
    let busy = s["busy_s"].as_f64().unwrap();
    assert!((2.0..2.3).contains(&busy), "busy_s {busy}");
    // Cumulative: never goes down, and never faster than one second per second.
    let points: Vec<(f64, f64)> = lines
        .iter()
        .map(|v| {
            (
                v["elapsed_s"].as_f64().unwrap(),
                v["busy_s"].as_f64().unwrap(),
            )
        })
        .collect();
    for w in points.windows(2) {
        let ((t0, b0), (t1, b1)) = (w[0], w[1]);
        assert!(b1 >= b0, "{points:?}");
        assert!(b1 - b0 <= (t1 - t0) + 0.01, "{points:?}");
    }
    // Nearly saturated: both slots were kept busy for most of the run.
    let elapsed = s["elapsed_s"].as_f64().unwrap();
    assert!(busy / elapsed > 0.7, "utilisation {}", busy / elapsed);
}

#[test]
fn bad_failure_model_flags_are_usage_errors() {
    /// Arguments, environment, and what stderr must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        (&["--fail-rate", "-0.1"], &[], "not a probability"),
        (&["--fail-rate=-0.1"], &[], "not a probability"),
        (&["--fail-rate", "1.5"], &[], "not a probability"),
        (&["--fail-rate", "nan"], &[], "not a probability"),
        (&[], &[("CONSUMER_FAIL_RATE", "NaN")], "not a probability"),
        (&["--max-deliveries", "0"], &[], "--max-deliveries"),
        (&["--fail-delay", "soon"], &[], "--fail-delay"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (args, env, needle) in cases {
        let mut cmd = command("consumer");
        cmd.current_dir(dir.path())
            .args(["--queue", "sqlite:q.db"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut c = Proc::spawn("consumer", cmd);
        let status = c.wait(Duration::from_secs(10));
        let err = c.stderr();
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(needle), "{args:?} {env:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            !dir.path().join("q.db").exists(),
            "nothing opened on bad usage"
        );
    }
}

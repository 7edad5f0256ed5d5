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

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::azurite::{self, Azurite};
use testkit::fake_nsqd::FakeNsqd;
use testkit::redis::RedisServer;
use testkit::{Proc, command, eventually, sqlite_url, u};
use workload::ledger::{Entry, Outcome};

/// A queue under test: its URL, how to tell it is empty, and what its processes need in their environment.
struct Backend<'a> {
    url: String,
    /// True once nothing is left on the queue: not visible, leased, nor waiting out a delay.
    drained: Box<dyn Fn() -> bool + 'a>,
    azure: bool,
}

impl Backend<'_> {
    fn sqlite(dir: &Path) -> Backend<'static> {
        let url = sqlite_url(dir);
        let u2 = url.clone();
        Backend {
            url,
            drained: Box::new(move || testkit::depth(&u2).total() == 0),
            azure: false,
        }
    }

    fn nsq(fake: &FakeNsqd) -> Backend<'_> {
        Backend {
            url: fake.url("t", "c"),
            drained: Box::new(move || fake.channel_depth("t", "c") == (0, 0, 0)),
            azure: false,
        }
    }

    fn azure(az: &Azurite, queue: &str) -> Backend<'static> {
        let url = az.url(queue, "");
        let u2 = url.clone();
        Backend {
            url,
            drained: Box::new(move || azurite::depth(&u2).total() == 0),
            azure: true,
        }
    }

    fn redis<'a>(server: &'a RedisServer, stream: &'a str) -> Backend<'a> {
        Backend {
            url: server.url(stream, ""),
            drained: Box::new(move || {
                let (len, pending, lag) = server.figures(stream, stream);
                (len, pending, lag) == (0, 0, Some(0))
            }),
            azure: false,
        }
    }

    fn command(&self, name: &str) -> Command {
        let mut cmd = command(name);
        if self.azure {
            azurite::with_key(&mut cmd);
        }
        cmd.args(["--queue", &self.url]);
        cmd
    }

    /// Publishes `count` messages with the real producer; returns its stats file (for the audit) and `sent`.
    fn produce(&self, dir: &Path, count: u64) -> (std::path::PathBuf, u64) {
        let mut cmd = self.command("producer");
        cmd.args(["--count", &count.to_string(), "--rate", "0"])
            .args(["--batch", "50", "--size", "100", "--stats-interval", "1s"]);
        let mut p = Proc::spawn("producer", cmd);
        assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
        let sent = u(&p.summary().expect("producer summary"), "sent");
        assert_eq!(sent, count);
        let path = dir.join("producer.jsonl");
        std::fs::write(&path, p.lines().join("\n") + "\n").unwrap();
        (path, sent)
    }

    /// Starts `n` consumers, each with its own ledger in `dir`.
    fn consumers(&self, dir: &Path, n: usize, extra: &[&str]) -> Vec<Proc> {
        testkit::spawn_with_ledgers(n, dir, |ledger| {
            let mut cmd = self.command("consumer");
            cmd.arg("--ledger")
                .arg(ledger)
                .args(["--stats-interval", "100ms"])
                .args(extra);
            cmd
        })
    }

    /// Waits (bounded) until the queue is empty, then stops the consumers gracefully.
    fn drain_and_stop(&self, consumers: &mut [Proc], limit: Duration) {
        let started = Instant::now();
        assert!(
            eventually(limit, || (self.drained)()),
            "the queue did not drain within {limit:?}"
        );
        eprintln!("drained in {:?}", started.elapsed());
        testkit::stop_gracefully(consumers);
    }
}

/// Summaries' counters summed over consumers.
fn sum(consumers: &[Proc], field: &str) -> u64 {
    consumers
        .iter()
        .map(|c| u(&c.summary().expect("consumer summary"), field))
        .sum()
}

/// The identity every stats line keeps (see consumer/src/consume.rs), checked on each consumer's summary.
fn assert_counts_add_up(consumers: &[Proc]) {
    for c in consumers {
        let s = c.summary().expect("consumer summary");
        let settled = [
            "acked",
            "lease_lost",
            "failed",
            "released",
            "unreleased",
            "in_flight",
        ]
        .iter()
        .map(|f| u(&s, f))
        .sum::<u64>();
        assert_eq!(u(&s, "received"), settled, "{}: {s}", c.name);
        assert!(
            u(&s, "poison") + u(&s, "foreign") <= u(&s, "acked") + u(&s, "lease_lost"),
            "{s}"
        );
    }
}

/// Every ledger line in `dir` with its outcome.
fn ledger_outcomes(dir: &Path) -> Vec<(Entry, Outcome)> {
    let mut all = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "ledger") {
            let report = workload::ledger::read_outcomes(&path, |e, o| all.push((e, o))).unwrap();
            assert_eq!(report.malformed, 0, "{}", path.display());
        }
    }
    all
}

/// Runs the real `audit` on the producer's stats and the ledgers; returns its exit code and JSON line.
fn audit(producer: &Path, ledgers: &Path) -> (i32, Value) {
    let mut cmd = command("audit");
    cmd.arg("--producer")
        .arg(producer)
        .arg("--ledger")
        .arg(ledgers);
    let mut a = Proc::spawn("audit", cmd);
    let status = a.wait(Duration::from_secs(20));
    let line = a
        .summary()
        .unwrap_or_else(|| panic!("no audit line: {}", a.stderr()));
    (status.code().unwrap_or(-1), line)
}

/// `--fail-rate 1 --max-deliveries 3` on two consumers: every message delivered exactly three times, every one
/// poison, nothing lost, and the run ends. `foreign` bodies published first are acked at their first delivery:
/// the failure model applies to work, and they get none.
fn every_message_ends_as_poison(b: &Backend, dir: &Path, n: u64, fail_delay: &str, foreign: u64) {
    if foreign > 0 {
        testkit::publish_raw(
            &b.url,
            (0..foreign)
                .map(|i| format!("not ours {i}").into_bytes())
                .collect(),
        );
    }
    let (producer, sent) = b.produce(dir, n);
    let args = [
        "--fail-rate",
        "1",
        "--max-deliveries",
        "3",
        "--fail-delay",
        fail_delay,
        "--work",
        "none",
        "--max-in-flight",
        "20",
        "--batch",
        "20",
    ];
    let mut cs = b.consumers(dir, 2, &args);
    b.drain_and_stop(&mut cs, Duration::from_secs(60));

    assert_eq!(
        sum(&cs, "received"),
        3 * sent + foreign,
        "three deliveries each"
    );
    assert_eq!(sum(&cs, "failed"), 2 * sent, "given back twice each");
    assert_eq!(sum(&cs, "redelivered"), 2 * sent);
    assert_eq!(sum(&cs, "poison"), sent);
    assert_eq!(sum(&cs, "foreign"), foreign);
    assert_eq!(sum(&cs, "acked"), sent + foreign, "poison is acked");
    assert_eq!(sum(&cs, "lease_lost"), 0);
    assert_counts_add_up(&cs);

    // The ledgers: one poison line per message, each after exactly three deliveries; nothing consumed.
    let lines = ledger_outcomes(dir);
    assert_eq!(lines.len() as u64, sent);
    let mut seqs: Vec<u64> = lines.iter().map(|(e, _)| e.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>());
    assert!(
        lines
            .iter()
            .all(|(_, o)| *o == Outcome::Poison { deliveries: 3 }),
        "every line is poison after 3 deliveries"
    );

    let (code, a) = audit(&producer, dir);
    assert_eq!(code, 0, "{a}");
    assert_eq!(
        (u(&a, "produced"), u(&a, "consumed"), u(&a, "poison")),
        (sent, 0, sent),
        "{a}"
    );
    assert_eq!((u(&a, "lost"), u(&a, "duplicates")), (0, 0), "{a}");
}

#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::sqlite(dir.path());
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).unwrap();
    every_message_ends_as_poison(&b, &ledgers, 300, "100ms", 3);
}

#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_nsq() {
    let fake = FakeNsqd::start();
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::nsq(&fake);
    every_message_ends_as_poison(&b, dir.path(), 300, "100ms", 0);
    // nsqd's own counters agree: two REQs per message, no timeouts.
    assert_eq!(fake.channel_counts("t", "c"), (0, 600));
}

/// Redis: a release with a delay stays pending with its idle time set, then an XAUTOCLAIM raises the count;
/// foreign entries (no `body` field) are acked at their first delivery.
#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::redis(&server, "poison");
    every_message_ends_as_poison(&b, dir.path(), 300, "100ms", 3);
    // The server's own pending list agrees: nothing left, everything trimmed.
    assert_eq!(server.figures("poison", "poison"), (0, 0, Some(0)));
}

#[test]
fn fail_rate_1_poisons_every_message_after_three_deliveries_on_azurite() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::azure(&az, "poison");
    // Azure visibility timeouts are whole seconds: a 1 s delay each time.
    every_message_ends_as_poison(&b, dir.path(), 60, "1s", 0);
}

/// `--fail-rate 0.2` on two consumers: everything is consumed exactly once, some deliveries failed on the way,
/// and the counters add up.
fn a_fifth_fail_and_everything_is_consumed_once(b: &Backend, dir: &Path, n: u64) {
    let (producer, sent) = b.produce(dir, n);
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
    let b = Backend::sqlite(dir.path());
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).unwrap();
    a_fifth_fail_and_everything_is_consumed_once(&b, &ledgers, 2_000);
}

#[test]
fn fail_rate_0_2_two_consumers_consume_everything_once_on_nsq() {
    let fake = FakeNsqd::start();
    let dir = tempfile::tempdir().unwrap();
    a_fifth_fail_and_everything_is_consumed_once(&Backend::nsq(&fake), dir.path(), 2_000);
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
    let b = Backend::sqlite(dir.path());
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).unwrap();
    let (producer, _) = b.produce(&ledgers, 1);
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
    let b = Backend::sqlite(dir.path());
    b.produce(dir.path(), 10);
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

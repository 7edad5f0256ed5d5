//! The consume loop in-process (no child processes), through the library's `run`, against a temp SQLite
//! queue: the failure model and poison, the drain within and past its timeout, lease extension, and the
//! consumer's side of a queue that refuses acks or reports leases lost (a test double around the real queue).
//!
//! Every test counts: each message ends acked exactly once (ledger and queue agree), or is still in the
//! queue; and every stats line, intervals and summary, keeps the slot identity
//! `received = acked + lease_lost + failed + released + unreleased + in_flight`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use consumer::{Args, Config, Reporting};
use queues::{AckOutcome, ErrorKind, Queue, QueueError, Receipt};
use serde_json::Value;
use testkit::inproc::{BOUND, Captured, Double, Hooks};
use testkit::u;
use workload::clock::unix_micros;
use workload::envelope::Envelope;
use workload::ledger::Outcome;
use workload::shutdown::Shutdown;

/// Checks the slot identity on every line a run wrote and returns the summary.
fn checked_summary(lines: &Captured) -> Value {
    for l in &lines.lines() {
        testkit::delivery::assert_slot_identity(l, "consumer");
    }
    lines.summary()
}

fn config(queue: &str, flags: &[&str]) -> Config {
    let mut args = vec!["consumer", "--queue", queue, "--stats-interval", "50ms"];
    args.extend_from_slice(flags);
    Config::from_args(Args::try_parse_from(args).unwrap()).unwrap()
}

/// Publishes messages 0..n of run 1, carrying no work (the consumer's --work applies).
async fn fill(queue: &dyn Queue, n: u64) {
    let bodies = (0..n)
        .map(|seq| {
            Envelope {
                run_id: 1,
                producer_id: 0,
                seq,
                intended_us: unix_micros(),
                sent_us: unix_micros(),
                work: None,
            }
            .encode(0)
        })
        .collect();
    queue.publish(bodies).await.unwrap();
}

/// Runs a consumer to its end, bounded; returns its outcome and what it wrote.
async fn consume(
    config: Config,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
) -> (Result<(), consumer::Error>, Captured) {
    let lines = Captured::default();
    let reporting = Reporting {
        stats: Box::new(lines.clone()),
        exporter: None,
    };
    let run = consumer::run(config, queue, shutdown, reporting);
    let outcome = tokio::time::timeout(BOUND, run)
        .await
        .expect("the run ended in time");
    (outcome, lines)
}

/// The ledger's lines as seq → outcomes, in order.
fn ledger(path: &Path) -> BTreeMap<u64, Vec<Outcome>> {
    let mut by_seq: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
    workload::ledger::read_outcomes(path, |e, o| by_seq.entry(e.seq).or_default().push(o)).unwrap();
    by_seq
}

/// Waits until the queue has handed out every message (none visible).
async fn all_leased(queue: &dyn Queue) {
    tokio::time::timeout(BOUND, async {
        while queue.depth().await.unwrap().visible > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the consumer leased every message");
}

/// Runs a consumer on `t`'s queue and stops it (as SIGTERM would) once it has leased every message.
async fn consume_until_all_leased(
    t: &Temp,
    flags: &[&str],
) -> (Result<(), consumer::Error>, Captured) {
    let shutdown = Shutdown::new();
    let stop = async {
        all_leased(t.queue.as_ref()).await;
        shutdown.trigger();
    };
    let (ran, ()) = tokio::join!(
        consume(t.config(flags), t.queue.clone(), shutdown.clone()),
        stop
    );
    ran
}

/// A temp SQLite queue holding messages `0..n`, and a ledger path beside it.
struct Temp {
    _dir: tempfile::TempDir,
    url: String,
    ledger: std::path::PathBuf,
    queue: Arc<dyn Queue>,
}

async fn filled(n: u64) -> Temp {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let queue = queues::open(&url).await.unwrap();
    fill(queue.as_ref(), n).await;
    Temp {
        url,
        ledger: dir.path().join("ledger"),
        _dir: dir,
        queue,
    }
}

impl Temp {
    /// A consumer's config on this queue, writing this ledger.
    fn config(&self, flags: &[&str]) -> Config {
        let ledger = self.ledger.to_str().unwrap();
        config(&self.url, &[flags, &["--ledger", ledger]].concat())
    }
}

/// Checks that the ledger holds every message `0..n`, and nothing else.
fn assert_every_seq(by_seq: &BTreeMap<u64, Vec<Outcome>>, n: u64) {
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fail_rate_1_makes_every_message_poison_after_exactly_max_deliveries() {
    const N: u64 = 20;
    let t = filled(N).await;
    let queue = t.queue.clone();
    let flags = [
        "--work",
        "none",
        "--fail-rate",
        "1",
        "--fail-delay",
        "0s",
        "--max-deliveries",
        "3",
        "--max-in-flight",
        "5",
        "--count",
        "20",
    ];
    let (outcome, lines) = consume(t.config(&flags), queue.clone(), Shutdown::new()).await;
    outcome.unwrap();
    let s = checked_summary(&lines);
    assert_eq!(u(&s, "received"), 3 * N, "{s}");
    assert_eq!(u(&s, "redelivered"), 2 * N, "{s}");
    assert_eq!(u(&s, "failed"), 2 * N, "{s}");
    assert_eq!(u(&s, "poison"), N, "{s}");
    assert_eq!(u(&s, "acked"), N, "{s}");
    // Each message once in the ledger, as poison after its third delivery; none left in the queue.
    let by_seq = ledger(&t.ledger);
    assert_every_seq(&by_seq, N);
    for (seq, outcomes) in by_seq {
        assert_eq!(outcomes, [Outcome::Poison { deliveries: 3 }], "seq {seq}");
    }
    assert_eq!(queue.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_fail_rate_below_1_consumes_every_message_once_whatever_it_fails() {
    const N: u64 = 200;
    let t = filled(N).await;
    let queue = t.queue.clone();
    let flags = [
        "--work",
        "none",
        "--fail-rate",
        "0.3",
        "--fail-delay",
        "0s",
        "--max-deliveries",
        "100",
        "--max-in-flight",
        "10",
        "--count",
        "200",
    ];
    let (outcome, lines) = consume(t.config(&flags), queue.clone(), Shutdown::new()).await;
    outcome.unwrap();
    let s = checked_summary(&lines);
    assert_eq!(u(&s, "acked"), N, "{s}");
    assert_eq!(u(&s, "poison"), 0, "{s}");
    assert_eq!(u(&s, "received"), N + u(&s, "failed"), "{s}");
    // 30 % of ~286 deliveries: far from zero.
    assert!(u(&s, "failed") > 20, "{s}");
    let by_seq = ledger(&t.ledger);
    assert_eq!(by_seq.len() as u64, N);
    assert!(by_seq.values().all(|o| o == &[Outcome::Consumed]));
    assert_eq!(queue.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_stop_within_the_drain_timeout_finishes_and_acks_everything_held() {
    const N: u64 = 10;
    let t = filled(N).await;
    let queue = t.queue.clone();
    let flags = [
        "--work",
        "sleep:400ms",
        "--max-in-flight",
        "10",
        "--drain-timeout",
        "20s",
    ];
    let (outcome, lines) = consume_until_all_leased(&t, &flags).await;
    outcome.unwrap();
    let s = checked_summary(&lines);
    assert_eq!(u(&s, "received"), N, "{s}");
    assert_eq!(u(&s, "acked"), N, "{s}");
    assert_eq!(u(&s, "released") + u(&s, "unreleased"), 0, "{s}");
    assert_eq!(ledger(&t.ledger).len() as u64, N);
    assert_eq!(queue.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_stop_past_the_drain_timeout_releases_what_is_held_and_loses_nothing() {
    const N: u64 = 10;
    let t = filled(N).await;
    let queue = t.queue.clone();
    let flags = [
        "--work",
        "sleep:30s",
        "--max-in-flight",
        "10",
        "--drain-timeout",
        "200ms",
    ];
    let started = std::time::Instant::now();
    let (outcome, lines) = consume_until_all_leased(&t, &flags).await;
    outcome.unwrap();
    // The drain gave up at its timeout, not after the work.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let s = checked_summary(&lines);
    assert_eq!(u(&s, "received"), N, "{s}");
    assert_eq!(u(&s, "acked"), 0, "{s}");
    assert_eq!(u(&s, "released"), N, "{s}");
    assert_eq!(u(&s, "in_flight"), 0, "{s}");
    assert!(!t.ledger.exists() || ledger(&t.ledger).is_empty());
    // Given back at once (not after the 30 s lease): a second consumer takes and acks every one of them.
    assert_eq!(queue.depth().await.unwrap().visible, N);
    let flags = ["--work", "none", "--count", "10"];
    let (outcome, lines) = consume(t.config(&flags), queue.clone(), Shutdown::new()).await;
    outcome.unwrap();
    let s = checked_summary(&lines);
    assert_eq!(u(&s, "acked"), N, "{s}");
    assert_eq!(u(&s, "redelivered"), N, "{s}");
    let by_seq = ledger(&t.ledger);
    assert_every_seq(&by_seq, N);
    assert!(by_seq.values().all(|o| o.len() == 1));
    assert_eq!(queue.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn work_longer_than_the_lease_keeps_its_lease() {
    const N: u64 = 3;
    let t = filled(N).await;
    let queue = t.queue.clone();
    // Work four leases long: without extension a second consumer, polling all along, would get every message.
    let slow = [
        "--work",
        "sleep:1200ms",
        "--lease",
        "300ms",
        "--max-in-flight",
        "3",
        "--count",
        "3",
    ];
    let idle = [
        "--work",
        "none",
        "--lease",
        "300ms",
        "--max-in-flight",
        "10",
    ];
    let stop_idle = Shutdown::new();
    let slow_run = async {
        let ended = consume(config(&t.url, &slow), queue.clone(), Shutdown::new()).await;
        stop_idle.trigger();
        ended
    };
    let other = queues::open(&t.url).await.unwrap();
    let idle_run = async {
        all_leased(other.as_ref()).await;
        consume(config(&t.url, &idle), other.clone(), stop_idle.clone()).await
    };
    let ((slow_outcome, slow_lines), (idle_outcome, idle_lines)) = tokio::join!(slow_run, idle_run);
    slow_outcome.unwrap();
    idle_outcome.unwrap();
    let s = checked_summary(&slow_lines);
    assert_eq!(u(&s, "acked"), N, "{s}");
    assert_eq!(u(&s, "lease_lost") + u(&s, "redelivered"), 0, "{s}");
    let i = checked_summary(&idle_lines);
    assert_eq!(
        u(&i, "received"),
        0,
        "the other consumer got a message being worked on: {i}"
    );
    assert!(
        idle_lines.intervals() > 5,
        "the other consumer ran all along"
    );
    assert_eq!(queue.depth().await.unwrap().total(), 0);
}

/// The real queue, with acks that fail or whose leases are reported lost on demand.
struct Faulty {
    inner: Arc<dyn Queue>,
    /// Ack calls still to fail (the messages stay held).
    failing_acks: AtomicU64,
    /// Ack calls still to answer "lease lost" for every receipt without acking (as when another consumer
    /// took the message over): the messages come back after their lease.
    lost_acks: AtomicU64,
}

fn take_one(n: &AtomicU64) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Hooks for Faulty {
    fn inner(&self) -> &dyn Queue {
        self.inner.as_ref()
    }
    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        if take_one(&self.failing_acks) {
            return Err(QueueError::new(
                ErrorKind::Unavailable,
                "ack refused by the test",
            ));
        }
        if take_one(&self.lost_acks) {
            return Ok(AckOutcome {
                acked: 0,
                lease_lost: receipts.len() as u64,
            });
        }
        self.inner.ack(receipts).await
    }
}

#[tokio::test]
async fn failed_acks_are_retried_and_lost_leases_come_back_counted() {
    const N: u64 = 30;
    let t = filled(N).await;
    let inner = t.queue.clone();
    let faulty = Arc::new(Double(Faulty {
        inner: inner.clone(),
        failing_acks: AtomicU64::new(2),
        lost_acks: AtomicU64::new(1),
    }));
    let flags = [
        "--work",
        "none",
        "--lease",
        "300ms",
        "--batch",
        "5",
        "--max-in-flight",
        "5",
        "--count",
        "30",
    ];
    let (outcome, lines) = consume(t.config(&flags), faulty, Shutdown::new()).await;
    outcome.unwrap();
    let s = checked_summary(&lines);
    let lost = u(&s, "lease_lost");
    assert!(lost > 0, "{s}");
    assert_eq!(u(&s, "errors"), 2, "{s}");
    // The messages whose ack was refused were never deleted: they came back after their lease and were
    // consumed again, so --count still counts N confirmed acks.
    assert_eq!(u(&s, "acked"), N, "{s}");
    assert_eq!(u(&s, "received"), N + lost, "{s}");
    assert_eq!(u(&s, "redelivered"), lost, "{s}");
    // The ledger holds every message, the lease-lost ones twice (written before each ack): the audit counts
    // them as duplicates, never as lost.
    let by_seq = ledger(&t.ledger);
    assert_every_seq(&by_seq, N);
    let twice = by_seq.values().filter(|o| o.len() == 2).count() as u64;
    assert_eq!(twice, lost);
    assert!(by_seq.values().all(|o| (1..=2).contains(&o.len())));
    assert_eq!(inner.depth().await.unwrap().total(), 0);
}

/// On SQLite the acks go in the background (the queue's claiming thread sends them while the loop takes in
/// more): acks it refuses come back as failed answers and are sent again, and every message is still acked
/// exactly once, its ledger entry written once, with nothing counted twice.
#[tokio::test]
async fn acks_refused_in_the_background_are_sent_again_and_count_once() {
    const N: u64 = 2000;
    let t = filled(N).await;
    let db = rusqlite::Connection::open(t._dir.path().join("queue.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER no_acks BEFORE DELETE ON mw_messages BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let flags = [
        "--work",
        "none",
        "--batch",
        "50",
        "--max-in-flight",
        "100",
        "--count",
        "2000",
    ];
    let lift = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        db.execute_batch("DROP TRIGGER no_acks;").unwrap();
    };
    let ((outcome, lines), ()) = tokio::join!(
        consume(t.config(&flags), t.queue.clone(), Shutdown::new()),
        lift
    );
    outcome.unwrap();
    let s = checked_summary(&lines);
    assert_eq!(u(&s, "acked"), N, "{s}");
    assert_eq!(u(&s, "lease_lost"), 0, "{s}");
    assert!(u(&s, "errors") > 0, "no ack was refused: {s}");
    let by_seq = ledger(&t.ledger);
    assert_every_seq(&by_seq, N);
    assert!(
        by_seq.values().all(|o| o.len() == 1),
        "a ledger entry written twice"
    );
    assert_eq!(t.queue.depth().await.unwrap().total(), 0);
}

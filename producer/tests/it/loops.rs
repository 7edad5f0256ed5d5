//! The send loop in-process (no child processes), through the library's `run`: batching, and the unconfirmed
//! ranges a producer reports when its queue fails, against a test double around a temp SQLite queue.
//!
//! Every test counts: each sequence number is either confirmed (in the queue exactly once) or in exactly one
//! reported unconfirmed range, and `sent + unconfirmed = seq_end`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use producer::{Args, Config, Reporting};
use queues::{ErrorKind, Queue, QueueError};
use serde_json::Value;
use testkit::inproc::{BOUND, Captured, Double, Hooks};
use testkit::u;
use workload::envelope::Envelope;
use workload::shutdown::Shutdown;

/// The real queue, recording every batch it confirms, and failing (as unavailable) every batch whose first
/// message is at or past `fail_from`.
struct Gate {
    inner: Arc<dyn Queue>,
    fail_from: u64,
    confirmed: Mutex<Vec<Vec<u64>>>,
    failed_attempts: AtomicU64,
}

impl Gate {
    fn new(inner: Arc<dyn Queue>, fail_from: u64) -> Arc<Double<Gate>> {
        Arc::new(Double(Gate {
            inner,
            fail_from,
            confirmed: Mutex::default(),
            failed_attempts: AtomicU64::new(0),
        }))
    }
}

#[async_trait]
impl Hooks for Gate {
    fn inner(&self) -> &dyn Queue {
        self.inner.as_ref()
    }
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        let seqs: Vec<u64> = bodies
            .iter()
            .map(|b| Envelope::decode(b).unwrap().seq)
            .collect();
        if seqs[0] >= self.fail_from {
            self.failed_attempts.fetch_add(1, Ordering::SeqCst);
            return Err(QueueError::new(
                ErrorKind::Unavailable,
                "refused by the test",
            ));
        }
        self.inner.publish(bodies).await?;
        self.confirmed.lock().unwrap().push(seqs);
        Ok(())
    }
}

fn config(queue: &str, flags: &[&str]) -> Config {
    let mut args = vec![
        "producer",
        "--queue",
        queue,
        "--stats-interval",
        "50ms",
        "--rate",
        "0",
    ];
    args.extend_from_slice(flags);
    Config::from_args(Args::try_parse_from(args).unwrap()).unwrap()
}

async fn produce(
    config: Config,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
) -> (Result<(), producer::Error>, Captured) {
    let lines = Captured::default();
    let reporting = Reporting {
        stats: Box::new(lines.clone()),
        exporter: None,
    };
    let run = producer::run(config, queue, shutdown, reporting);
    let outcome = tokio::time::timeout(BOUND, run)
        .await
        .expect("the run ended in time");
    (outcome, lines)
}

/// The sequence numbers in the queue, each checked to be there once.
async fn in_queue(queue: &dyn Queue) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    loop {
        let got = queue
            .receive(1000, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        if got.is_empty() {
            return seqs;
        }
        for d in got {
            let seq = Envelope::decode(&d.body).unwrap().seq;
            assert!(seqs.insert(seq), "seq {seq} is in the queue twice");
        }
    }
}

/// The summary's unconfirmed ranges as one set, checked not to overlap.
fn unconfirmed(summary: &Value) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    for range in summary["unconfirmed_ranges"]
        .as_array()
        .expect("unconfirmed_ranges")
    {
        let (first, n) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
        for seq in first..first + n {
            assert!(
                seqs.insert(seq),
                "seq {seq} is in two unconfirmed ranges: {summary}"
            );
        }
    }
    seqs
}

/// Confirmed and unconfirmed together are exactly `0..seq_end`, apart, and match the counters.
fn check_accounting(summary: &Value, queued: &BTreeSet<u64>, unconfirmed: &BTreeSet<u64>) {
    let seq_end = u(summary, "seq_end");
    assert_eq!(u(summary, "sent"), queued.len() as u64, "{summary}");
    assert_eq!(
        u(summary, "unconfirmed"),
        unconfirmed.len() as u64,
        "{summary}"
    );
    assert!(queued.is_disjoint(unconfirmed), "{summary}");
    let all: BTreeSet<u64> = queued.union(unconfirmed).copied().collect();
    assert_eq!(all, (0..seq_end).collect::<BTreeSet<_>>(), "{summary}");
}

#[tokio::test]
async fn batches_are_at_most_batch_long_and_cover_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let gate = Gate::new(queues::open(&url).await.unwrap(), u64::MAX);
    let flags = ["--count", "50", "--batch", "7", "--concurrency", "3"];
    let (outcome, lines) = produce(config(&url, &flags), gate.clone(), Shutdown::new()).await;
    outcome.unwrap();
    let s = lines.summary();
    assert_eq!(u(&s, "seq_end"), 50, "{s}");
    let batches = gate.confirmed.lock().unwrap().clone();
    assert!(
        batches.iter().all(|b| (1..=7).contains(&b.len())),
        "{batches:?}"
    );
    // Each batch is a run of consecutive sequence numbers.
    assert!(
        batches
            .iter()
            .all(|b| b.windows(2).all(|w| w[1] == w[0] + 1)),
        "{batches:?}"
    );
    let mut flat: Vec<u64> = batches.concat();
    flat.sort_unstable();
    assert_eq!(flat, (0..50).collect::<Vec<_>>());
    let queued = in_queue(gate.inner.as_ref()).await;
    check_accounting(&s, &queued, &unconfirmed(&s));
    assert_eq!(u(&s, "unconfirmed"), 0, "{s}");
}

#[tokio::test]
async fn a_queue_that_stops_confirming_is_given_up_on_with_its_ranges_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let gate = Gate::new(queues::open(&url).await.unwrap(), 20);
    let flags = [
        "--count",
        "100",
        "--batch",
        "5",
        "--concurrency",
        "2",
        "--give-up-after",
        "300ms",
    ];
    let (outcome, lines) = produce(config(&url, &flags), gate.clone(), Shutdown::new()).await;
    let e = outcome.expect_err("a run with an end gives up on a queue that confirms nothing");
    assert!(matches!(e, producer::Error::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("confirmed nothing"), "{e}");
    let s = lines.summary();
    assert!(gate.failed_attempts.load(Ordering::SeqCst) > 0);
    let queued = in_queue(gate.inner.as_ref()).await;
    assert_eq!(queued, (0..20).collect::<BTreeSet<_>>());
    let unconfirmed = unconfirmed(&s);
    assert!(!unconfirmed.is_empty(), "{s}");
    check_accounting(&s, &queued, &unconfirmed);
}

#[tokio::test]
async fn a_stop_while_publishes_fail_reports_them_as_unconfirmed_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let url = testkit::sqlite_url(dir.path());
    let gate = Gate::new(queues::open(&url).await.unwrap(), 32);
    // No end: the run retries until it is stopped.
    let flags = ["--batch", "4", "--concurrency", "3"];
    let shutdown = Shutdown::new();
    let stop = async {
        while gate.failed_attempts.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.trigger();
    };
    let ((outcome, lines), ()) = tokio::join!(
        produce(config(&url, &flags), gate.clone(), shutdown.clone()),
        stop
    );
    outcome.unwrap();
    let s = lines.summary();
    let queued = in_queue(gate.inner.as_ref()).await;
    assert_eq!(queued, (0..32).collect::<BTreeSet<_>>());
    let unconfirmed = unconfirmed(&s);
    // Three batches of four were in flight, all failing, when the stop came.
    assert_eq!(unconfirmed, (32..44).collect::<BTreeSet<_>>(), "{s}");
    check_accounting(&s, &queued, &unconfirmed);
}

//! The telemetry channel stalled while a consumer works: its records are published in the background (group
//! commit), so a stalled publish must hold back exactly the acks of the messages it covers and throttle the
//! receive, and once the channel answers again every message is acked once with exactly one record, the
//! failure model's poison ones included. The stall is a write lock the test takes on the channel's SQLite
//! file (WAL, so the channel can still be read meanwhile); the work queue is its own file and keeps going.
//! Short stalls only slow the publish down; one longer than the SQLite backend's busy patience (30,000 sleeps
//! of 1 ms) makes it fail, and the records go back to be published again.
//! Build the binaries first: `cargo build --workspace --bins`.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::{Proc, command, eventually};
use workload::telemetry::Record;

const MESSAGES: u64 = 1_000;
const MAX_IN_FLIGHT: u64 = 10;
const BATCH: u64 = 5;
/// Finished messages the consumer may hold for their records or acks: `WAITING_TURNS` (3) batches.
const WAITING: u64 = 3 * BATCH;

/// The ledger entries on the channel (the `-telemetry` sibling of the work queue's file): (run, producer,
/// seq) of each, in the order they were published. A record message carries a batch of them.
fn ledger_entries(channel: &Path) -> Vec<(String, u32, u64)> {
    let Ok(db) = rusqlite::Connection::open(channel) else {
        return Vec::new();
    };
    let Ok(mut select) = db.prepare("SELECT body FROM mw_messages ORDER BY rowid") else {
        return Vec::new();
    };
    let bodies: Vec<Vec<u8>> = select
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .expect("read the channel");
    let mut entries = Vec::new();
    for body in bodies {
        if let Ok(Record::Ledger(batch)) = Record::decode(&body) {
            batch.for_each_entry(|r| {
                let (e, _) = r.expect("a readable ledger record");
                entries.push((format!("{:016x}", e.run_id), e.producer_id, e.seq));
            });
        }
    }
    entries
}

fn ledger_records(channel: &Path) -> u64 {
    ledger_entries(channel).len() as u64
}

#[test]
fn a_stalled_channel_holds_back_the_acks_and_every_ack_has_exactly_one_record() {
    stall_the_channel(&[Duration::from_millis(1_500); 2], false);
}

#[test]
fn a_failed_records_publish_is_retried_and_every_ack_has_exactly_one_record() {
    // Well past the busy handler's 30,000 sleeps of 1 ms, which take longer than 30 s (32 s was not enough).
    stall_the_channel(&[Duration::from_secs(45)], true);
}

/// Runs a consumer over [`MESSAGES`] and locks its channel for each of `stalls` in turn, checking meanwhile
/// that no message is acked beyond the confirmed records; then checks the counts. With `fails`, a stall
/// must have made a publish fail (an error counted) rather than only wait.
fn stall_the_channel(stalls: &[Duration], fails: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testkit::sqlite_url(dir.path());
    let channel = dir.path().join("queue-telemetry.db");

    let mut producer = command("producer");
    producer.args([
        "--queue",
        &url,
        "--telemetry",
        "on",
        "--rate",
        "0",
        "--count",
    ]);
    producer.arg(MESSAGES.to_string());
    let mut producer = Proc::spawn("producer", producer);
    assert!(
        producer.wait(Duration::from_secs(60)).success(),
        "{}",
        producer.stderr()
    );

    // ~500 msgs/s of work, so the run lasts a few seconds; some messages fail and come back, some end as
    // poison, whose records go through the same channel.
    let mut consumer = command("consumer");
    consumer
        .args(["--queue", &url, "--telemetry", "on", "--work", "sleep:20ms"])
        .args(["--max-in-flight", &MAX_IN_FLIGHT.to_string()])
        // A lease longer than the stalls: finished messages wait for their records without an extension.
        .args(["--batch", &BATCH.to_string(), "--lease", "60s"])
        .args(["--fail-rate", "0.2", "--max-deliveries", "2"])
        .args(["--stats-interval", "500ms", "--count"])
        .arg(MESSAGES.to_string());
    let mut consumer = Proc::spawn("consumer", consumer);

    let acked = || MESSAGES - testkit::depth(&url).total();
    for (round, stall) in stalls.iter().enumerate() {
        let round = round as u64;
        assert!(
            eventually(Duration::from_secs(30), || ledger_records(&channel)
                > 100 * (round + 1)),
            "round {round}: records do not reach the channel: {}",
            consumer.stderr()
        );
        let lock = rusqlite::Connection::open(&channel).expect("open the channel");
        lock.execute_batch("BEGIN EXCLUSIVE")
            .expect("lock the channel");
        // Nothing more can be confirmed now: no more messages than have records may be acked, however long
        // the stall, and the consumer stops receiving once its finished messages reach the cap.
        let confirmed = ledger_records(&channel);
        let until = Instant::now() + *stall;
        while Instant::now() < until {
            let depth = testkit::depth(&url);
            let acked = MESSAGES - depth.total();
            assert!(
                acked <= confirmed,
                "round {round}: {acked} acked with {confirmed} records confirmed"
            );
            let held = depth.in_flight.unwrap_or(0);
            assert!(
                held <= MAX_IN_FLIGHT + WAITING,
                "round {round}: the consumer holds {held} messages with the channel stalled"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            acked() < MESSAGES,
            "round {round}: the run ended while the channel was stalled"
        );
        lock.execute_batch("ROLLBACK").expect("unlock");
    }

    let status = consumer.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", consumer.stderr());
    let summary = consumer.consumer_summary().expect("a summary line");
    assert_eq!(
        (summary.acked, summary.lease_lost),
        (MESSAGES, 0),
        "{summary:?}"
    );
    if fails {
        assert!(summary.errors > 0, "no publish failed: {summary:?}");
        assert!(
            consumer
                .stderr()
                .contains("could not publish ledger records"),
            "{}",
            consumer.stderr()
        );
    }
    assert_eq!(acked(), MESSAGES);
    // One record per ack: none missing, none published twice.
    let entries = ledger_entries(&channel);
    let distinct: HashSet<_> = entries.iter().collect();
    assert_eq!(
        (entries.len() as u64, distinct.len() as u64),
        (MESSAGES, MESSAGES)
    );

    let mut audit = command("audit");
    audit
        .args(["--queue", &url, "--save"])
        .arg(dir.path().join("audit"));
    let mut audit = Proc::spawn("audit", audit);
    let status = audit.wait(Duration::from_secs(60));
    let report = audit
        .audit_report()
        .unwrap_or_else(|| panic!("no audit line ({status}): {}", audit.stderr()));
    assert!(status.success(), "{report:?}\n{}", audit.stderr());
    assert!(report.poison > 0, "no poison message: {report:?}");
    assert_eq!(
        (
            report.produced,
            report.consumed + report.poison,
            report.duplicates,
            report.lost
        ),
        (MESSAGES, MESSAGES, 0, 0),
        "{report:?}"
    );
}

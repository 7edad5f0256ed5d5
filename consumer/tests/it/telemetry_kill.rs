//! The telemetry channel's ordering, where it matters: a consumer SIGKILLed after the channel confirmed a
//! message's ledger record and before the message's ack shows in `audit --queue` as one duplicate (the message
//! is delivered again and consumed again), never as a loss. The ack is held back by a write lock the test takes
//! on the SQLite work queue while the consumer works; the channel is its own file, so the record goes through.
//! Build the binaries first: `cargo build --workspace --bins`.

use std::path::Path;
use std::time::Duration;

use testkit::{Proc, command, eventually};

fn consumer(url: &str, work: &str, name: &str) -> Proc {
    let mut cmd = command("consumer");
    cmd.args(["--queue", url, "--telemetry", "on", "--work", work])
        // A lease long enough that no extension (every third of it) falls while the queue is locked.
        .args(["--max-in-flight", "1", "--batch", "1", "--lease", "9s"])
        .args(["--stats-interval", "500ms", "--drain-timeout", "3s"]);
    Proc::spawn(name, cmd)
}

/// Ledger records on the channel (the `-telemetry` sibling of the work queue's file).
fn ledger_records(channel: &Path) -> u64 {
    let Ok(db) = rusqlite::Connection::open(channel) else {
        return 0;
    };
    db.query_row(
        r#"SELECT count(*) FROM mw_messages WHERE CAST(body AS TEXT) LIKE '{"t":"ledger2"%'"#,
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[test]
fn a_consumer_killed_between_its_record_and_its_ack_makes_one_duplicate_not_a_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testkit::sqlite_url(dir.path());
    let work_file = dir.path().join("queue.db");
    let channel = dir.path().join("queue-telemetry.db");
    assert!(url.ends_with("queue.db"), "{url}");

    let mut producer = command("producer");
    producer.args(["--queue", &url, "--telemetry", "on", "--count", "1"]);
    let mut producer = Proc::spawn("producer", producer);
    assert!(
        producer.wait(Duration::from_secs(30)).success(),
        "{}",
        producer.stderr()
    );

    // The first consumer takes the message and works on it for 1.5 s; meanwhile the test locks the work queue.
    let mut first = consumer(&url, "sleep:1500ms", "first");
    assert!(
        eventually(Duration::from_secs(20), || testkit::depth(&url).in_flight
            == Some(1)),
        "the message was not taken: {}",
        first.stderr()
    );
    let lock = rusqlite::Connection::open(&work_file).expect("open the work queue");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the work queue");
    // Its record reaches the channel; its ack waits for the lock.
    assert!(
        eventually(Duration::from_secs(20), || ledger_records(&channel) == 1),
        "no ledger record on the channel: {}",
        first.stderr()
    );
    std::thread::sleep(Duration::from_millis(300));
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(10));
    lock.execute_batch("ROLLBACK").expect("unlock");
    drop(lock);
    let depth = testkit::depth(&url);
    assert_eq!(
        depth.total(),
        1,
        "the message was acked after all: {depth:?}"
    );

    // Its lease runs out; a second consumer takes it again and acks it.
    let second = consumer(&url, "sleep:10ms", "second");
    assert!(
        eventually(Duration::from_secs(30), || testkit::depth(&url).total()
            == 0),
        "the message was not consumed again: {}",
        second.stderr()
    );
    testkit::stop_gracefully(&mut [second]);
    assert_eq!(ledger_records(&channel), 2);

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
    assert_eq!(
        (
            report.produced,
            report.consumed,
            report.duplicates,
            report.lost
        ),
        (1, 1, 1, 0),
        "{report:?}"
    );
}

//! The telemetry channel's ordering, where it matters, with a consumer SIGKILLed while its ack is held back:
//! - on a broker (Azurite here) the record is published and confirmed first, then the ack is sent: killed in
//!   between, the message shows in `audit --queue` as one duplicate (delivered and consumed again), never as a
//!   loss. A proxy holds the consumer's DELETEs back and never lets them through; the record's PUT passes.
//! - on SQLite the record rides in the ack's own transaction: killed while that transaction waits for the
//!   write lock (the test holds it), neither the record nor the ack is written, and the message is consumed
//!   once, by the next consumer, with one record.
//!
//! Build the binaries first: `cargo build --workspace --bins`.

use std::path::Path;
use std::time::Duration;

use testkit::azurite::{self, Azurite};
use testkit::lossy_http::LossyHttp;
use testkit::{Proc, command, eventually};

fn consumer(url: &str, work: &str, name: &str) -> Proc {
    let mut cmd = command("consumer");
    azurite::with_key(&mut cmd)
        .args(["--queue", url, "--telemetry", "on", "--work", work])
        // A lease long enough that no extension (every third of it) falls while the ack is held back.
        .args(["--max-in-flight", "1", "--batch", "1", "--lease", "9s"])
        .args(["--stats-interval", "500ms", "--drain-timeout", "3s"]);
    Proc::spawn(name, cmd)
}

fn produce_one(url: &str) {
    let mut producer = command("producer");
    azurite::with_key(&mut producer).args(["--queue", url, "--telemetry", "on", "--count", "1"]);
    let mut producer = Proc::spawn("producer", producer);
    assert!(
        producer.wait(Duration::from_secs(30)).success(),
        "{}",
        producer.stderr()
    );
}

/// `audit --queue` of the run: (produced, consumed, duplicates, lost).
fn audit(url: &str, dir: &Path) -> (u64, u64, u64, u64) {
    let mut audit = command("audit");
    azurite::with_key(&mut audit)
        .args(["--queue", url, "--save"])
        .arg(dir.join("audit"));
    let mut audit = Proc::spawn("audit", audit);
    let status = audit.wait(Duration::from_secs(60));
    let report = audit
        .audit_report()
        .unwrap_or_else(|| panic!("no audit line ({status}): {}", audit.stderr()));
    assert!(status.success(), "{report:?}\n{}", audit.stderr());
    (
        report.produced,
        report.consumed,
        report.duplicates,
        report.lost,
    )
}

/// Ledger records in the SQLite queue's records table (the `telemetry` sibling, in the same file).
fn sqlite_records(file: &Path) -> u64 {
    let Ok(db) = rusqlite::Connection::open(file) else {
        return 0;
    };
    db.query_row(
        r#"SELECT count(*) FROM mw_telemetry WHERE CAST(body AS TEXT) LIKE '{"t":"ledger2"%'"#,
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[test]
fn azure_a_consumer_killed_between_its_record_and_its_ack_makes_one_duplicate_not_a_loss() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = az.url("killed", "");
    let records = az.url("killed-telemetry", "");
    produce_one(&url);
    // The producer's own records (its stats lines) are there already.
    let producers = azurite::depth(&records).total();

    // The first consumer goes through the proxy, which holds back every DELETE of a work message.
    let proxy = LossyHttp::start(az.port(), "DELETE");
    proxy.hold("DELETE", "/killed/messages/");
    let through_proxy = url.replace(
        &format!("127.0.0.1:{}", az.port()),
        &format!("127.0.0.1:{}", proxy.port()),
    );
    let mut first = consumer(&through_proxy, "sleep:500ms", "first");
    // Its record reaches the channel; its ack waits at the proxy.
    assert!(
        eventually(Duration::from_secs(20), || proxy.holding() == 1),
        "no ack was sent: {}",
        first.stderr()
    );
    assert_eq!(
        azurite::depth(&records).total(),
        producers + 1,
        "the record is confirmed before the ack is sent"
    );
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(10));
    // The held DELETE never reaches Azurite.
    proxy.refuse("DELETE", "/killed/messages/");
    assert!(eventually(Duration::from_secs(5), || proxy.refused() == 1));
    assert_eq!(
        azurite::depth(&url).total(),
        1,
        "the message was acked after all"
    );

    // Its lease runs out; a second consumer, straight to Azurite, takes it again and acks it.
    let second = consumer(&url, "sleep:10ms", "second");
    assert!(
        eventually(Duration::from_secs(30), || azurite::depth(&url).total()
            == 0),
        "the message was not consumed again: {}",
        second.stderr()
    );
    testkit::stop_gracefully(&mut [second]);
    assert_eq!(azurite::depth(&records).total(), producers + 2);
    assert_eq!(audit(&url, dir.path()), (1, 1, 1, 0));
}

#[test]
fn sqlite_a_consumer_killed_before_its_ack_commits_leaves_neither_record_nor_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testkit::sqlite_url(dir.path());
    let work_file = dir.path().join("queue.db");
    assert!(url.ends_with("queue.db"), "{url}");
    produce_one(&url);

    // The first consumer takes the message and works on it for 1.5 s; meanwhile the test locks the file.
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
    // The work ends and its record and ack wait for the lock together, well past the work's end.
    std::thread::sleep(Duration::from_millis(2_500));
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(10));
    lock.execute_batch("ROLLBACK").expect("unlock");
    drop(lock);
    assert_eq!(sqlite_records(&work_file), 0, "a record without its ack");
    assert_eq!(testkit::depth(&url).total(), 1, "an ack without its record");

    // Its lease runs out; a second consumer takes it again and acks it, with its record.
    let second = consumer(&url, "sleep:10ms", "second");
    assert!(
        eventually(Duration::from_secs(30), || testkit::depth(&url).total()
            == 0),
        "the message was not consumed again: {}",
        second.stderr()
    );
    testkit::stop_gracefully(&mut [second]);
    assert_eq!(sqlite_records(&work_file), 1);
    assert_eq!(audit(&url, dir.path()), (1, 1, 0, 0));
}

//! The embedded queue's own tests: contract, counters, concurrency, and files that are not queues.

use super::*;
use crate::open;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

mod acks;
mod push;
mod siblings;

async fn queue(dir: &tempfile::TempDir) -> Arc<dyn Queue> {
    open(&format!("sqlite:{}", dir.path().join("q.db").display()))
        .await
        .unwrap()
}

fn bodies(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("m{i}").into_bytes()).collect()
}

#[tokio::test]
async fn publish_receive_ack_keeps_depth_exact() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(5)).await.unwrap();
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 5,
            in_flight: Some(0)
        }
    );
    let got = q
        .receive(3, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.body.clone()).collect::<Vec<_>>(),
        bodies(3),
        "oldest first"
    );
    assert!(got.iter().all(|d| d.deliveries == 1));
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 2,
            in_flight: Some(3)
        }
    );
    let receipts = got.into_iter().map(|d| d.receipt).collect();
    let (acked, rest) = q
        .ack_and_receive(receipts, 10, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        acked,
        AckOutcome {
            acked: 3,
            lease_lost: 0
        }
    );
    assert_eq!(rest.len(), 2);
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 0,
            in_flight: Some(2)
        }
    );
    q.ack(rest.into_iter().map(|d| d.receipt).collect())
        .await
        .unwrap();
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 0,
            in_flight: Some(0)
        }
    );
}

#[tokio::test]
async fn an_expired_lease_redelivers_and_the_old_receipt_cannot_ack() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(1)).await.unwrap();
    let first = q
        .receive(1, Duration::from_millis(50), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        q.receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    let second = q
        .receive(1, Duration::from_secs(30), Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].deliveries, 2);
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 0,
            in_flight: Some(1)
        },
        "counted once"
    );
    let stale = q.ack(vec![first[0].receipt.clone()]).await.unwrap();
    assert_eq!(
        stale,
        AckOutcome {
            acked: 0,
            lease_lost: 1
        }
    );
    let mut r = vec![first[0].receipt.clone()];
    assert_eq!(
        q.extend(&mut r, Duration::from_secs(1)).await.unwrap(),
        vec![false]
    );
    assert_eq!(
        q.ack(vec![second[0].receipt.clone()]).await.unwrap().acked,
        1
    );
    assert_eq!(q.depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn release_makes_a_message_visible_and_extend_keeps_it_leased() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(2)).await.unwrap();
    let mut got = q
        .receive(2, Duration::from_millis(100), Duration::ZERO)
        .await
        .unwrap();
    let mut keep = vec![got.remove(1).receipt];
    assert_eq!(
        q.release(vec![got.remove(0).receipt], Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 1,
            in_flight: Some(1)
        }
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            q.extend(&mut keep, Duration::from_millis(100))
                .await
                .unwrap(),
            vec![true]
        );
    }
    let again = q
        .receive(5, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        1,
        "only the released one; the extended one is still leased"
    );
    assert_eq!(again[0].body, b"m0");
    assert_eq!(q.ack(keep).await.unwrap().acked, 1);
}

/// Operations run on the caller's thread only when the write lock is free: one that finds it held by another
/// process (here another connection) must wait for it on the blocking pool, not fail, and change nothing twice.
#[tokio::test]
async fn an_operation_that_finds_the_write_lock_held_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(2)).await.unwrap();
    let got = q
        .receive(1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    let other = Connection::open(dir.path().join("q.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
    });
    let started = Instant::now();
    let receipts = got.into_iter().map(|d| d.receipt).collect();
    let (outcome, more) = q
        .ack_and_receive(receipts, 5, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the ack went through while another connection held the write lock"
    );
    holder.join().unwrap();
    assert_eq!(outcome.acked, 1);
    assert_eq!(more.len(), 1);
    q.publish(bodies(1)).await.unwrap();
    assert_eq!(
        q.depth().await.unwrap(),
        Depth {
            visible: 1,
            in_flight: Some(1)
        }
    );
}

#[tokio::test]
async fn receive_waits_for_a_message_published_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let q2 = q.clone();
    let waiter = tokio::spawn(async move {
        q2.receive(1, Duration::from_secs(5), Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.publish(bodies(1)).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn files_that_are_not_queues_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a database, just some text that is long enough to have a header....",
    )
    .unwrap();
    let e = open(&format!("sqlite:{}", text.display()))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e.downcast_ref(), Some(SqliteError::NotADatabase { .. })),
        "{e}"
    );
    assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    assert!(e.to_string().contains("not a SQLite database"), "{e}");

    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER)")
        .unwrap();
    let e = open(&format!("sqlite:{}", other.display()))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e.downcast_ref(), Some(SqliteError::ForeignDatabase { .. })),
        "{e}"
    );

    let e = open(&format!("sqlite:{}", dir.path().display()))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("directory"), "{e}");
}

#[test]
fn many_openers_of_a_new_file_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || open_connection(&path, Create::Yes).map(|_| ()))
            })
            .collect();
        for o in openers {
            o.join().unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn reopening_keeps_messages_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    queue(&dir).await.publish(bodies(3)).await.unwrap();
    let q = queue(&dir).await;
    assert_eq!(q.depth().await.unwrap().visible, 3);
}

#[tokio::test]
async fn opening_an_existing_queue_only_never_creates_one() {
    use crate::{ErrorKind, QueueUrl};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.db");
    let url = QueueUrl::parse(&format!("sqlite:{}", path.display())).unwrap();
    assert_eq!(url.backend(), "sqlite");
    let e = url.open_existing().await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no queue at"), "{e}");
    assert!(!path.exists(), "the file was created");
    url.open().await.unwrap();
    url.open_existing().await.unwrap();
}

#[test]
fn a_busy_database_is_worth_a_retry_and_nothing_here_is_throttling() {
    use crate::ErrorKind;
    let busy =
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
    let e = QueueError::from(SqliteError::Sqlite {
        path: "q.db".into(),
        source: busy,
    });
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(!e.is_throttled(), "SQLite never asks a client to slow down");
    let e = QueueError::from(SqliteError::NotADatabase {
        path: "q.db".into(),
    });
    assert_eq!(e.kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn opening_an_existing_queue_makes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let e = SqliteQueue::open_existing(path.clone())
        .await
        .err()
        .expect("no queue there");
    assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no queue at"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Once a writer made it, it opens.
    drop(SqliteQueue::open(path.clone()).await.unwrap());
    SqliteQueue::open_existing(path).await.unwrap();
}

/// A producer and a consumer writing back to back, each through its own handle and checkpointer (as separate
/// processes are): returns the largest the WAL grew, what the checkpointers did, and the messages acked.
async fn write_without_pause(
    dir: &tempfile::TempDir,
    policy: checkpoint::Policy,
) -> (u64, u64, u64, u64) {
    const BATCHES: usize = 1500;
    const BATCH: usize = 20;
    let path = dir.path().join("q.db");
    let open = || SqliteQueue::open_with(path.clone(), Create::Yes, policy, Table::work());
    let (producer, consumer) = (
        Arc::new(open().await.unwrap()),
        Arc::new(open().await.unwrap()),
    );
    let wal = dir.path().join("q.db-wal");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (wal, done) = (wal.clone(), done.clone());
        std::thread::spawn(move || {
            let mut largest = 0;
            while !done.load(Ordering::Relaxed) {
                largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                std::thread::sleep(Duration::from_millis(2));
            }
            largest
        })
    };
    let publishing = {
        let producer = producer.clone();
        tokio::spawn(async move {
            for _ in 0..BATCHES {
                producer
                    .publish(vec![vec![b'x'; 200]; BATCH])
                    .await
                    .unwrap();
            }
        })
    };
    let lease = Duration::from_secs(60);
    let mut acked = 0;
    let mut pending = Vec::new();
    while acked < (BATCHES * BATCH) as u64 {
        let (outcome, got) = consumer
            .ack_and_receive(
                std::mem::take(&mut pending),
                BATCH,
                lease,
                Duration::from_millis(50),
            )
            .await
            .unwrap();
        acked += outcome.acked;
        pending = got.into_iter().map(|d| d.receipt).collect();
    }
    publishing.await.unwrap();
    done.store(true, Ordering::Relaxed);
    let largest = sampler.join().unwrap();
    let rounds = [&producer, &consumer].map(|q| &q.checkpointer.rounds);
    let restarts = rounds
        .iter()
        .map(|r| r.restarts.load(Ordering::Relaxed))
        .sum();
    let busy = rounds
        .iter()
        .map(|r| r.restarts_busy.load(Ordering::Relaxed))
        .sum();
    (largest, restarts, busy, acked)
}

/// With PASSIVE checkpoints alone this run grew the WAL to 77 MB (the file is never shrunk, so its largest
/// size is what the disk holds); with RESTART rounds after 256 frames, every 20 ms, it peaked at 7–14 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_writes_that_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let policy = checkpoint::Policy {
        every: Duration::from_millis(20),
        restart_after_frames: 256,
    };
    let (largest, restarts, busy, acked) = write_without_pause(&dir, policy).await;
    eprintln!("largest WAL {largest} B, restarts {restarts}, gave up {busy}, acked {acked}");
    assert_eq!(acked, 30_000, "every message acked once");
    assert_eq!(q_left(&dir).await, 0);
    assert!(restarts > 0, "no RESTART round ran");
    assert!(
        largest < 32 << 20,
        "the WAL grew to {largest} B (77 MB without RESTART rounds)"
    );
}

async fn q_left(dir: &tempfile::TempDir) -> u64 {
    let q = queue(dir).await;
    let d = q.depth().await.unwrap();
    d.visible + d.in_flight.unwrap_or(0)
}

/// SQLite deletes the WAL when the last connection closes; the checkpointer's connection must close with the
/// queue, or every run left its WAL (up to ~100 MB) and `-shm` beside the queue file.
#[tokio::test]
async fn the_last_handle_to_close_leaves_no_wal_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (queue(&dir).await, queue(&dir).await);
    a.publish(bodies(500)).await.unwrap();
    let got = b
        .receive(500, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 500);
    let (outcome, _) = b
        .ack_and_receive(
            got.into_iter().map(|d| d.receipt).collect(),
            0,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(outcome.acked, 500);
    let wal = dir.path().join("q.db-wal");
    assert!(wal.exists(), "the WAL is there while the queue is open");
    drop(a);
    assert!(wal.exists(), "another handle still has the queue open");
    drop(b);
    assert!(!wal.exists(), "the WAL outlived the last handle");
    assert!(!dir.path().join("q.db-shm").exists());
    assert_eq!(q_left(&dir).await, 0, "nothing lost with the WAL");
}

#[test]
fn a_query_string_is_refused_without_repeating_it() {
    let err = crate::QueueUrl::parse("sqlite:/tmp/q.db?password=hunter2")
        .expect_err("a query string on a sqlite URL is refused");
    let text = err.to_string();
    assert!(text.contains("takes no query string"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(crate::QueueUrl::parse("sqlite:/tmp/q.db").is_ok());
}

//! The anchor of the embedded benchmark: a bare SQLite queue of the same design as the embedded backend, with
//! nothing around it (no envelope, ledger, stats, histograms, async runtime). One table, WAL with
//! `synchronous=NORMAL`, a 1 ms busy handler, WAL checkpoints on a thread of each process (PASSIVE every
//! 200 ms, RESTART when the WAL keeps growing) instead of inside commits; the producer inserts batches of 100
//! in one transaction each; a consumer claims up to 100 with `UPDATE … WHERE id IN (SELECT … LIMIT 100) RETURNING id, body` and deletes
//! what it claimed (its acks) in the next claim's transaction. Its rate is what SQLite allows this design on
//! this machine, now: the real binaries are judged against it.
//!
//! The bench runs these roles by starting its own executable again with `spike-producer` or
//! `spike-consumer` as the first argument (see `main`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

const BATCH: usize = 100;

fn open(path: &Path) -> Connection {
    let c = Connection::open(path).expect("open the spike's database");
    c.busy_handler(Some(|retries| {
        std::thread::sleep(Duration::from_millis(1));
        retries < 10_000
    }))
    .expect("busy handler");
    // As the backend: no re-planning of the claim each time its parameters change (see its open).
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .expect("QPSG");
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .expect("WAL");
    // As the backend: commits never checkpoint; a thread of each process does, PASSIVE, every 200 ms.
    c.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE IF NOT EXISTS q (
             id INTEGER PRIMARY KEY, body BLOB NOT NULL,
             visible_at INTEGER NOT NULL DEFAULT 0, lease INTEGER NOT NULL DEFAULT 0);",
    )
    .expect("schema");
    c
}

fn now_us() -> u64 {
    workload::clock::unix_micros()
}

fn now_ms() -> i64 {
    (now_us() / 1000) as i64
}

/// The backend's checkpointer: its own connection, a PASSIVE checkpoint every 200 ms, for the process's life,
/// and a RESTART (giving up after 10 ms of waiting) when more than 4096 frames are left in the WAL.
fn spawn_checkpointer(path: &Path) {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let c = open(&path);
        c.busy_handler(Some(|retries| {
            std::thread::sleep(Duration::from_millis(1));
            retries < 10
        }))
        .expect("busy handler");
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let frames: i64 = c
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap_or(0);
            if frames > 4096 {
                let _ = c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
            }
        }
    });
}

/// Creates the database (before the consumers start, so they never race to create it).
pub fn create(path: &Path) {
    drop(open(path));
}

/// `spike-producer PATH COUNT SIZE`: prints `first_us`.
pub fn producer(path: &Path, count: u64, size: usize) {
    let mut c = open(path);
    spawn_checkpointer(path);
    let mut first = None;
    let mut sent = 0u64;
    while sent < count {
        let n = (count - sent).min(BATCH as u64);
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO q (body) VALUES (?1)")
                .expect("prepare");
            for i in 0..n {
                // The sequence number in the body, as the real producer's envelope has one.
                let mut body = vec![b'x'; size];
                body[..8].copy_from_slice(&(sent + i).to_le_bytes());
                ins.execute([&body]).expect("insert");
            }
        }
        tx.commit().expect("commit");
        first.get_or_insert_with(now_us);
        sent += n;
    }
    println!("{}", first.unwrap_or(0));
}

/// `spike-consumer PATH DONE_FILE`: claims until the queue is empty and DONE_FILE exists; prints
/// `count last_ack_us`.
pub fn consumer(path: &Path, done: &Path) {
    let mut c = open(path);
    spawn_checkpointer(path);
    let mut acks: Vec<(i64, i64)> = Vec::new();
    let (mut count, mut last) = (0u64, 0u64);
    let lease_ms = 30_000i64;
    let mut idle = Duration::from_millis(1);
    loop {
        let token: i64 = rand::random::<i64>() | 1;
        let before = count;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut del = tx
                .prepare_cached("DELETE FROM q WHERE id = ?1 AND lease = ?2")
                .expect("prepare");
            for (id, t) in acks.drain(..) {
                count += del.execute(params![id, t]).expect("delete") as u64;
            }
            let mut claim = tx
                .prepare_cached(
                    "UPDATE q SET visible_at = ?1 + ?2, lease = ?3
                      WHERE id IN (SELECT id FROM q WHERE visible_at <= ?1 ORDER BY id LIMIT ?4)
                  RETURNING id, body",
                )
                .expect("prepare");
            let mut rows = claim
                .query(params![now_ms(), lease_ms, token, BATCH as i64])
                .expect("claim");
            while let Some(row) = rows.next().expect("row") {
                let id: i64 = row.get(0).expect("id");
                let body: Vec<u8> = row.get(1).expect("body");
                // Zero work: look at the body, as a consumer decodes its envelope.
                std::hint::black_box(&body);
                acks.push((id, token));
            }
        }
        tx.commit().expect("commit");
        if count > before {
            last = now_us();
        }
        if acks.is_empty() {
            if done.exists() {
                // The producer has finished and nothing is left: one more claim to be sure, then stop.
                let left: i64 = c
                    .query_row("SELECT count(*) FROM q WHERE lease = 0", [], |r| r.get(0))
                    .expect("count");
                if left == 0 {
                    break;
                }
            }
            // The backend's back-off when empty (1 ms doubling to 25 ms): polling every 1 ms, two consumers
            // took the write lock from the producer and the spike ran slower than the binaries.
            std::thread::sleep(idle);
            idle = (idle * 2).min(Duration::from_millis(25));
        } else {
            idle = Duration::from_millis(1);
        }
    }
    println!("{count} {last}");
}

/// What is left in the spike's queue (must be 0).
pub fn left(path: &Path) -> i64 {
    open(path)
        .query_row("SELECT count(*) FROM q", [], |r| r.get(0))
        .expect("count")
}

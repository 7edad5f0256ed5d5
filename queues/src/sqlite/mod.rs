//! The embedded backend: a durable queue in one SQLite file, shared by any number of processes on one machine,
//! with no server.
//!
//! Visibility-timeout semantics like Azure Storage Queues: a received message gets `visible_at = now + lease`
//! and a fresh random lease token; until then no one else can claim it. Ack, release and extend must present the
//! token, so a consumer whose lease ran out (and whose message another consumer claimed) cannot ack it by
//! mistake. Row ids can be reused once the table drains; the token is what makes a receipt unique.
//!
//! Why it is built the way it is (measured on a 2-core machine, 1 producer + 2 consumer processes):
//! - WAL with `synchronous=NORMAL`: commits do not fsync, yet a committed transaction survives the process
//!   being killed. (A power cut can lose the last commits: this is a workload, not a bank.)
//! - A claim is one `UPDATE … WHERE id IN (SELECT id … WHERE visible_at <= now ORDER BY id LIMIT n)
//!   RETURNING …`. There is deliberately no index on `visible_at`: the scan stops after `n` visible rows, and
//!   keeping the index up to date cost 30 % of throughput.
//! - Acks ride in the same transaction as the next claim ([`Queue::ack_and_receive`]); acks that cover a whole
//!   claim delete it with one range statement (see `claim::delete_acked`).
//! - A consumer that says how much it holds ([`Queue::hold_at_most`]) gets a thread that runs its
//!   transactions back to back, each with the acks that came meanwhile and a claim into the room left
//!   ([`Queue::ack_in_background`], see [`push`]): a consumer that sent its acks and waited for their commit
//!   before taking in the messages that came with them left the lock idle ~90 µs a batch.
//! - The busy handler sleeps a fixed 1 ms: SQLite's default back-off grows to 100 ms sleeps and starved
//!   writers for seconds under contention.
//! - An operation runs on the calling task's thread when the write lock is free, and goes to the blocking pool
//!   only to wait for it: a round trip through the pool per transaction left the lock idle a quarter of the
//!   time (see [`SqliteQueue::with_conn`]).
//! - WAL checkpoints run on a background thread and connection (PASSIVE, and RESTART when the WAL keeps
//!   growing), never inside a publish or claim: an automatic checkpoint stalls the commit that triggers it for
//!   milliseconds (see [`checkpoint`]).
//! - Depth comes from counters kept in the same transactions as the changes, because `count(*)` over a
//!   million rows takes ~90 ms.
//!
//! `in_flight` counts messages with a lease token that were neither acked nor released, including ones whose
//! lease ran out but which nobody has claimed again yet (after a consumer crash, until the next claim).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params};

mod busy;
use busy::{NoWait, is_busy};
mod checkpoint;
mod claim;
mod push;
use claim::{Records, add_counter, claim_tx, release_tx};
mod error;
mod open;
mod table;
mod url;

pub(crate) use open::Create;
use open::{open_connection, open_table};
use table::Table;

pub use error::SqliteError;
pub use url::{BACKEND, SqliteBackend, SqliteUrl};

use super::{AckOutcome, Delivery, Depth, Queue, QueueError, Receipt, Recorded};
use workload::clock::unix_millis;

/// This backend's receipt: the row, the token of the lease it was claimed with, and how many rows that claim
/// took (acks that cover a whole claim delete it in one statement; see `claim::delete_acked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SqliteReceipt {
    id: i64,
    token: i64,
    of: u32,
}

/// Written to the SQLite header so that a queue file is recognised as ours: "mwq1".
const APPLICATION_ID: i32 = 0x6d77_7131;

/// Polling interval bounds while waiting for a message to arrive.
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(25);

/// What every queue file has: the counters, and the work queue's table (a file opened for a sibling still
/// gets it, so that it is a queue file like any other).
const SCHEMA: &str = "
-- WITHOUT ROWID: the counters live in their primary key's b-tree, so the updates every transaction makes dirty
-- one page, not a table page and an index page (one 4 KiB WAL frame less per commit). Files made before keep
-- their rowid table, which the same statements serve.
CREATE TABLE IF NOT EXISTS mw_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A queue in a SQLite file. Each operation holds the process's one connection, on the calling task's thread
/// when the write lock is free and on tokio's blocking pool when it must wait (see [`SqliteQueue::with_conn`]).
pub struct SqliteQueue {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// This handle's checkpointer thread, stopped and joined when the queue is dropped (held for that; tests
    /// read what it did).
    #[cfg_attr(not(test), allow(dead_code))]
    checkpointer: Arc<checkpoint::Checkpointer>,
    /// The queue's table: the work queue's, or a sibling's.
    table: Arc<Table>,
    /// Messages published through this handle expire this long after (see [`SqliteQueue::expiring`]).
    expiry: Option<Duration>,
    /// The most messages the consumer says it holds ([`Queue::hold_at_most`]): it then gets a thread that
    /// claims ahead and sends its acks (see [`push`]), started by its first receive.
    window: OnceLock<usize>,
    /// That thread, once started; a receive after it was stopped starts another.
    pusher: Mutex<Option<Arc<push::Pusher>>>,
}

impl SqliteQueue {
    /// This queue with messages that expire `after` they were published: heartbeats, which nobody may read
    /// for days. Work queues never use it.
    pub fn expiring(mut self, after: Duration) -> SqliteQueue {
        self.expiry = Some(after);
        self
    }

    /// A publish to an expiring queue: each row is stamped with its publish time in `visible_at` (claimable
    /// at once, as `0` is), and the same transaction deletes the unleased rows stamped more than `after` ago.
    /// A row a reader holds (leased) is left to its ack. Rows from before expiry existed (stamped 0) go first.
    async fn publish_expiring(
        &self,
        bodies: Vec<Vec<u8>>,
        after: Duration,
    ) -> Result<(), QueueError> {
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let t = self.table.clone();
        self.with_conn(move |c| {
            let now = unix_millis();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let expired = tx
                .prepare_cached(&t.delete_expired)?
                .execute([now.saturating_sub(after_ms)])?;
            {
                let mut insert = tx.prepare_cached(&t.insert_at)?;
                for body in &bodies {
                    insert.execute(rusqlite::params![body, now])?;
                }
            }
            add_counter(&tx, &t.messages, bodies.len() as i64 - expired as i64)?;
            tx.commit()
        })
        .await
    }

    /// Opens the queue at `path`, creating the file and schema when missing.
    ///
    /// # Errors
    /// [`SqliteError::NotADatabase`] for a file that is not SQLite, [`SqliteError::ForeignDatabase`] for a
    /// SQLite database this suite did not make, [`SqliteError::Sqlite`] for anything else.
    pub async fn open(path: PathBuf) -> Result<Self, QueueError> {
        Self::open_with(
            path,
            Create::Yes,
            checkpoint::Policy::default(),
            Table::work(),
        )
        .await
    }

    /// Opens the queue at `path` only if the file exists: a reader (a watch) must leave nothing behind. The
    /// file is opened without SQLite's create flag, so a file removed meanwhile is not made again either.
    ///
    /// # Errors
    /// [`SqliteError::NoQueue`] when there is no file; otherwise as [`SqliteQueue::open`].
    pub async fn open_existing(path: PathBuf) -> Result<Self, QueueError> {
        Self::open_with(
            path,
            Create::No,
            checkpoint::Policy::default(),
            Table::work(),
        )
        .await
    }

    /// Opens the sibling queue `suffix` of the queue at `path`: a table of its own in the same file (see
    /// [`table`]). With [`Create::No`] a missing file is [`SqliteError::NoQueue`] and a missing table
    /// [`SqliteError::NoSibling`], and nothing is made.
    ///
    /// # Errors
    /// As [`SqliteQueue::open`]; [`ErrorKind::Invalid`](crate::ErrorKind) for a suffix that cannot name a table.
    pub(crate) async fn open_sibling(
        path: PathBuf,
        suffix: &str,
        create: Create,
    ) -> Result<Self, QueueError> {
        let table = Table::sibling(suffix)
            .map_err(|reason| QueueError::new(crate::ErrorKind::Invalid, reason))?;
        Self::open_with(path, create, checkpoint::Policy::default(), table).await
    }

    async fn open_with(
        path: PathBuf,
        create: Create,
        policy: checkpoint::Policy,
        table: Table,
    ) -> Result<Self, QueueError> {
        // SQLite creates a missing file but not a missing directory, and then says only "unable to open
        // database file", three times over; the directory is what the user must fix.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(SqliteError::NoDirectory {
                dir: dir.to_path_buf(),
            }
            .into());
        }
        let p = path.clone();
        let (conn, table) =
            tokio::task::spawn_blocking(move || open_table(&p, create, &table).map(|c| (c, table)))
                .await
                .map_err(QueueError::interrupted)??;
        // Commits no longer checkpoint: a thread does (see the checkpoint module).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(|source| SqliteError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let checkpointer = if table.is_work() {
            checkpoint::spawn(path.clone(), policy)
        } else {
            checkpoint::shared(path.clone(), policy)
        };
        Ok(SqliteQueue {
            path,
            conn: Arc::new(Mutex::new(conn)),
            checkpointer,
            table: Arc::new(table),
            expiry: None,
            window: OnceLock::new(),
            pusher: Mutex::new(None),
        })
    }

    /// Runs `f` with the connection: on this thread when the database's write lock is free, else on the
    /// blocking pool.
    ///
    /// The fast path first: `f` runs right here with a busy handler that does not wait, so it either finds
    /// the lock free and runs to its end (a transaction of a few hundred µs, like any stretch of CPU work in a
    /// task), or fails at its `BEGIN` with SQLITE_BUSY, having changed nothing (a failed transaction is rolled
    /// back), and is run again on the blocking pool, where the busy handler waits. Why: with 1 producer and 2
    /// consumer processes the write lock is the bottleneck, and each trip through the blocking pool (a thread
    /// woken to run `f`, this one woken for its result) left the lock idle in between, while the other
    /// processes slept out their busy handler's 1 ms: a quarter of the lock's time in the embedded benchmark.
    async fn with_conn<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        // A lock held by this process's other operation, or poisoned, is the blocking pool's business.
        if let Ok(mut guard) = self.conn.try_lock() {
            let result = {
                let _no_wait = NoWait::set();
                f(&mut guard)
            };
            match result {
                Err(e) if is_busy(&e) => {}
                other => {
                    return other.map_err(|source| {
                        SqliteError::Sqlite {
                            path: self.path.clone(),
                            source,
                        }
                        .into()
                    });
                }
            }
        }
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means another operation panicked mid-way; SQLite rolled its transaction back, so
            // the connection itself is still sound.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(|source| SqliteError::Sqlite { path, source }.into())
        })
        .await
        .map_err(QueueError::interrupted)?
    }

    /// One transaction of records (into a sibling's table), acks and a claim; then, when it claimed nothing,
    /// polling until `wait` has passed.
    async fn recorded(
        &self,
        records: Option<Records>,
        acks: Vec<Receipt>,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<(AckOutcome, Vec<Delivery>), QueueError> {
        let ids = sqlite_receipts(&acks)?;
        let had_acks = !ids.is_empty();
        if let Some(p) = self.pusher(max, lease) {
            // Acks alone (`Queue::ack`) say nothing of what the caller wants next.
            let receive = (max > 0 || ids.is_empty()).then_some(max);
            let outcome = match p.send(ids, records, receive, lease) {
                push::Sent::Queued(None) => AckOutcome::default(),
                push::Sent::Queued(Some(answer)) => answer
                    .await
                    .map_err(|_| QueueError::interrupted("the claiming thread ended"))??,
                // Deliveries were stopped meanwhile: this call goes from here.
                push::Sent::Stopped(records) => {
                    let records = records.map(|r| *r);
                    let ids = sqlite_receipts(&acks)?;
                    return self.pulled(records, ids, max, lease, wait).await;
                }
            };
            let got = p.take(max, wait).await;
            return Ok((outcome, crate::received_after_acks(got, had_acks)?));
        }
        self.pulled(records, ids, max, lease, wait).await
    }

    /// [`SqliteQueue::recorded`] from the calling task: one transaction, then polling.
    async fn pulled(
        &self,
        mut records: Option<Records>,
        ids: Vec<SqliteReceipt>,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<(AckOutcome, Vec<Delivery>), QueueError> {
        let had_acks = !ids.is_empty();
        let t = self.table.clone();
        let (outcome, got) = self
            .with_conn(move |c| claim_tx(c, &t, records.as_mut(), &ids, max, lease))
            .await?;
        if !got.is_empty() || max == 0 || wait.is_zero() {
            return Ok((outcome, got));
        }
        // The acks are committed: a failed poll after them must not hide that.
        let got = crate::received_after_acks(self.poll_receive(max, lease, wait).await, had_acks)?;
        Ok((outcome, got))
    }

    /// Receives with polling until `wait` has passed, after a first claim that may carry acks.
    async fn poll_receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        let mut pause = POLL_MIN;
        loop {
            let t = self.table.clone();
            let got = self
                .with_conn(move |c| claim_tx(c, &t, None, &[], max, lease))
                .await?
                .1;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

/// Acks in the background answered already (nothing to send, or nothing that could be).
fn answered(answer: Result<AckOutcome, QueueError>) -> crate::Background {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(answer);
    crate::Background::Queued(rx)
}

fn sqlite_receipts(receipts: &[Receipt]) -> Result<Vec<SqliteReceipt>, QueueError> {
    receipts
        .iter()
        .map(|r| r.get::<SqliteReceipt>().copied())
        .collect()
}

fn sqlite_ids(receipts: &[Receipt]) -> Result<Vec<(i64, i64)>, QueueError> {
    receipts
        .iter()
        .map(|r| r.get::<SqliteReceipt>().map(|r| (r.id, r.token)))
        .collect()
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        if let Some(after) = self.expiry {
            return self.publish_expiring(bodies, after).await;
        }
        let t = self.table.clone();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(&t.insert)?;
                for body in &bodies {
                    insert.execute([body])?;
                }
            }
            add_counter(&tx, &t.messages, bodies.len() as i64)?;
            tx.commit()
        })
        .await
    }

    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if self.window.get().is_some() {
            return Ok(self.recorded(None, Vec::new(), max, lease, wait).await?.1);
        }
        self.poll_receive(max, lease, wait).await
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        if self.running().is_some() {
            // Through the thread, which keeps its count of what is held right.
            let answer = self.recorded(None, receipts, 0, Duration::ZERO, Duration::ZERO);
            return Ok(answer.await?.0);
        }
        let ids = sqlite_receipts(&receipts)?;
        let t = self.table.clone();
        Ok(self
            .with_conn(move |c| claim_tx(c, &t, None, &ids, 0, Duration::ZERO))
            .await?
            .0)
    }

    async fn ack_and_receive(
        &self,
        acks: Vec<Receipt>,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<(AckOutcome, Vec<Delivery>), QueueError> {
        self.recorded(None, acks, max, lease, wait).await
    }

    /// This file's table for `suffix` is written in the acks' own transaction.
    fn records_with_acks(&self, suffix: &str) -> bool {
        Table::sibling(suffix).is_ok()
    }

    async fn ack_and_receive_recorded(
        &self,
        records: Recorded,
        acks: Vec<Receipt>,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<(AckOutcome, Vec<Delivery>), QueueError> {
        let records = Records::sibling(records)?;
        self.recorded(Some(records), acks, max, lease, wait).await
    }

    fn ack_in_background(
        &self,
        acks: Vec<Receipt>,
        records: Option<Recorded>,
    ) -> crate::Background {
        let Some(p) = self.running() else {
            return crate::Background::Declined(acks, records);
        };
        let parsed = sqlite_receipts(&acks)
            .and_then(|ids| Ok((ids, records.map(Records::sibling).transpose()?)));
        let (ids, records) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => return answered(Err(e)),
        };
        match p.send(ids, records, None, Duration::ZERO) {
            push::Sent::Queued(Some(answer)) => crate::Background::Queued(answer),
            push::Sent::Queued(None) => answered(Ok(AckOutcome::default())),
            push::Sent::Stopped(records) => {
                crate::Background::Declined(acks, records.map(|r| r.into_recorded()))
            }
        }
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        let ids = sqlite_ids(&receipts)?;
        let n = ids.len();
        let t = self.table.clone();
        let released = self
            .with_conn(move |c| {
                let visible_at = unix_millis() + delay.as_millis().min(i64::MAX as u128 / 2) as i64;
                release_tx(c, &t, &ids, visible_at, true)
            })
            .await?;
        if let Some(p) = self.running() {
            p.settled(n);
        }
        Ok(released)
    }

    async fn extend(
        &self,
        receipts: &mut [Receipt],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        let ids = sqlite_ids(receipts)?;
        let t = self.table.clone();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let visible_at = unix_millis() + lease.as_millis().min(i64::MAX as u128 / 2) as i64;
            let mut held = Vec::with_capacity(ids.len());
            {
                let mut update = tx.prepare_cached(&t.extend)?;
                for &(id, token) in &ids {
                    held.push(update.execute(params![id, token, visible_at])? == 1);
                }
            }
            tx.commit()?;
            Ok(held)
        })
        .await
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let t = self.table.clone();
        self.with_conn(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT name, value FROM mw_counters WHERE name IN (?1, ?2)")?;
            let mut rows = stmt.query([&t.messages, &t.leased])?;
            let (mut messages, mut leased) = (0i64, 0i64);
            while let Some(row) = rows.next()? {
                let name = row.get_ref(0)?.as_str().unwrap_or_default();
                if name == t.messages {
                    messages = row.get(1)?;
                } else if name == t.leased {
                    leased = row.get(1)?;
                }
            }
            let in_flight = leased.clamp(0, messages.max(0)) as u64;
            Ok(Depth {
                visible: messages.max(0) as u64 - in_flight,
                in_flight: Some(in_flight),
            })
        })
        .await
    }

    async fn stop_receiving(&self) -> Result<(), QueueError> {
        let Some(p) = self.running() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || p.stop())
            .await
            .map_err(QueueError::interrupted)?
    }

    fn hold_at_most(&self, messages: usize) {
        // Said once, before the first receive; a second word changes nothing.
        let _ = self.window.set(messages.max(1));
    }

    fn describe(&self) -> String {
        match self.table.is_work() {
            true => format!("sqlite:{}", self.path.display()),
            false => format!("sqlite:{} (table {})", self.path.display(), self.table.name),
        }
    }
}

#[cfg(test)]
mod tests;

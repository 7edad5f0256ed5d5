//! A consumer's claims made ahead by a thread of its own, as a broker pushes messages up to a window.
//!
//! Why: the write lock is the embedded queue's bottleneck, and a consumer that claims only when it asks left
//! it idle while it took in each batch (decoding, writing its ledger) between two transactions, ~90 µs per
//! batch of 100, while the other processes slept out their busy handler's 1 ms: a quarter of the lock's time
//! in the embedded benchmark, and every time another process took the lock in such a gap, this one's page
//! cache was stale. This thread instead runs its transactions back to back, each with the acks that arrived
//! meanwhile and a claim for the room left in the window, and the consumer takes messages from its buffer.
//!
//! Only a consumer that says how many messages it may hold ([`crate::Queue::hold_at_most`]) gets one; the
//! window bounds what is claimed and not yet acked or released, buffered messages included, and the buffer
//! holds at most two of the caller's receives' worth (a consumer whose work fills its slots asks for little,
//! and other consumers should get the rest). Nothing is held back from the count: acks sent here are answered
//! only once committed. Claimed messages no caller took are given back, their delivery undone: when they
//! have waited half their lease (before it runs out, so no other consumer gets them while they sit here),
//! when deliveries stop ([`Pusher::stop`]), and when the handle is dropped. A killed process leaves them to
//! their lease, as any consumer's held messages.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};

use super::claim::{Records, claim_tx, release_tx};
use super::{POLL_MAX, POLL_MIN, SqliteError, SqliteReceipt, Table};
use crate::{AckOutcome, Delivery, QueueError};

/// The pause after a failed transaction that had no acks in it (one with acks answers them with the error).
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The claiming thread and what it shares with the handle.
pub(super) struct Pusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the thread: acks to send, room in the window, or a stop.
    wake: Condvar,
    /// Wakes the caller waiting for messages: some were buffered, or a claim failed.
    ready: Notify,
}

struct State {
    /// The most messages claimed and not yet acked or released.
    window: usize,
    /// The most one transaction claims: the largest `max` a caller asked for.
    batch: usize,
    lease: Duration,
    /// Claimed by the thread and neither acked nor released yet, buffered ones included.
    outstanding: usize,
    /// What the caller's last receive asked for: the buffer holds at most two such turns' worth, so that
    /// nothing waits there long (a caller whose work fills its slots asks for little).
    want: usize,
    /// Claimed and not yet taken, with when.
    buffer: VecDeque<(Instant, Delivery)>,
    jobs: VecDeque<Job>,
    /// A failed claim with no acks in it, for the next caller that finds the buffer empty.
    error: Option<QueueError>,
    stop: bool,
}

/// Acks (and the ledger records that go with them) for the thread's next transaction.
struct Job {
    acks: Vec<SqliteReceipt>,
    records: Option<Records>,
    done: oneshot::Sender<Result<AckOutcome, QueueError>>,
}

/// What a caller hands the thread: its acks were queued (answered on the receiver), or deliveries have
/// stopped and the caller must send them itself.
pub(super) enum Sent {
    Queued(Option<oneshot::Receiver<Result<AckOutcome, QueueError>>>),
    Stopped(Option<Box<Records>>),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain counters and queues, still consistent enough to stop with.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pusher {
    /// Starts the thread claiming ahead, up to `window` messages, `batch` at most per transaction.
    pub(super) fn start(
        conn: Arc<Mutex<Connection>>,
        table: Arc<Table>,
        path: PathBuf,
        window: usize,
        batch: usize,
        lease: Duration,
    ) -> std::io::Result<Pusher> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                window,
                batch: batch.clamp(1, window.max(1)),
                lease,
                outstanding: 0,
                want: batch,
                buffer: VecDeque::new(),
                jobs: VecDeque::new(),
                error: None,
                stop: false,
            }),
            wake: Condvar::new(),
            ready: Notify::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-claimer".into())
            .spawn(move || {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&s, &conn, &table, &path);
                }));
                if ran.is_err() {
                    // Callers must not wait for answers that will never come: their acks are dropped
                    // unanswered (they see the thread end and send them again themselves), and deliveries
                    // stop. What it had claimed returns when its lease ends.
                    let mut st = s.lock();
                    st.stop = true;
                    st.jobs.clear();
                    st.buffer.clear();
                    drop(st);
                    s.ready.notify_one();
                }
            })?;
        Ok(Pusher {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `acks` (with their records) for the next transaction, and notes what a receive (`receive`:
    /// its `max`; `None` for acks alone) asked for.
    pub(super) fn send(
        &self,
        acks: Vec<SqliteReceipt>,
        records: Option<Records>,
        receive: Option<usize>,
        lease: Duration,
    ) -> Sent {
        let mut s = self.shared.lock();
        if s.stop {
            return Sent::Stopped(records.map(Box::new));
        }
        if let Some(max) = receive {
            s.want = max;
            if max > 0 {
                s.lease = lease;
                s.batch = s.batch.max(max).min(s.window.max(1));
            }
        }
        let rx = (!acks.is_empty() || records.is_some()).then(|| {
            let (done, rx) = oneshot::channel();
            s.jobs.push_back(Job {
                acks,
                records,
                done,
            });
            rx
        });
        drop(s);
        self.shared.wake.notify_one();
        Sent::Queued(rx)
    }

    /// Up to `max` buffered messages, waiting up to `wait` for one; a failed claim's error when none came.
    pub(super) async fn take(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut s = self.shared.lock();
                if max > 0 && !s.buffer.is_empty() {
                    let n = max.min(s.buffer.len());
                    let taken = s.buffer.drain(..n).map(|(_, d)| d).collect();
                    // What was taken is room in the buffer for the thread (see `room`).
                    drop(s);
                    self.shared.wake.notify_one();
                    return Ok(taken);
                }
                if let Some(e) = s.error.take() {
                    return Err(e);
                }
                if s.stop || max == 0 {
                    return Ok(Vec::new());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // A wake-up that came before this wait left a permit, so none is missed.
            let _ = tokio::time::timeout(deadline - now, self.shared.ready.notified()).await;
        }
    }

    /// Notes messages acked or released outside the thread's transactions: room in the window again.
    pub(super) fn settled(&self, n: usize) {
        let mut s = self.shared.lock();
        s.outstanding = s.outstanding.saturating_sub(n);
        drop(s);
        self.shared.wake.notify_one();
    }

    /// Whether deliveries were stopped.
    pub(super) fn stopped(&self) -> bool {
        self.shared.lock().stop
    }

    /// Stops claiming; the thread sends the acks already queued, releases what is buffered, and ends.
    /// Returns the release's error, if it failed (those messages then return when their lease ends).
    pub(super) fn stop(&self) -> Result<(), QueueError> {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        match self.shared.lock().error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl super::SqliteQueue {
    /// The thread claiming ahead for a consumer that said how much it holds (started by its first receive,
    /// and again by a receive after deliveries were stopped); `None` without a window, for acks alone
    /// when there is none running, or when it cannot start (the handle then claims when asked).
    pub(super) fn pusher(&self, max: usize, lease: Duration) -> Option<Arc<Pusher>> {
        let window = *self.window.get()?;
        let mut slot = self.pusher.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = slot.as_ref().filter(|p| !p.stopped()) {
            return Some(p.clone());
        }
        if max == 0 {
            return None;
        }
        let (conn, table, path) = (self.conn.clone(), self.table.clone(), self.path.clone());
        match Pusher::start(conn, table, path, window, max, lease) {
            Ok(p) => {
                let p = Arc::new(p);
                *slot = Some(p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the claiming thread; claiming when asked");
                None
            }
        }
    }

    /// The claiming thread, while it runs.
    pub(super) fn running(&self) -> Option<Arc<Pusher>> {
        let slot = self.pusher.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|p| !p.stopped()).cloned()
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "could not release buffered messages; they return when their lease ends");
        }
    }
}

/// What the thread does next.
enum Next {
    /// Deliveries stopped and every queued ack sent: give back the buffer and end.
    Stop,
    /// Messages waited in the buffer half their lease: give them back before it runs out.
    Stale,
    /// A transaction: queued acks, a claim, or both.
    Work,
    /// Nothing until woken, or until then.
    Wait(Option<Instant>),
}

/// How long a claimed message may wait in the buffer.
fn stale_after(s: &State) -> Duration {
    (s.lease / 2).max(Duration::from_millis(100))
}

/// The room for a claim in a transaction that also acks `acked` messages (deleted before its claim).
fn room(s: &State, acked: usize) -> usize {
    if s.stop {
        return 0;
    }
    let held = s.outstanding.saturating_sub(acked);
    s.window
        .saturating_sub(held)
        .min(s.batch)
        .min((2 * s.want).saturating_sub(s.buffer.len()))
}

fn next(s: &State, idle_until: Option<Instant>, now: Instant) -> Next {
    if s.stop {
        return if s.jobs.is_empty() {
            Next::Stop
        } else {
            Next::Work
        };
    }
    let stale_at = s.buffer.front().map(|(at, _)| *at + stale_after(s));
    if stale_at.is_some_and(|t| t <= now) {
        return Next::Stale;
    }
    if !s.jobs.is_empty() {
        // Acks go at once, and claim what room there is, back-off or not.
        return Next::Work;
    }
    // A claim alone takes a whole batch, or comes for a caller that has nothing left: a sliver of room waits
    // for the acks that widen it (each transaction costs a commit).
    let room = room(s, 0);
    let claimable = room > 0 && (room == s.batch || s.buffer.is_empty());
    match idle_until {
        _ if !claimable => Next::Wait(stale_at),
        Some(t) if now < t => Next::Wait(Some(stale_at.map_or(t, |st| st.min(t)))),
        _ => Next::Work,
    }
}

/// The thread: one transaction after another while there are acks to send or room to claim into, with a
/// back-off (1 ms doubling to 25 ms, as a polling receive) while claims find nothing.
fn run(shared: &Shared, conn: &Mutex<Connection>, table: &Table, path: &Path) {
    let mut pause = POLL_MIN;
    let mut idle_until: Option<Instant> = None;
    loop {
        let mut s = shared.lock();
        let step = loop {
            let now = Instant::now();
            match next(&s, idle_until, now) {
                Next::Wait(None) => {
                    s = shared.wake.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                Next::Wait(Some(t)) => {
                    let d = t.saturating_duration_since(now);
                    s = shared
                        .wake
                        .wait_timeout(s, d)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                step => break step,
            }
        };
        match step {
            Next::Stop => {
                let buffered: Vec<Delivery> = s.buffer.drain(..).map(|(_, d)| d).collect();
                s.outstanding = s.outstanding.saturating_sub(buffered.len());
                drop(s);
                release_buffered(shared, conn, table, path, buffered);
                shared.ready.notify_one();
                return;
            }
            Next::Stale => {
                let now = Instant::now();
                let after = stale_after(&s);
                let mut stale = Vec::new();
                while s.buffer.front().is_some_and(|(at, _)| *at + after <= now) {
                    if let Some((_, d)) = s.buffer.pop_front() {
                        stale.push(d);
                    }
                }
                s.outstanding = s.outstanding.saturating_sub(stale.len());
                drop(s);
                release_buffered(shared, conn, table, path, stale);
                continue;
            }
            Next::Work | Next::Wait(_) => {}
        }
        let job = s.jobs.pop_front();
        let acked = job.as_ref().map_or(0, |j| j.acks.len());
        let (max, lease) = (room(&s, acked), s.lease);
        drop(s);
        let (acks, mut records, done) = match job {
            Some(j) => (j.acks, j.records, Some(j.done)),
            None => (Vec::new(), None, None),
        };
        let result = {
            let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            claim_tx(&mut c, table, records.as_mut(), &acks, max, lease)
        };
        let mut s = shared.lock();
        match result {
            Ok((outcome, got)) => {
                s.outstanding = s.outstanding.saturating_sub(acks.len()) + got.len();
                if got.len() < max {
                    // The queue ran dry: the next claim alone waits (1 ms, doubling while claims find
                    // nothing), rather than taking the lock from the producer for a few messages at a time.
                    idle_until = Some(Instant::now() + pause);
                    if got.is_empty() {
                        pause = (pause * 2).min(POLL_MAX);
                    } else {
                        pause = POLL_MIN;
                    }
                } else {
                    idle_until = None;
                    pause = POLL_MIN;
                }
                if !got.is_empty() {
                    let now = Instant::now();
                    s.buffer.extend(got.into_iter().map(|d| (now, d)));
                    shared.ready.notify_one();
                }
                drop(s);
                if let Some(done) = done {
                    // The caller waits for this answer; one that is gone was shutting down.
                    let _ = done.send(Ok(outcome));
                }
            }
            Err(source) => {
                let e: QueueError = SqliteError::Sqlite {
                    path: path.to_path_buf(),
                    source,
                }
                .into();
                idle_until = Some(Instant::now() + ERROR_PAUSE);
                match done {
                    Some(done) => {
                        drop(s);
                        let _ = done.send(Err(e));
                    }
                    None => {
                        s.error = Some(e);
                        drop(s);
                        shared.ready.notify_one();
                    }
                }
            }
        }
    }
}

/// Gives back what the thread claimed and no caller took, so that other consumers get it at once.
fn release_buffered(
    shared: &Shared,
    conn: &Mutex<Connection>,
    table: &Table,
    path: &Path,
    buffered: Vec<Delivery>,
) {
    let ids: Vec<(i64, i64)> = buffered
        .iter()
        .filter_map(|d| d.receipt.get::<SqliteReceipt>().ok())
        .map(|r| (r.id, r.token))
        .collect();
    if ids.is_empty() {
        return;
    }
    let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
    let released = release_tx(&mut c, table, &ids, workload::clock::unix_millis(), false);
    drop(c);
    match released {
        Ok(n) => tracing::debug!(released = n, "gave back the messages claimed ahead"),
        Err(source) => {
            shared.lock().error = Some(
                SqliteError::Sqlite {
                    path: path.to_path_buf(),
                    source,
                }
                .into(),
            )
        }
    }
}

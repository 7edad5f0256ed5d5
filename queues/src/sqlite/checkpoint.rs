//! WAL checkpoints on a thread and connection of their own, so that no publish or claim pays for them, and a
//! WAL that stays bounded under load that never pauses.
//!
//! With SQLite's automatic checkpoints, the commit that pushes the WAL past its limit copies the whole WAL
//! into the database and fsyncs it first: a producer paced at 1,000 msgs/s stalled 5–17 ms every few seconds,
//! which put more than 1 % of a second's messages behind schedule. A PASSIVE checkpoint takes no write lock,
//! so writers carry on meanwhile. Every process that opens the queue runs one, so the WAL stays bounded
//! whoever is writing.
//!
//! PASSIVE alone is not enough under saturation. SQLite starts the WAL over only when a writer begins while
//! every frame has been copied back and no reader still uses one, and with one producer and two consumers
//! writing back to back that moment never came: the WAL grew by ~1 KB per message, to 920 MB over the
//! embedded benchmark's million messages, and would fill a disk in a long run. So when a PASSIVE round
//! leaves more than [`RESTART_AFTER_FRAMES`] frames in the WAL, a RESTART checkpoint follows: it holds the
//! write lock, copies the last frames and starts the WAL over. Its wait for readers is cut short after
//! [`RESTART_WAIT`] (see [`restart_busy_handler`]), so writers are never held up for longer; a round that
//! gave up is tried again 200 ms later.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{Create, open_connection};

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Frames left in the WAL after a PASSIVE round above which a RESTART follows: 16 MiB of 4 KiB pages.
pub(super) const RESTART_AFTER_FRAMES: i64 = 4096;

/// The longest a RESTART waits (holding the write lock, so writers wait too) for readers to finish.
const RESTART_WAIT: Duration = Duration::from_millis(10);

/// What the checkpointer of one queue handle did, for tests and the curious.
#[derive(Debug, Default)]
pub(super) struct Rounds {
    /// RESTART checkpoints that started the WAL over.
    pub(super) restarts: AtomicU64,
    /// RESTART checkpoints that gave up waiting for a reader (the next round tries again).
    pub(super) restarts_busy: AtomicU64,
}

/// Settings of a checkpointer: the defaults above, smaller in tests.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    pub(super) every: Duration,
    pub(super) restart_after_frames: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            every: CHECKPOINT_EVERY,
            restart_after_frames: RESTART_AFTER_FRAMES,
        }
    }
}

/// A running checkpointer. Dropping it stops the thread and waits for it, so that its connection is closed
/// with the queue's: SQLite deletes the WAL when the last connection to a database closes, and a thread left
/// asleep when the process exited kept its connection open to the end, which left a WAL of up to ~100 MB
/// (and its `-shm`) beside every queue file after a run.
pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    /// What it did (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) rounds: Arc<Rounds>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // At most one round to finish: a RESTART gives up after RESTART_WAIT.
            let _ = thread.join();
        }
    }
}

/// The checkpointers running in this process, by file, so that a sibling's handle can share one.
static RUNNING: Mutex<Vec<(PathBuf, Weak<Checkpointer>)>> = Mutex::new(Vec::new());

/// A checkpointer already running in this process for the file at `path`, else a new one: for a sibling
/// queue's handle (a table in the work queue's file), whose process nearly always has the work queue open and
/// a checkpointer for the file's one WAL with it. A second would only wake every 200 ms to find the WAL done.
pub(super) fn shared(path: PathBuf, policy: Policy) -> Arc<Checkpointer> {
    let running = RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(p, _)| *p == path)
        .and_then(|(_, c)| c.upgrade());
    running.unwrap_or_else(|| spawn(path, policy))
}

/// Starts a checkpointer of its own for the queue at `path` (a work queue's handle: tests open several in one
/// process, as separate processes would).
pub(super) fn spawn(path: PathBuf, policy: Policy) -> Arc<Checkpointer> {
    let checkpointer = Arc::new(start(path.clone(), policy));
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    running.retain(|(_, c)| c.strong_count() > 0);
    running.push((path, Arc::downgrade(&checkpointer)));
    checkpointer
}

fn start(path: PathBuf, policy: Policy) -> Checkpointer {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let rounds = Arc::new(Rounds::default());
    let (thread_stop, thread_rounds) = (stop.clone(), rounds.clone());
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            // Never creating: a file removed after the queue opened (the demo's temporary directory going) must
            // not come back as a new empty queue with its -wal and -shm files.
            let conn = match open_connection(&path, Create::No) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "no background checkpoints: the WAL is checkpointed by commits");
                    return;
                }
            };
            if let Err(e) = conn.busy_handler(Some(restart_busy_handler)) {
                tracing::warn!(error = %e, "no background checkpoints: the WAL is checkpointed by commits");
                return;
            }
            let (stopped, wake) = &*thread_stop;
            loop {
                let guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
                let (guard, _) = wake
                    .wait_timeout_while(guard, policy.every, |stopped| !*stopped)
                    .unwrap_or_else(|p| p.into_inner());
                if *guard {
                    return;
                }
                drop(guard);
                if let Err(e) = round(&conn, policy.restart_after_frames, &thread_rounds) {
                    tracing::debug!(error = %e, "checkpoint failed; retrying");
                }
            }
        });
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the checkpoint thread");
            None
        }
    };
    Checkpointer {
        stop,
        thread,
        rounds,
    }
}

/// One round: a PASSIVE checkpoint, then a RESTART when the WAL still holds more than `restart_after` frames.
pub(super) fn round(
    conn: &Connection,
    restart_after: i64,
    rounds: &Rounds,
) -> rusqlite::Result<()> {
    // The pragma's row: (1 when blocked, frames in the WAL, frames copied back); -1s when not in WAL mode.
    let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
    if frames > restart_after {
        let blocked: i64 = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))?;
        let counter = if blocked == 0 {
            &rounds.restarts
        } else {
            &rounds.restarts_busy
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The checkpointer connection's busy handler: 1 ms sleeps up to [`RESTART_WAIT`], then the RESTART gives up
/// (a PASSIVE checkpoint never calls it). A RESTART holds the write lock while it waits, so the queue's own
/// 30 s patience would stall every writer behind one slow reader.
fn restart_busy_handler(retries: i32) -> bool {
    std::thread::sleep(Duration::from_millis(1));
    (retries as u128) < RESTART_WAIT.as_millis()
}

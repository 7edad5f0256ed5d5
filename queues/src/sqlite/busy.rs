//! Waiting for SQLite's write lock: a busy handler that sleeps a fixed 1 ms (see the module docs of
//! [`super`] for why), and the switch that makes it not wait at all on an async task's own thread.

use std::time::Duration;

use rusqlite::ErrorCode;

/// How long the busy handler keeps retrying a locked database before the operation fails (in 1 ms sleeps).
const BUSY_RETRIES: i32 = 30_000;

/// Sleeps a fixed 1 ms per retry; see the module docs for why not SQLite's growing back-off. On a thread
/// inside [`NoWait`] it does not wait at all: the operation fails with SQLITE_BUSY and is retried on the
/// blocking pool (see `SqliteQueue::with_conn`).
pub(super) fn busy_handler(retries: i32) -> bool {
    if NO_WAIT.get() {
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    retries < BUSY_RETRIES
}

thread_local! {
    /// Set while an operation runs on an async task's own thread, which must not sleep in the busy handler.
    static NO_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as one whose SQLite calls must not wait for a lock, until dropped (also on a panic).
pub(super) struct NoWait;

impl NoWait {
    pub(super) fn set() -> NoWait {
        NO_WAIT.set(true);
        NoWait
    }
}

impl Drop for NoWait {
    fn drop(&mut self) {
        NO_WAIT.set(false);
    }
}

/// Whether SQLite refused for a lock held elsewhere (what the busy handler would otherwise have waited out).
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

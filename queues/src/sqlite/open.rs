//! Opening a queue file: made when missing (unless only an existing queue will do), checked to be ours, with
//! the schema of the table asked for, and switched to WAL.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::busy::busy_handler;
use super::table::Table;
use super::{APPLICATION_ID, SCHEMA, SqliteError};

/// Whether opening may create a missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Create {
    Yes,
    No,
}

/// How long opening keeps retrying while other processes create the file or switch it to WAL.
const OPEN_RETRY_FOR: Duration = Duration::from_secs(10);

/// Opens and checks the file, retrying while it is busy: SQLite returns SQLITE_BUSY without calling the busy
/// handler in a few set-up cases (switching the journal mode while another process opens the same new file).
pub(super) fn open_connection(path: &Path, create: Create) -> Result<Connection, SqliteError> {
    open_table(path, create, &Table::work())
}

/// [`open_connection`], for the queue in `table` (made when missing, unless `create` is [`Create::No`]).
pub(super) fn open_table(
    path: &Path,
    create: Create,
    table: &Table,
) -> Result<Connection, SqliteError> {
    let deadline = Instant::now() + OPEN_RETRY_FOR;
    loop {
        match try_open_connection(path, create, table) {
            Err(SqliteError::Sqlite { source, .. })
                if Instant::now() < deadline
                    && matches!(
                        source.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn try_open_connection(
    path: &Path,
    create: Create,
    table: &Table,
) -> Result<Connection, SqliteError> {
    let sqlite_err = |source: rusqlite::Error| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => SqliteError::NotADatabase {
            path: path.to_path_buf(),
        },
        _ => SqliteError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    };
    if path.is_dir() {
        return Err(SqliteError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let mut flags = OpenFlags::default();
    if create == Create::No {
        flags.remove(OpenFlags::SQLITE_OPEN_CREATE);
    }
    let mut conn =
        Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen) if create == Create::No && !path.exists() => {
                SqliteError::NoQueue {
                    path: path.to_path_buf(),
                }
            }
            _ => sqlite_err(e),
        })?;
    conn.busy_handler(Some(busy_handler)).map_err(sqlite_err)?;
    // The bundled SQLite is built with STAT4, under which binding a new value to a parameter the planner looked
    // at (the claim's `LIMIT ?`, `visible_at <= ?`) expires the statement: every claim was parsed and planned
    // again, 11 % of a consumer's time in SQLite (perf, 1 producer + 2 consumers). Our statements have one
    // good plan whatever the values, so hold the planner to it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(sqlite_err)?;
    // Check and create in one write transaction, so that two processes opening a new file at once cannot see
    // each other's half-made schema. Reading the header is the first thing that fails on a non-SQLite file.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    let app_id: i32 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    let tables: i64 = tx
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite_err)?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        let detail = if app_id != 0 {
            format!("application_id is {app_id:#x}")
        } else {
            format!("it holds {tables} other table(s)")
        };
        return Err(SqliteError::ForeignDatabase {
            path: path.to_path_buf(),
            detail,
        });
    }
    tx.execute_batch(SCHEMA).map_err(sqlite_err)?;
    tx.execute_batch(&Table::work().schema())
        .map_err(sqlite_err)?;
    if !table.is_work() {
        // A reader of a sibling (a watch, an audit) must not make it: nothing published there yet.
        let exists: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [&table.name],
                |r| r.get(0),
            )
            .map_err(sqlite_err)?;
        if exists == 0 && create == Create::No {
            return Err(SqliteError::NoSibling {
                path: path.to_path_buf(),
                table: table.name.clone(),
            });
        }
        tx.execute_batch(&table.schema()).map_err(sqlite_err)?;
    }
    tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
        .map_err(sqlite_err)?;
    tx.commit().map_err(sqlite_err)?;
    // Only now, knowing the file is ours, switch it to WAL (a setting stored in the file).
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(sqlite_err)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(sqlite_err)?;
    Ok(conn)
}

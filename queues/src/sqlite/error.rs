//! What can go wrong with the embedded queue, and what kind of failure each is for callers.

use std::path::PathBuf;

use crate::{ErrorKind, QueueError};

/// A failure of the SQLite queue.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// The file exists but is not a SQLite database.
    #[error("{path} is not a SQLite database (is this the right file?)")]
    NotADatabase { path: PathBuf },
    /// The directory of the file does not exist (SQLite creates the file, not its directory).
    #[error("the directory {dir} does not exist: create it, or fix the path")]
    NoDirectory { dir: PathBuf },
    /// The file is a database, but not a queue this suite made.
    #[error("{path} is a SQLite database but not a queue made by this suite ({detail})")]
    ForeignDatabase { path: PathBuf, detail: String },
    /// The path names a directory.
    #[error("{} is a directory: name a file, for example sqlite:./queue.db", path.display())]
    IsDirectory { path: PathBuf },
    /// Opening an existing queue only ([`crate::OpenMode::Existing`]), and there is no file.
    #[error("no queue at {}", path.display())]
    NoQueue { path: PathBuf },
    /// Opening an existing queue only, and the file has no table for the sibling queue asked for.
    #[error("{} has no {table} queue yet (nothing was published to it)", path.display())]
    NoSibling { path: PathBuf, table: String },
    /// Any other SQLite failure.
    #[error("queue {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl From<SqliteError> for QueueError {
    fn from(e: SqliteError) -> QueueError {
        let kind = match &e {
            SqliteError::NotADatabase { .. }
            | SqliteError::ForeignDatabase { .. }
            | SqliteError::IsDirectory { .. }
            | SqliteError::NoDirectory { .. } => ErrorKind::Invalid,
            SqliteError::NoQueue { .. } | SqliteError::NoSibling { .. } => ErrorKind::NotFound,
            SqliteError::Sqlite { source, .. } => match source.sqlite_error_code() {
                // Another process holds the lock past the busy handler's patience: worth a retry.
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Other,
            },
        };
        QueueError::new(kind, e)
    }
}

//! The `sqlite:PATH` URL (also `sqlite://PATH`) and this backend's registration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Create, SqliteQueue};
use crate::{Backend, OpenMode, Queue, QueueError, Target};

/// The registry's entry for this backend (see [`crate::registry`]).
pub static BACKEND: SqliteBackend = SqliteBackend;

/// The embedded queue's [`Backend`].
pub struct SqliteBackend;

impl Backend for SqliteBackend {
    fn scheme(&self) -> &'static str {
        "sqlite"
    }

    fn form(&self) -> &'static str {
        "sqlite:PATH"
    }

    fn summary(&self) -> &'static str {
        "an embedded queue in a file, created when missing, shared by any number of processes on one machine"
    }

    fn example(&self) -> Option<&'static str> {
        Some("sqlite:./queue.db")
    }

    fn local_url(&self, dir: &std::path::Path) -> Option<String> {
        Some(format!("sqlite:{}", dir.join("queue.db").display()))
    }

    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String> {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(
                "no file path: expected sqlite:PATH (for example sqlite:./queue.db)".into(),
            );
        }
        // Every other backend reads options from a query string; here it would silently become part of the
        // file's name, and a password put there would be echoed in logs as a path. The error does not repeat it.
        if path.contains('?') {
            return Err(
                "sqlite:PATH takes no query string (the embedded queue has no options): remove everything from the '?'"
                    .into(),
            );
        }
        Ok(Box::new(SqliteUrl {
            path: PathBuf::from(path),
            sibling: None,
            expiry: None,
        }))
    }
}

/// A parsed `sqlite:` URL: the queue file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteUrl {
    pub path: PathBuf,
    /// Set by [`Target::sibling`] (never by the URL): the sibling queue's suffix, a table in the same file.
    pub sibling: Option<String>,
    /// Set by [`Target::with_expiry`] (never by the URL): messages published expire this long after.
    pub expiry: Option<Duration>,
}

#[async_trait]
impl Target for SqliteUrl {
    async fn open(&self, mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        let create = match mode {
            OpenMode::Create => Create::Yes,
            OpenMode::Existing => Create::No,
        };
        let queue = match &self.sibling {
            None if create == Create::Yes => SqliteQueue::open(self.path.clone()).await?,
            None => SqliteQueue::open_existing(self.path.clone()).await?,
            Some(suffix) => {
                warn_of_old_sibling_file(&self.path, suffix);
                SqliteQueue::open_sibling(self.path.clone(), suffix, create).await?
            }
        };
        Ok(Arc::new(match self.expiry {
            Some(after) => queue.expiring(after),
            None => queue,
        }))
    }

    /// A table beside the work queue's, in the same file: `queue.db` → its table `mw_telemetry` (see
    /// [`super::table`]). Its counters are its own, so the work queue's depth never counts its messages.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let table = super::table::Table::sibling(suffix)?;
        let shown = format!("table {} in the same file", table.name);
        Ok((
            Box::new(SqliteUrl {
                path: self.path.clone(),
                sibling: Some(suffix.to_string()),
                expiry: None,
            }),
            shown,
        ))
    }

    /// Each publish stamps its rows and deletes the unread ones older than `after` (see the backend).
    fn with_expiry(&self, after: Duration) -> Option<Box<dyn Target>> {
        Some(Box::new(SqliteUrl {
            path: self.path.clone(),
            sibling: self.sibling.clone(),
            expiry: Some(after),
        }))
    }
}

/// Versions before siblings were tables kept them in files beside the queue's (`queue-telemetry.db`): such a
/// file is no longer read or written, which a user auditing an older run must hear rather than find records
/// missing.
fn warn_of_old_sibling_file(path: &std::path::Path, suffix: &str) {
    let (Some(stem), ext) = (path.file_stem(), path.extension()) else {
        return;
    };
    let mut name = stem.to_os_string();
    name.push(format!("-{suffix}"));
    if let Some(ext) = ext {
        name.push(".");
        name.push(ext);
    }
    let old = path.with_file_name(name);
    if old.is_file() {
        tracing::warn!(
            "{} is from an earlier version (siblings in files of their own) and is not read: the {suffix} queue is now a table in {}",
            old.display(),
            path.display()
        );
    }
}

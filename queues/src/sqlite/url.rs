//! The `sqlite:PATH` URL (also `sqlite://PATH`) and this backend's registration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::SqliteQueue;
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
            expiry: None,
        }))
    }
}

/// A parsed `sqlite:` URL: the queue file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteUrl {
    pub path: PathBuf,
    /// Set by [`Target::with_expiry`] (never by the URL): messages published expire this long after.
    pub expiry: Option<Duration>,
}

#[async_trait]
impl Target for SqliteUrl {
    async fn open(&self, mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        let queue = match mode {
            OpenMode::Create => SqliteQueue::open(self.path.clone()).await?,
            OpenMode::Existing => SqliteQueue::open_existing(self.path.clone()).await?,
        };
        Ok(Arc::new(match self.expiry {
            Some(after) => queue.expiring(after),
            None => queue,
        }))
    }

    /// A sibling file beside the queue's: `queue.db` → `queue-telemetry.db`. One file is one queue here, so a
    /// sibling in its own file never touches the counters the work queue's depth reads.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let stem = self
            .path
            .file_stem()
            .ok_or_else(|| format!("{} names no file", self.path.display()))?;
        let mut name = stem.to_os_string();
        name.push(format!("-{suffix}"));
        if let Some(ext) = self.path.extension() {
            name.push(".");
            name.push(ext);
        }
        let path = self.path.with_file_name(name);
        let shown = path.display().to_string();
        Ok((Box::new(SqliteUrl { path, expiry: None }), shown))
    }

    /// Each publish stamps its rows and deletes the unread ones older than `after` (see the backend).
    fn with_expiry(&self, after: Duration) -> Option<Box<dyn Target>> {
        Some(Box::new(SqliteUrl {
            path: self.path.clone(),
            expiry: Some(after),
        }))
    }
}

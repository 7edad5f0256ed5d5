//! [`QueueError`]: one error type for every backend, with a [`ErrorKind`] that callers branch on.
//!
//! Callers (the producer's retry loop, the consumer's counters, the binaries' exit codes) only ever need to
//! know *what kind* of failure it was: throttled, too large, unavailable, invalid… The text, which is the
//! backend's own and says what failed and what to do, is shown as it is. So the error is a kind plus the
//! backend's error, boxed: no backend's variant appears here, and a new backend brings its own error type.

use std::fmt;

/// What kind of failure, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL or the configuration is wrong (bad syntax, unknown or compiled-out scheme, a file that is not
    /// a queue, a missing credential). Retrying will not help: a usage error.
    Invalid,
    /// The queue is not there, and this open was not allowed to create it.
    NotFound,
    /// The credential was refused (401/403, nsqd AUTH). Retrying will not help.
    Denied,
    /// The backend asked us to slow down (Azure 503 ServerBusy, 500, timeouts). Counted apart from errors.
    Throttled,
    /// A message is larger than the backend accepts; nothing was sent. Retrying will not help.
    TooLarge,
    /// The service could not be reached or the connection broke (nsqd down, Azurite stopped, DNS). Transient.
    Unavailable,
    /// Anything else.
    Other,
}

/// What can go wrong talking to a queue: a [`ErrorKind`] and the backend's own error, whose text is shown.
#[derive(Debug)]
pub struct QueueError {
    kind: ErrorKind,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl QueueError {
    /// An error of `kind` whose text (and causes) are `inner`'s.
    pub fn new(
        kind: ErrorKind,
        inner: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> QueueError {
        QueueError {
            kind,
            inner: inner.into(),
        }
    }

    /// The kind, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the backend asked us to slow down, so that callers count throttling apart from other errors.
    pub fn is_throttled(&self) -> bool {
        self.kind == ErrorKind::Throttled
    }

    /// The backend's own error, when it is a `T` (for a backend's tests, and callers that need its fields).
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// An invalid queue URL, with every secret in the URL and the reason masked (see [`workload::redact`]): a
    /// rejected URL is echoed to the user, and may be rejected for its secret.
    pub fn invalid_url(url: &str, reason: &str) -> QueueError {
        QueueError::new(
            ErrorKind::Invalid,
            InvalidUrl {
                url: workload::redact::url(url),
                reason: workload::redact::url(reason),
            },
        )
    }

    /// A message over the backend's limit (`what` names the limit); nothing was sent.
    pub fn too_large(size: usize, limit: usize, what: impl Into<String>) -> QueueError {
        QueueError::new(
            ErrorKind::TooLarge,
            TooLarge {
                size,
                limit,
                what: what.into(),
            },
        )
    }

    /// The blocking task running the operation died (the runtime is shutting down).
    pub fn interrupted(detail: impl fmt::Display) -> QueueError {
        QueueError::new(
            ErrorKind::Other,
            format!("queue operation was interrupted: {detail}"),
        )
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Transparent: the backend's text already says what failed and what to do.
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent, as `#[error(transparent)]` is: the backend's causes, not the backend's error again.
        self.inner.source()
    }
}

/// The queue URL is not one this build understands.
#[derive(Debug, thiserror::Error)]
#[error("invalid queue URL {url:?}: {reason}")]
struct InvalidUrl {
    url: String,
    reason: String,
}

/// A message is larger than the backend accepts.
#[derive(Debug, thiserror::Error)]
#[error("message of {size} bytes is over the {limit}-byte limit of {what}")]
struct TooLarge {
    size: usize,
    limit: usize,
    what: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_backends_and_secrets_in_urls_are_masked() {
        let e = QueueError::invalid_url("nsq://u:hunter2@h/t/c", "bad nsq://u:hunter2@h");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().starts_with("invalid queue URL"), "{e}");
        let e = QueueError::too_large(10, 5, "the test's limit");
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(!e.is_throttled());
        assert_eq!(
            e.to_string(),
            "message of 10 bytes is over the 5-byte limit of the test's limit"
        );
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        let e = QueueError::new(ErrorKind::Throttled, io);
        assert!(e.is_throttled());
        assert_eq!(e.to_string(), "slow");
        assert!(e.downcast_ref::<std::io::Error>().is_some());
    }
}

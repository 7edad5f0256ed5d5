//! The queue abstraction every backend implements, and [`open`], which picks a backend from a URL.
//!
//! The contract, which every backend keeps and the tests check:
//! - [`Queue::publish`] returns `Ok` only once the backend has durably accepted every message of the batch
//!   (SQLite: the transaction committed; NSQ: `OK`; Azure: 201). A producer counts a message as sent only then.
//! - [`Queue::receive`] leases messages: each is invisible to other consumers until its lease runs out, then it
//!   is delivered again with a higher delivery count. Delivery is at least once.
//! - [`Queue::ack`] removes a message for good, but only while the caller still holds its lease: a message whose
//!   lease passed to another consumer is reported in [`AckOutcome::lease_lost`], never silently acked twice.
//! - [`Queue::release`] gives a message back before its lease ends (on shutdown, or to retry later).
//! - [`Queue::extend`] keeps a lease alive during long work.
//! - [`Queue::depth`] is what a scaling engine reads; it must be cheap.

pub mod azure;
pub mod nsq;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use azure::{AzureError, AzureQueue, AzureUrl};
pub use sqlite::SqliteQueue;

/// A message handed to a consumer, with what it needs to ack it.
#[derive(Debug)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub receipt: Receipt,
    /// How many times this message has been delivered, this time included (1 = first delivery).
    pub deliveries: u32,
}

/// Proof of a lease, needed to ack, release or extend a message. Opaque: only the backend that issued it
/// can read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt(ReceiptInner);

#[derive(Clone, Debug, PartialEq, Eq)]
enum ReceiptInner {
    Sqlite {
        id: i64,
        token: i64,
    },
    /// The nsqd connection the message came on (FIN/REQ/TOUCH only work there) and nsqd's message id.
    /// `attempts` tells a redelivery of the same id apart from the delivery a receipt was issued for.
    Nsq {
        generation: u64,
        id: [u8; 16],
        attempts: u16,
    },
    /// Azure: the message id and its latest pop receipt (each visibility update issues a new one).
    Azure {
        id: String,
        pop: String,
    },
}

/// The result of acking a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    pub acked: u64,
    /// Messages whose lease had already passed to another consumer: they will be (or were) processed again.
    pub lease_lost: u64,
}

/// The figures a scaling engine reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// Messages waiting to be delivered (the backlog).
    pub visible: u64,
    /// Messages leased to a consumer and not yet acked or released, where the backend can tell.
    pub in_flight: Option<u64>,
}

impl Depth {
    /// Backlog plus in flight: every message not yet acked.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight.unwrap_or(0)
    }
}

/// What can go wrong talking to a queue.
#[derive(Debug, Error)]
pub enum QueueError {
    /// The queue URL is not one this build understands. Build it with [`QueueError::invalid_url`], which masks
    /// any secret the URL carries: a rejected URL is echoed to the user, and may be rejected for its secret.
    #[error("invalid queue URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The SQLite file exists but is not a SQLite database.
    #[error("{path} is not a SQLite database (is this the right file?)")]
    NotADatabase { path: PathBuf },
    /// The directory of the SQLite file does not exist (SQLite creates the file, not its directory).
    #[error("the directory {dir} does not exist: create it, or fix the path")]
    NoDirectory { dir: PathBuf },
    /// The SQLite file is a database, but not a queue this suite made.
    #[error("{path} is a SQLite database but not a queue made by this suite ({detail})")]
    ForeignDatabase { path: PathBuf, detail: String },
    /// Any other SQLite failure.
    #[error("queue {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A receipt from another backend was passed in.
    #[error("a receipt from another queue was used")]
    WrongReceipt,
    /// Talking to nsqd failed.
    #[error(transparent)]
    Nsq(#[from] nsq::NsqError),
    /// A call to Azure Storage failed (the text names the account, the operation and the HTTP status).
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// A message is larger than the backend accepts; nothing was sent.
    #[error("message of {size} bytes is over the {limit}-byte limit of {what}")]
    MessageTooLarge {
        size: usize,
        limit: usize,
        what: String,
    },
    /// The blocking task running the operation died (the runtime is shutting down).
    #[error("queue operation was interrupted: {0}")]
    Interrupted(String),
}

impl QueueError {
    /// [`QueueError::InvalidUrl`], with every secret in the URL and the reason masked (see [`crate::redact`]).
    pub fn invalid_url(url: &str, reason: &str) -> QueueError {
        QueueError::InvalidUrl {
            url: crate::redact::url(url),
            reason: crate::redact::url(reason),
        }
    }
}

/// A queue backend. See the module docs for the contract.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Publishes a batch; returns once every message is durably accepted.
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError>;

    /// Leases up to `max` messages for `lease`, waiting up to `wait` for at least one.
    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Acks (deletes) messages.
    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError>;

    /// Acks `acks`, then leases up to `max` messages. Backends that can do both in one round trip override
    /// this (SQLite does both in one transaction, which is most of its throughput).
    async fn ack_and_receive(
        &self,
        acks: Vec<Receipt>,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<(AckOutcome, Vec<Delivery>), QueueError> {
        let acked = if acks.is_empty() {
            AckOutcome::default()
        } else {
            self.ack(acks).await?
        };
        let got = if max == 0 {
            Vec::new()
        } else {
            self.receive(max, lease, wait).await?
        };
        Ok((acked, got))
    }

    /// Gives messages back: visible again after `delay` (zero: at once). Returns how many were still held.
    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError>;

    /// Extends the leases of `receipts` to `lease` from now, updating the receipts in place where the backend
    /// issues new ones. Returns a flag per receipt: false when the lease was already lost.
    async fn extend(
        &self,
        receipts: &mut [Receipt],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError>;

    /// The current depth.
    async fn depth(&self) -> Result<Depth, QueueError>;

    /// Stops new deliveries before a drain: push-based backends (NSQ) would otherwise keep sending messages
    /// the consumer no longer takes. Ack, release and extend of held messages keep working after it.
    /// Polling backends have nothing to do.
    async fn stop_receiving(&self) -> Result<(), QueueError> {
        Ok(())
    }

    /// The largest body [`Queue::publish`] accepts, before the backend's own encoding, where the backend has
    /// a limit (Azure: 64 KiB, or 48 KiB with base64). Producers check `--size` against it before sending.
    fn max_message_size(&self) -> Option<usize> {
        None
    }

    /// A description for logs, with no secrets in it.
    fn describe(&self) -> String;
}

impl QueueError {
    /// Whether the backend asked us to slow down (Azure: 503 ServerBusy, 500, timeouts), so that callers can
    /// count throttling apart from other errors.
    pub fn is_throttled(&self) -> bool {
        matches!(self, QueueError::Azure(e) if e.is_throttled())
    }
}

/// A parsed queue URL: which backend, and its settings.
///
/// | URL | backend |
/// |---|---|
/// | `sqlite:PATH` or `sqlite://PATH` | embedded queue in a SQLite file (created when missing) |
/// | `nsq://HOST:PORT/TOPIC/CHANNEL[?http=HOST:PORT&lookupd=HOST:PORT,…]` | nsqd (see [`nsq::url`]) |
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueUrl {
    Sqlite(PathBuf),
    /// `nsq://HOST:PORT/TOPIC/CHANNEL[?http=…&lookupd=…]`: see [`nsq::url`].
    Nsq(nsq::url::NsqUrl),
    /// `azure://ACCOUNT/QUEUE[?endpoint=…&encoding=…&depth=…&auth=…&api-version=…]`: see [`AzureUrl`].
    Azure(AzureUrl),
}

impl QueueUrl {
    /// Parses a queue URL without touching the queue, so that binaries can reject a bad one as a usage error
    /// before they start.
    ///
    /// # Errors
    /// [`QueueError::InvalidUrl`] for an unknown scheme or a malformed URL.
    pub fn parse(url: &str) -> Result<QueueUrl, QueueError> {
        let invalid = |reason: &str| QueueError::invalid_url(url, reason);
        let (scheme, rest) = url.split_once(':').ok_or_else(|| {
            invalid("no scheme: expected sqlite:PATH (for example sqlite:./queue.db)")
        })?;
        match scheme {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(invalid(
                        "no file path: expected sqlite:PATH (for example sqlite:./queue.db)",
                    ));
                }
                Ok(QueueUrl::Sqlite(PathBuf::from(path)))
            }
            "nsq" => nsq::url::NsqUrl::parse(rest)
                .map(QueueUrl::Nsq)
                .map_err(|r| invalid(&r)),
            "azure" => AzureUrl::parse(rest)
                .map(QueueUrl::Azure)
                .map_err(|r| invalid(&r)),
            other => Err(invalid(&format!(
                "unknown scheme {other:?}: the schemes this build knows are sqlite and nsq"
            ))),
        }
    }
}

/// Opens the queue a URL names (see [`QueueUrl`] for the forms).
///
/// # Errors
/// [`QueueError::InvalidUrl`] for an unknown scheme or a malformed URL; the backend's own errors otherwise.
pub async fn open(url: &str) -> Result<Arc<dyn Queue>, QueueError> {
    match QueueUrl::parse(url)? {
        QueueUrl::Sqlite(path) => Ok(Arc::new(SqliteQueue::open(path).await?)),
        QueueUrl::Nsq(url) => Ok(Arc::new(nsq::NsqQueue::new(url)?)),
        QueueUrl::Azure(url) => Ok(Arc::new(AzureQueue::open(url).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_are_clear_errors() {
        for (url, needle) in [
            ("kafka://x", "unknown scheme \"kafka\""),
            ("queue.db", "no scheme"),
            ("sqlite:", "no file path"),
            ("sqlite://", "no file path"),
        ] {
            let e = open(url)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}

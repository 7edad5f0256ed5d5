//! The queue abstraction every backend implements, and [`open`], which picks a backend from a URL.
//!
//! The contract, which every backend keeps and the tests check:
//! - [`Queue::publish`] returns `Ok` only once the backend has durably accepted every message of the batch
//!   (SQLite: the transaction committed; NSQ: `OK`; Azure: 201; NATS: JetStream's publish ack). A producer counts a message as sent only then.
//! - [`Queue::receive`] leases messages: each is invisible to other consumers until its lease runs out, then it
//!   is delivered again with a higher delivery count. Delivery is at least once.
//! - [`Queue::ack`] removes a message for good, but only while the caller still holds its lease: a message whose
//!   lease passed to another consumer is reported in [`AckOutcome::lease_lost`], never silently acked twice.
//! - [`Queue::release`] gives a message back before its lease ends (on shutdown, or to retry later).
//! - [`Queue::extend`] keeps a lease alive during long work.
//! - [`Queue::depth`] is what a scaling engine reads; it must be cheap.
//!
//! Backends: each is one module that owns everything about itself (URL form and parsing, receipt, errors,
//! depth, legacy variables, metric label) and is built in by the cargo feature of its scheme. This module holds
//! the trait, the registry ([`REGISTRY`], one line per backend) and the dispatch ([`QueueUrl`]).

pub mod cli;
mod error;
pub mod keda;
pub mod metrics;
mod receipt;
pub mod registry;
#[cfg(any(
    feature = "amqp",
    feature = "azure",
    feature = "nats",
    feature = "nsq",
    feature = "redis"
))]
mod url;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "nsq")]
pub mod nsq;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

pub use error::{ErrorKind, QueueError};
pub use receipt::Receipt;
pub use registry::{Backend, OpenMode, QueueUrl, Target};

/// Every backend of the source tree, in the order the 2016 variables are tried: one line each. A backend whose
/// cargo feature is off keeps its line, so that asking for it says how to build it in.
static REGISTRY: &[registry::Registration] = &[
    registry::register!("sqlite", sqlite),
    registry::register!("nsq", nsq, ["MSS_QUEUE_ENDPOINT", "MSS_TOPIC_NAME"]),
    registry::register!(
        "azure",
        azure,
        [
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_CONNECTION_STRING"
        ]
    ),
    registry::register!("redis", redis),
    registry::register!("nats", nats),
    registry::register!("amqp", amqp),
];

/// A message handed to a consumer, with what it needs to ack it.
#[derive(Debug)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub receipt: Receipt,
    /// How many times this message has been delivered, this time included (1 = first delivery).
    pub deliveries: u32,
}

/// The result of acking a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    pub acked: u64,
    /// Messages whose lease had already passed to another consumer: they will be (or were) processed again.
    pub lease_lost: u64,
}

/// The answer to acks sent in the background ([`Queue::ack_in_background`]), once they are durable.
pub type AckTicket = tokio::sync::oneshot::Receiver<Result<AckOutcome, QueueError>>;

/// What [`Queue::ack_in_background`] did with the acks it was given.
pub enum Background {
    /// Queued: the answer comes on the ticket, once they are durable (or failed, having changed nothing).
    Queued(AckTicket),
    /// Not taken (no thread of its own sends them, or deliveries were stopped): the caller sends them itself.
    Declined(Vec<Receipt>, Option<Recorded>),
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

/// What a receive that follows acks in one call returns. Once acks are done, the call must report them
/// whatever the receive does: an error here threw their outcome away, the caller sent the same receipts
/// again, and most backends then count an ack that happened as lease_lost (its message gone, a consumer with
/// `--count` waited for ever for it). So a failed receive after acks is no messages, logged; the caller's next
/// receive meets the same fault and counts it.
pub fn received_after_acks(
    got: Result<Vec<Delivery>, QueueError>,
    had_acks: bool,
) -> Result<Vec<Delivery>, QueueError> {
    match got {
        Err(e) if had_acks => {
            tracing::debug!(error = %e, "receive failed after the acks went through; reporting the acks");
            Ok(Vec::new())
        }
        other => other,
    }
}

/// Runs once the records and acks of [`Queue::ack_and_receive_recorded`] are written and before they are
/// committed, on the thread that commits; an error aborts the whole step.
pub type BeforeCommit = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// What [`Queue::ack_and_receive_recorded`] writes with the acks: ledger records for the sibling `suffix`.
pub struct Recorded {
    pub suffix: &'static str,
    pub bodies: Vec<Vec<u8>>,
    /// The consumer's file ledger, which must hold an entry before its ack is durable (see
    /// `workload::ledger`): written here it is neither after the commit (a kill in between would show a
    /// message acked with its record as lost in the file) nor long before it.
    pub before_commit: Option<BeforeCommit>,
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
        let had_acks = !acks.is_empty();
        let acked = if had_acks {
            self.ack(acks).await?
        } else {
            AckOutcome::default()
        };
        let got = if max == 0 {
            Ok(Vec::new())
        } else {
            self.receive(max, lease, wait).await
        };
        Ok((acked, received_after_acks(got, had_acks)?))
    }

    /// Whether this queue can write messages of its sibling `suffix` (see [`QueueUrl::sibling`]) in the same
    /// atomic step as its own acks, through [`Queue::ack_and_receive_recorded`]. SQLite can: a sibling is a
    /// table in the same file. Brokers cannot, and their consumers publish records first, then ack.
    fn records_with_acks(&self, _suffix: &str) -> bool {
        false
    }

    /// Publishes `records` to their sibling and acks `acks`, all or nothing, then leases up to `max` as
    /// [`Queue::ack_and_receive`] does. The ledger records of a batch and its acks then take one commit, and a
    /// record is never durable without its ack nor an ack without its record. Only where
    /// [`Queue::records_with_acks`] says so; elsewhere it refuses, having done nothing.
    async fn ack_and_receive_recorded(
        &self,
        records: Recorded,
        _acks: Vec<Receipt>,
        _max: usize,
        _lease: Duration,
        _wait: Duration,
    ) -> Result<(AckOutcome, Vec<Delivery>), QueueError> {
        Err(QueueError::new(
            ErrorKind::Invalid,
            format!(
                "{} cannot write its {} sibling with its acks",
                self.describe(),
                records.suffix
            ),
        ))
    }

    /// Queues `acks` (with `records`, where [`Queue::records_with_acks`] says so) for a thread of the
    /// backend's own and returns at once; the answer comes on the ticket once they are durable. The caller
    /// goes on taking messages meanwhile, and holds the acked ones until the answer. SQLite does this for a
    /// consumer that said how much it holds ([`Queue::hold_at_most`]): its thread sends the acks in the
    /// transaction that claims the next messages, while the consumer takes in the last ones. Elsewhere it
    /// declines, and hands them back.
    fn ack_in_background(&self, acks: Vec<Receipt>, records: Option<Recorded>) -> Background {
        Background::Declined(acks, records)
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

    /// Says, before the first receive, the most messages the caller will hold at once: received and not yet
    /// acked or released (worked on, or finished and waiting for their ack). A broker that pushes messages up
    /// to a window of unacked ones (AMQP's prefetch, which RabbitMQ fixes when the consumer is made) sizes the
    /// window from it; without it the window is the first receive's `max`, and a consumer that holds finished
    /// messages while it works on others would wait for its acks to receive more. Others ignore it.
    fn hold_at_most(&self, _messages: usize) {}

    /// The largest body [`Queue::publish`] accepts, before the backend's own encoding, where the backend has
    /// a limit (Azure: 64 KiB, or 48 KiB with base64). Producers check `--size` against it before sending.
    fn max_message_size(&self) -> Option<usize> {
        None
    }

    /// A description for logs, with no secrets in it.
    fn describe(&self) -> String;
}

/// Opens the queue a URL names, creating it when missing: [`QueueUrl::parse`], then [`QueueUrl::open`].
///
/// # Errors
/// [`ErrorKind::Invalid`] for an unknown scheme or a malformed URL; the backend's own errors otherwise.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Queue>, QueueError> {
    QueueUrl::parse(url)?.open().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acks everything it is given; every receive fails.
    struct ReceiveFails;

    #[async_trait]
    impl Queue for ReceiveFails {
        async fn publish(&self, _: Vec<Vec<u8>>) -> Result<(), QueueError> {
            Ok(())
        }
        async fn receive(
            &self,
            _: usize,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Delivery>, QueueError> {
            Err(QueueError::new(ErrorKind::Unavailable, "down"))
        }
        async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
            Ok(AckOutcome {
                acked: receipts.len() as u64,
                ..AckOutcome::default()
            })
        }
        async fn release(&self, _: Vec<Receipt>, _: Duration) -> Result<u64, QueueError> {
            Ok(0)
        }
        async fn extend(&self, r: &mut [Receipt], _: Duration) -> Result<Vec<bool>, QueueError> {
            Ok(vec![true; r.len()])
        }
        async fn depth(&self) -> Result<Depth, QueueError> {
            Ok(Depth::default())
        }
        fn describe(&self) -> String {
            "receive fails".into()
        }
    }

    #[tokio::test]
    async fn acks_done_are_reported_even_when_the_receive_after_them_fails() {
        let q = ReceiveFails;
        let acks = (0..3u64).map(Receipt::new).collect();
        let wait = Duration::ZERO;
        let (outcome, got) = q.ack_and_receive(acks, 10, wait, wait).await.unwrap();
        assert_eq!((outcome.acked, got.len()), (3, 0), "the acks are not lost");
        let err = q.ack_and_receive(Vec::new(), 10, wait, wait).await;
        assert!(
            err.is_err(),
            "with no acks, the receive's error is the call's"
        );
    }
}

//! What ends a consumer run with an error; the binary prints it as one line and exits 1.

use std::time::Duration;

use queues::QueueError;
use workload::ledger::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--ledger` file cannot be opened: nothing was taken off the queue.
    #[error(transparent)]
    LedgerOpen(LedgerError),
    /// A ledger write failed: acking without a record would make the audit report a processed message as
    /// lost, so the run stops (and drains: what it holds is released).
    #[error("stopping: acked messages could no longer be recorded")]
    LedgerWrite(#[source] LedgerError),
    /// `--telemetry on` and the channel cannot be named or opened: nothing was taken off the queue.
    #[error("cannot open the telemetry channel")]
    Telemetry(#[source] QueueError),
    /// The queue refused the credential, which retrying cannot cure (a wrong password): the run stops (and
    /// drains) at once, where it would otherwise have retried until `--give-up-after`, or for ever.
    #[error("the queue refused the credential: stopped receiving")]
    Denied(#[source] QueueError),
    /// A run with `--count` whose queue answered nothing for `--give-up-after`.
    #[error(
        "the queue answered nothing for {:.0}s (--give-up-after {give_up_after:?}): stopped receiving",
        .failing_for.as_secs_f64()
    )]
    GaveUp {
        #[source]
        source: QueueError,
        failing_for: Duration,
        give_up_after: Duration,
    },
}

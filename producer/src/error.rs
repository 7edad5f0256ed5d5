//! What ends a producer run with an error; the binary prints it as one line and exits 1.

use std::time::Duration;

use queues::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--size` makes messages over the queue's limit: found before anything is sent.
    #[error(
        "--size {size} makes {bytes}-byte messages, over the {limit}-byte limit of {queue}: use --size {limit} or less"
    )]
    TooLarge {
        size: usize,
        bytes: usize,
        limit: usize,
        queue: String,
    },
    /// `--telemetry on` and the channel cannot be named or opened: nothing was sent.
    #[error("cannot open the telemetry channel")]
    Telemetry(#[source] QueueError),
    /// The queue refused messages for a reason retrying cannot cure; the run stopped sending.
    #[error("the queue refused messages; stopped sending")]
    Refused(#[source] QueueError),
    /// A run with an end whose queue confirmed nothing for `--give-up-after`.
    #[error(
        "the queue confirmed nothing for {:.0}s (--give-up-after {give_up_after:?}): stopped sending",
        .failing_for.as_secs_f64()
    )]
    Unreachable {
        #[source]
        source: QueueError,
        failing_for: Duration,
        give_up_after: Duration,
    },
}

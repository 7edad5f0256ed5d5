//! A batch of messages and its publish task: builds the envelopes, publishes them, and retries with back-off
//! until the queue confirms them, refuses them for good, or a stop (or `--give-up-after`) ends the retries.

use std::sync::Arc;
use std::time::Duration;

use queues::{ErrorKind, Queue, QueueError};
use workload::clock::unix_micros;
use workload::envelope::Envelope;
use workload::failures::Failures;
use workload::shutdown::Shutdown;
use workload::work::Work;

use crate::metrics::Metrics;

/// Back-off after a failed publish: 2ⁿ × 10 ms, capped, with full jitter so that many producers hitting one
/// failing queue do not retry in lockstep.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a batch task needs to build and publish its messages. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Batcher {
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) shutdown: Shutdown,
    pub(crate) start_unix_us: u64,
    pub(crate) run_id: u64,
    pub(crate) producer_id: u32,
    pub(crate) size: usize,
    /// The counters (failed publishes, throttled ones), shared by every batch task.
    pub(crate) metrics: Metrics,
    /// The current streak of failed publishes, shared by every batch task.
    pub(crate) failures: Arc<Failures>,
    /// How long a bounded run (--count or --duration) retries a queue that confirms nothing before it gives up;
    /// `None` for a run without an end, which waits for its queue.
    pub(crate) give_up_after: Option<Duration>,
}

/// How a batch ended.
pub(crate) enum Outcome {
    /// The queue confirmed every message; lateness (µs) of each.
    Confirmed { sent_us: u64, lateness: Vec<u64> },
    /// A stop was asked for while the batch was still failing: these messages may or may not be in the queue.
    GivenUp { first: u64, n: u64 },
    /// The queue refused the batch for a reason retrying cannot cure (a message too large): nothing was sent.
    Refused {
        first: u64,
        n: u64,
        error: QueueError,
    },
    /// The queue confirmed nothing for --give-up-after: these messages may or may not be in the queue.
    Unreachable {
        first: u64,
        n: u64,
        error: QueueError,
        failing_for: Duration,
    },
}

/// One message of a batch, as the schedule and the work model made it: its due offset from the start (`None`
/// when unpaced: due when sent) and the work stamped into it. Fixed before the first attempt, so a retried
/// batch carries the same values.
pub(crate) struct Planned {
    pub(crate) offset: Option<Duration>,
    pub(crate) work: Option<Work>,
}

impl Batcher {
    /// Publishes messages `first..first + plan.len()`, retrying with back-off until confirmed or a stop is
    /// asked for.
    pub(crate) async fn publish(self, first: u64, plan: Vec<Planned>) -> Outcome {
        let n = plan.len() as u64;
        let mut attempt = 0u32;
        loop {
            let sent_us = unix_micros();
            let mut bodies = Vec::with_capacity(n as usize);
            let mut lateness = Vec::with_capacity(n as usize);
            for (seq, planned) in (first..).zip(&plan) {
                let intended_us = match planned.offset {
                    Some(offset) => self.start_unix_us + offset.as_micros() as u64,
                    None => sent_us,
                };
                lateness.push(sent_us.saturating_sub(intended_us));
                let envelope = Envelope {
                    run_id: self.run_id,
                    producer_id: self.producer_id,
                    seq,
                    intended_us,
                    sent_us,
                    work: planned.work,
                };
                bodies.push(envelope.encode(self.size));
            }
            match self.queue.publish(bodies).await {
                Ok(()) => {
                    self.failures.confirmed();
                    return Outcome::Confirmed { sent_us, lateness };
                }
                // Retrying cannot shrink a message, nor make a refused credential right: refused for good,
                // on any backend (a producer retrying a wrong password ran until --give-up-after, or for ever).
                Err(error) if matches!(error.kind(), ErrorKind::TooLarge | ErrorKind::Denied) => {
                    self.metrics.errors.inc();
                    return Outcome::Refused { first, n, error };
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    if e.is_throttled() {
                        self.metrics.throttled.inc();
                    }
                    let failing_for = self.failures.failed(&e);
                    if self.give_up_after.is_some_and(|limit| failing_for >= limit) {
                        return Outcome::Unreachable {
                            first,
                            n,
                            error: e,
                            failing_for,
                        };
                    }
                    attempt += 1;
                    let cap = BACKOFF_BASE
                        .saturating_mul(1 << attempt.min(16))
                        .min(BACKOFF_MAX);
                    let pause = cap.mul_f64(rand::random::<f64>());
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shutdown.requested() => return Outcome::GivenUp { first, n },
                    }
                }
            }
        }
    }
}

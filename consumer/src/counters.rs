//! The consumer's counters: the one record of what happened to each delivery, read by the JSON stats lines
//! and exported, as they are, on `/metrics`. Every delivery ends in exactly one of them (see the identity in
//! [`crate::consume`]).

use workload::metrics::{Counter, Registry, SecondsCounter};

/// What the consumer counts: read by the JSON stats lines and exported, as they are, on `/metrics`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) received: Counter,
    pub(crate) acked: Counter,
    pub(crate) released: Counter,
    pub(crate) foreign: Counter,
    pub(crate) redelivered: Counter,
    pub(crate) lease_lost: Counter,
    pub(crate) errors: Counter,
    /// Errors where the queue asked us to slow down (Azure 503 ServerBusy, 500, timeouts).
    pub(crate) throttled: Counter,
    /// Deliveries the failure model gave back (released with --fail-delay, not acked).
    pub(crate) failed: Counter,
    /// Messages set aside after too many deliveries: recorded as poison in the ledger, then acked.
    pub(crate) poison: Counter,
    /// Messages the drain could not give back (lease already lost, or the call failed): they return when
    /// their lease ends.
    pub(crate) unreleased: Counter,
    /// Time spent on finished work, summed over messages (not yet divided by the slots).
    pub(crate) busy: SecondsCounter,
    pub(crate) first_received_at_us: Option<u64>,
    pub(crate) last_acked_at_us: Option<u64>,
}

impl Counters {
    /// Registers every counter under its Prometheus name (`_total` is added by the encoder).
    pub(crate) fn register(&self, r: &mut Registry) {
        let counters = [
            (
                "messages_received",
                "Deliveries taken off the queue, redeliveries included",
                &self.received,
            ),
            (
                "messages_acked",
                "Messages acked (consumed, poison and foreign ones)",
                &self.acked,
            ),
            (
                "messages_released",
                "Messages given back unfinished at a stop",
                &self.released,
            ),
            (
                "messages_foreign",
                "Bodies that are not this suite's envelope: acked unworked",
                &self.foreign,
            ),
            (
                "messages_redelivered",
                "Deliveries of a message delivered before",
                &self.redelivered,
            ),
            (
                "acks_lease_lost",
                "Acks refused because the lease had passed to another consumer",
                &self.lease_lost,
            ),
            (
                "queue_errors",
                "Failed queue calls (receive, ack, release, extend)",
                &self.errors,
            ),
            (
                "queue_throttled",
                "Failed queue calls where the queue asked to slow down",
                &self.throttled,
            ),
            (
                "messages_failed",
                "Deliveries the failure model gave back (--fail-rate)",
                &self.failed,
            ),
            (
                "messages_poison",
                "Messages set aside after --max-deliveries",
                &self.poison,
            ),
            (
                "messages_unreleased",
                "Messages a stop could not give back: they return after their lease",
                &self.unreleased,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register_with_unit(
            "consumer_busy",
            "Time spent on finished work, summed over messages: over slots and time, the utilisation",
            workload::metrics::Unit::Seconds,
            self.busy.clone(),
        );
    }
}

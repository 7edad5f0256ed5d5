//! The producer's counters and histograms: the one record of what it sent, read by both the JSON stats lines
//! and `/metrics` (see [`workload::metrics`]).

use queues::metrics::DepthGauges;
use workload::metrics::{Counter, Histogram, Registry, Unit, latency_histogram};

/// Every figure the producer counts. Cheap to clone: clones share the same atomics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Messages the queue confirmed (JSON `sent`).
    pub sent: Counter,
    /// Messages handed to publish tasks (JSON `seq_end`).
    pub attempted: Counter,
    /// Messages given up at a stop or refused: neither confirmed nor known lost (JSON `unconfirmed`).
    pub unconfirmed: Counter,
    /// Failed publish attempts (JSON `errors`).
    pub errors: Counter,
    /// Of those, the ones where the queue asked us to slow down (JSON `throttled`).
    pub throttled: Counter,
    /// How late each confirmed message was sent against its schedule, in seconds.
    pub lateness: Histogram,
    /// The queue depth as the producer sees it (filled only while `/metrics` is served).
    pub depth: DepthGauges,
}

impl Metrics {
    /// The producer's metrics and the registry that exports them, labelled with the queue's backend.
    pub fn new(backend: &'static str) -> (Metrics, Registry) {
        let mut r = workload::metrics::registry("producer", Some(backend));
        let m = Metrics {
            sent: Counter::default(),
            attempted: Counter::default(),
            unconfirmed: Counter::default(),
            errors: Counter::default(),
            throttled: Counter::default(),
            lateness: latency_histogram(),
            depth: DepthGauges::register(&mut r),
        };
        r.register(
            "messages_sent",
            "Messages the queue confirmed",
            m.sent.clone(),
        );
        r.register(
            "messages_attempted",
            "Messages handed to the queue, confirmed or not",
            m.attempted.clone(),
        );
        r.register(
            "messages_unconfirmed",
            "Messages given up at a stop or refused by the queue, so neither confirmed nor lost",
            m.unconfirmed.clone(),
        );
        r.register(
            "publish_errors",
            "Failed publish attempts (each retried)",
            m.errors.clone(),
        );
        r.register(
            "publish_throttled",
            "Failed publish attempts where the queue asked to slow down",
            m.throttled.clone(),
        );
        r.register_with_unit(
            "lateness",
            "How late each confirmed message was sent against its schedule (open loop)",
            Unit::Seconds,
            m.lateness.clone(),
        );
        (m, r)
    }
}

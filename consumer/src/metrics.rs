//! The consumer's gauges and latency histograms for `/metrics`. Its counters live in `counters::Counters`, which
//! the JSON stats lines read and the same registry exports (see [`workload::metrics`]).

use queues::metrics::DepthGauges;
use workload::metrics::{Gauge, Histogram, Registry, Unit, latency_histogram};

/// What the consumer exports besides its counters. Cheap to clone: clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Messages held (received, not yet acked or given back), as in the JSON `in_flight`.
    pub in_flight: Gauge,
    /// Messages worked on at once (`--max-in-flight`), the JSON `slots`: busy seconds over slots is utilisation.
    pub slots: Gauge,
    /// From the producer's send to the confirmed ack, in seconds (the JSON `e2e_*` quantiles).
    pub end_to_end: Histogram,
    /// From the start of a message's work to the consumer seeing it finished, in seconds.
    pub work: Histogram,
    /// The queue depth as the consumer sees it (filled only while `/metrics` is served).
    pub depth: DepthGauges,
}

impl Metrics {
    /// Registers the gauges and histograms in `registry`.
    pub fn register(registry: &mut Registry, slots: usize) -> Metrics {
        let m = Metrics {
            in_flight: Gauge::default(),
            slots: Gauge::default(),
            end_to_end: latency_histogram(),
            work: latency_histogram(),
            depth: DepthGauges::register(registry),
        };
        m.slots.set(i64::try_from(slots).unwrap_or(i64::MAX));
        registry.register(
            "consumer_in_flight_messages",
            "Messages this consumer holds: received, not yet acked or given back",
            m.in_flight.clone(),
        );
        registry.register(
            "consumer_slots",
            "Messages this consumer works on at once (--max-in-flight)",
            m.slots.clone(),
        );
        registry.register_with_unit(
            "end_to_end",
            "From the producer's send to the confirmed ack (queueing, delivery, work and ack)",
            Unit::Seconds,
            m.end_to_end.clone(),
        );
        registry.register_with_unit(
            "work",
            "From the start of a message's work to the consumer seeing it finished",
            Unit::Seconds,
            m.work.clone(),
        );
        m
    }
}

//! The producer's JSON stats lines: one per `--stats-interval`, and the summary with the unconfirmed ranges.

use std::time::Instant;

use workload::envelope::format_run_id;
use workload::stats::{Kind, Line, rate};

use crate::send::Producer;

impl Producer {
    pub(crate) fn emit(&mut self, kind: Kind) {
        let now = Instant::now();
        let m = &self.batcher.metrics;
        let sent = m.sent.get();
        let (interval_rate, lateness) = match kind {
            Kind::Interval => {
                let secs = now.duration_since(self.last_tick).as_secs_f64();
                (
                    rate(sent - self.sent_at_last_tick, secs),
                    &self.lateness_interval,
                )
            }
            Kind::Summary => (
                rate(sent, now.duration_since(self.started).as_secs_f64()),
                &self.lateness,
            ),
        };
        let mut line = Line::new("producer", kind, self.started)
            .field("run_id", format_run_id(self.config.run_id))
            .field("producer_id", self.config.producer_id)
            .field("sent", sent)
            .field("errors", m.errors.get())
            .field("throttled", m.throttled.get())
            .field("rate", interval_rate)
            .latency("lateness", lateness)
            .field("first_sent_at_us", self.first_sent_at_us)
            .field("seq_end", self.seq_end)
            .field("unconfirmed", m.unconfirmed.get());
        if kind == Kind::Summary {
            let ranges: Vec<[u64; 2]> = self
                .unconfirmed
                .iter()
                .map(|&(first, n)| [first, n])
                .collect();
            line = line.field(
                "unconfirmed_ranges",
                serde_json::to_value(ranges).unwrap_or_default(),
            );
        }
        // A closed stdout (the reader went away) is ignored: stats are a report, not the work.
        line.write_to(&mut self.stats).ok();
        self.last_tick = now;
        self.sent_at_last_tick = sent;
        self.lateness_interval.reset();
    }
}

//! The consumer's JSON stats lines: one per `--stats-interval`, and the summary.

use std::time::{Duration, Instant};

use workload::stats::{Kind, Line, rate};

use crate::consume::Consumer;

impl Consumer {
    pub(crate) fn tick_if_due(&mut self) {
        let now = Instant::now();
        if now >= self.next_tick {
            self.emit(Kind::Interval);
            self.next_tick += self.config.stats_interval;
            if self.next_tick < now {
                self.next_tick = now + self.config.stats_interval;
            }
        }
    }

    pub(crate) fn emit(&mut self, kind: Kind) {
        let now = Instant::now();
        let (acked_rate, e2e) = match kind {
            Kind::Interval => {
                let secs = now.duration_since(self.last_tick).as_secs_f64();
                (
                    rate(self.counts.acked.get() - self.acked_at_last_tick, secs),
                    &self.e2e_interval,
                )
            }
            Kind::Summary => (
                rate(
                    self.counts.acked.get(),
                    now.duration_since(self.started).as_secs_f64(),
                ),
                &self.e2e,
            ),
        };
        // Finished work plus work still running, over the slots (see the module docs).
        let running: Duration = self
            .held
            .values()
            .filter_map(|h| h.work_started)
            .map(|started| now.saturating_duration_since(started))
            .sum();
        let slots = self.config.max_in_flight;
        let busy_s = (self.counts.busy.get() + running.as_secs_f64()) / slots as f64;
        let c = &self.counts;
        Line::new("consumer", kind, self.started)
            .field("pid", std::process::id())
            .field("received", c.received.get())
            .field("acked", c.acked.get())
            .field("released", c.released.get())
            .field("foreign", c.foreign.get())
            .field("redelivered", c.redelivered.get())
            .field("lease_lost", c.lease_lost.get())
            .field("errors", c.errors.get())
            .field("throttled", c.throttled.get())
            .field("failed", c.failed.get())
            .field("poison", c.poison.get())
            .field("unreleased", c.unreleased.get())
            .field("in_flight", self.held.len())
            .field("busy_s", (busy_s * 1e6).round() / 1e6)
            .field("slots", slots)
            .field("rate", acked_rate)
            .latency("e2e", e2e)
            .field("first_received_at_us", c.first_received_at_us)
            .field("last_acked_at_us", c.last_acked_at_us)
            // A closed stdout (the reader went away) is ignored: stats are a report, not the work.
            .write_to(&mut self.stats)
            .ok();
        self.last_tick = now;
        self.acked_at_last_tick = self.counts.acked.get();
        self.metrics.in_flight.set(self.held.len() as i64);
        self.e2e_interval.reset();
    }
}

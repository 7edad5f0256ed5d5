//! The consumer's JSON stats lines: one per `--stats-interval`, and the summary.

use std::time::{Duration, Instant};

use workload::contract::{self, Head, Percentiles};
use workload::stats::{self, Kind, rate};

use crate::consume::Consumer;

impl Consumer {
    pub(crate) fn tick_if_due(&mut self) {
        let now = Instant::now();
        if now >= self.next_tick {
            self.emit(Kind::Interval);
            self.send_heartbeat();
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
        let e2e = Percentiles::of(e2e);
        let line = contract::Consumer {
            head: Head::new("consumer", kind, self.started),
            pid: std::process::id(),
            received: c.received.get(),
            acked: c.acked.get(),
            released: c.released.get(),
            foreign: c.foreign.get(),
            redelivered: c.redelivered.get(),
            lease_lost: c.lease_lost.get(),
            errors: c.errors.get(),
            throttled: c.throttled.get(),
            failed: c.failed.get(),
            poison: c.poison.get(),
            unreleased: c.unreleased.get(),
            in_flight: self.held.len() as u64,
            busy_s: (busy_s * 1e6).round() / 1e6,
            slots: slots as u64,
            rate: acked_rate,
            e2e_p50_us: e2e.p50_us,
            e2e_p99_us: e2e.p99_us,
            e2e_max_us: e2e.max_us,
            first_received_at_us: c.first_received_at_us,
            last_acked_at_us: c.last_acked_at_us,
        };
        stats::write_to(&line, &mut self.stats).ok();
        self.last_tick = now;
        self.acked_at_last_tick = self.counts.acked.get();
        self.metrics.in_flight.set(self.held.len() as i64);
        self.e2e_interval.reset();
    }
}

//! The producer's JSON stats lines: one per `--stats-interval`, and the summary with the unconfirmed ranges.

use std::time::Instant;

use workload::contract::{self, Head, Percentiles};
use workload::envelope::format_run_id;
use workload::stats::{self, Kind, rate};
use workload::telemetry::{ProducerLine, Record};

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
        let lateness = Percentiles::of(lateness);
        let line = contract::Producer {
            head: Head::new("producer", kind, self.started),
            run_id: format_run_id(self.config.run_id),
            producer_id: self.config.producer_id,
            sent,
            errors: m.errors.get(),
            throttled: m.throttled.get(),
            rate: interval_rate,
            lateness_p50_us: lateness.p50_us,
            lateness_p99_us: lateness.p99_us,
            lateness_max_us: lateness.max_us,
            first_sent_at_us: self.first_sent_at_us,
            seq_end: Some(self.seq_end),
            unconfirmed: m.unconfirmed.get(),
            unconfirmed_ranges: (kind == Kind::Summary).then(|| {
                self.unconfirmed
                    .iter()
                    .map(|&(first, n)| [first, n])
                    .collect()
            }),
        };
        stats::write_to(&line, &mut self.stats).ok();
        if let Some(channel) = &self.telemetry {
            let body = Record::Producer(ProducerLine { line }).encode();
            match kind {
                // Not waited for: the summary, which is, supersedes every interval line.
                Kind::Interval => {
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        if let Err(e) = channel.publish(vec![body]).await {
                            tracing::debug!(error = %e, "stats line not published to the telemetry channel");
                        }
                    });
                }
                Kind::Summary => self.summary_record = Some(body),
            }
        }
        self.last_tick = now;
        self.sent_at_last_tick = sent;
        self.lateness_interval.reset();
    }
}

//! The send loop: publish what the schedule says is due, count only what the queue confirmed.
//!
//! One task owns the schedule and the counters; each batch is published by its own task, up to
//! `--concurrency` at once (one is enough for SQLite; Azure needs many requests in flight, one message each).
//! A batch task retries with back-off until the queue confirms it or a stop is asked for; a batch given up that
//! way is reported as unconfirmed, so the audit neither counts it as lost nor as sent.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use queues::Queue;
use tokio::task::JoinSet;
use workload::clock::unix_micros;
use workload::failures::Failures;
use workload::shutdown::Shutdown;
use workload::stats::{Kind, LatencyHistogram};
use workload::work::WorkSampler;

use crate::batch::{Batcher, Outcome, Planned};
use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::schedule::Schedule;
use crate::timer::PreciseTimer;

pub(crate) struct Producer {
    pub(crate) config: Config,
    pub(crate) batcher: Batcher,
    pub(crate) schedule: Schedule,
    /// Draws each message's work from `--work`, when given.
    pub(crate) work: Option<WorkSampler>,
    pub(crate) started: Instant,
    /// Sequence numbers handed out so far: messages `0..seq_end` were attempted.
    pub(crate) seq_end: u64,
    /// Batches given up at a stop, as (first seq, count).
    pub(crate) unconfirmed: Vec<(u64, u64)>,
    pub(crate) first_sent_at_us: Option<u64>,
    pub(crate) lateness: LatencyHistogram,
    pub(crate) lateness_interval: LatencyHistogram,
    pub(crate) last_tick: Instant,
    pub(crate) sent_at_last_tick: u64,
    /// Where the stats lines go (see [`crate::Reporting`]).
    pub(crate) stats: Box<dyn Write + Send>,
    /// The telemetry channel (`--telemetry on`), where every stats line is published too.
    pub(crate) telemetry: Option<Arc<dyn Queue>>,
    /// The summary's record, published by [`crate::run()`] once written (awaited, unlike the intervals').
    pub(crate) summary_record: Option<Vec<u8>>,
}

impl Producer {
    pub(crate) fn new(
        config: Config,
        queue: Arc<dyn Queue>,
        shutdown: Shutdown,
        metrics: Metrics,
        stats: Box<dyn Write + Send>,
    ) -> Self {
        let started = Instant::now();
        let batcher = Batcher {
            queue,
            shutdown,
            start_unix_us: unix_micros(),
            run_id: config.run_id,
            producer_id: config.producer_id,
            size: config.size,
            metrics,
            failures: Arc::new(Failures::new(
                "publish",
                "publishing again: the queue confirmed",
            )),
            // A run with an end must reach it: one that waits for ever on a queue it never reached ends nothing.
            give_up_after: (config.count.is_some() || config.duration.is_some())
                .then_some(config.give_up_after),
        };
        Producer {
            schedule: Schedule::new(started, config.shape.clone(), config.share, config.seed),
            // Its own stream, apart from the schedule's: changing the shape does not change the works drawn.
            work: config
                .work
                .map(|spec| WorkSampler::new(spec, config.seed.rotate_left(32) ^ 0x5745_524b)),
            config,
            batcher,
            started,
            seq_end: 0,
            unconfirmed: Vec::new(),
            first_sent_at_us: None,
            lateness: LatencyHistogram::default(),
            lateness_interval: LatencyHistogram::default(),
            last_tick: started,
            sent_at_last_tick: 0,
            stats,
            telemetry: None,
            summary_record: None,
        }
    }

    /// Sends until the limit, the duration or a stop; fails when the queue refuses messages for good.
    pub(crate) async fn send_all(&mut self) -> Result<(), Error> {
        let shutdown = self.batcher.shutdown.clone();
        // `--duration` is the schedule's business (no message due after it is sent); `--count` is ours.
        let limit = self.config.count.unwrap_or(u64::MAX);
        let concurrency = self.config.concurrency;
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut timer = PreciseTimer::new();
        // Why the run stopped sending early, if it did.
        let mut refused: Option<Error> = None;
        let mut next_tick = self.started + self.config.stats_interval;
        let deadline = self.config.duration.map(|d| self.started + d);
        loop {
            while let Some(done) = tasks.try_join_next() {
                self.settle(done, &mut refused);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.emit(Kind::Interval);
                next_tick += self.config.stats_interval;
                // Never emit a burst of catch-up lines after a long stall.
                if next_tick < now {
                    next_tick = now + self.config.stats_interval;
                }
            }
            let out_of_time = !self.schedule.is_paced() && deadline.is_some_and(|d| now >= d);
            let shape_done = self.schedule.finished(self.config.duration);
            if self.seq_end >= limit
                || shutdown.is_requested()
                || out_of_time
                || shape_done
                || refused.is_some()
            {
                break;
            }
            let next_due = self.schedule.next_due_at(now);
            let is_due = next_due.is_some_and(|t| t <= now);
            if is_due && tasks.len() < concurrency {
                let max = (limit - self.seq_end).min(self.config.batch as u64);
                let plan: Vec<Planned> = self
                    .schedule
                    .take_due(now, self.config.duration, max)
                    .into_iter()
                    .map(|offset| Planned {
                        offset,
                        work: self.work.as_ref().map(WorkSampler::next),
                    })
                    .collect();
                let n = plan.len() as u64;
                if n > 0 {
                    tasks.spawn(self.batcher.clone().publish(self.seq_end, plan));
                    self.seq_end += n;
                    self.batcher.metrics.attempted.inc_by(n);
                    continue;
                }
            }
            // Nothing to start now: wait for a batch to finish, the next message to fall due, the next stats
            // line, or a stop.
            let wake = match next_due {
                Some(t) if !is_due => t.min(next_tick),
                _ => next_tick,
            };
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => self.settle(done, &mut refused),
                _ = timer.sleep_until(wake) => {}
                _ = shutdown.requested() => {}
            }
        }
        // Batches already handed to the queue finish (or, if failing, give up at the stop).
        while let Some(done) = tasks.join_next().await {
            self.settle(done, &mut refused);
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Counts a finished batch; a refused one is kept in `refused` to stop the run.
    pub(crate) fn settle(
        &mut self,
        done: Result<Outcome, tokio::task::JoinError>,
        refused: &mut Option<Error>,
    ) {
        match done {
            Ok(Outcome::Confirmed { sent_us, lateness }) => {
                let m = &self.batcher.metrics;
                m.sent.inc_by(lateness.len() as u64);
                self.first_sent_at_us =
                    Some(self.first_sent_at_us.map_or(sent_us, |f| f.min(sent_us)));
                for l in lateness {
                    self.lateness.record(l);
                    self.lateness_interval.record(l);
                    m.lateness.observe(l as f64 / 1e6);
                }
            }
            Ok(Outcome::GivenUp { first, n }) => {
                self.batcher.metrics.unconfirmed.inc_by(n);
                self.unconfirmed.push((first, n));
            }
            Ok(Outcome::Refused { first, n, error }) => {
                // Refused outright: not in the queue. Reported with the unconfirmed so the audit skips them.
                self.batcher.metrics.unconfirmed.inc_by(n);
                self.unconfirmed.push((first, n));
                refused.get_or_insert(Error::Refused(error));
            }
            Ok(Outcome::Unreachable {
                first,
                n,
                error,
                failing_for,
            }) => {
                self.batcher.metrics.unconfirmed.inc_by(n);
                self.unconfirmed.push((first, n));
                refused.get_or_insert(Error::Unreachable {
                    source: error,
                    failing_for,
                    give_up_after: self.config.give_up_after,
                });
            }
            // A batch task cannot panic short of a bug; say so loudly rather than miscount silently.
            Err(e) => {
                tracing::error!(error = %e, "a publish task failed; its messages are unaccounted for")
            }
        }
    }
}

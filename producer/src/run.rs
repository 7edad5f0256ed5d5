//! The send loop: publish what the schedule says is due, count only what the queue confirmed.
//!
//! One task owns the schedule and the counters; each batch is published by its own task, up to
//! `--concurrency` at once (one is enough for SQLite; Azure needs many requests in flight, one message each).
//! A batch task retries with back-off until the queue confirms it or a stop is asked for; a batch given up that
//! way is reported as unconfirmed, so the audit neither counts it as lost nor as sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use queues::{ErrorKind, Queue, QueueError};
use tokio::task::JoinSet;
use workload::clock::unix_micros;
use workload::contract::{self, Head, Percentiles};
use workload::envelope::{Envelope, format_run_id};
use workload::failures::Failures;
use workload::metrics::Exporter;
use workload::shutdown::Shutdown;
use workload::stats::{self, Kind, LatencyHistogram, rate};
use workload::work::{Work, WorkSampler, WorkSpec};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::schedule::Schedule;
use crate::timer::PreciseTimer;

/// Back-off after a failed publish: 2ⁿ × 10 ms, capped, with full jitter so that many producers hitting one
/// failing queue do not retry in lockstep.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    // Bound before anything else, so that a port in use stops the run before it sends a message.
    let exporter = match config.metrics_addr {
        Some(addr) => Some(Exporter::bind(addr).await?),
        None => None,
    };
    let queue = config
        .queue
        .open()
        .await
        .with_context(|| format!("cannot open queue {:?}", config.queue.to_string()))?;
    check_size(&config, queue.as_ref())?;
    let backend = config.queue.backend();
    let (metrics, registry) = Metrics::new(backend);
    if let Some(exporter) = exporter {
        metrics
            .depth
            .spawn_poller(queue.clone(), config.stats_interval, shutdown.clone());
        exporter.serve(registry, shutdown.clone());
    }
    let pace = config
        .shape
        .as_ref()
        .map_or_else(|| "as fast as possible".to_string(), |s| s.to_string());
    tracing::info!(
        queue = %queue.describe(),
        shape = %pace,
        producers = config.share.producers,
        producer_index = config.share.index,
        run_id = %format_run_id(config.run_id),
        producer_id = config.producer_id,
        "producing"
    );
    let mut producer = Producer::new(config, queue, shutdown, metrics);
    let result = producer.send_all().await;
    producer.emit(Kind::Summary);
    result
}

/// Refuses, before anything is sent, a `--size` the queue cannot take (Azure: 64 KiB after encoding).
fn check_size(config: &Config, queue: &dyn Queue) -> anyhow::Result<()> {
    let Some(limit) = queue.max_message_size() else {
        return Ok(());
    };
    let sample = Envelope {
        run_id: config.run_id,
        producer_id: config.producer_id,
        seq: u64::MAX,
        intended_us: u64::MAX,
        sent_us: u64::MAX,
        work: config.work.as_ref().map(WorkSpec::longest),
    };
    let size = sample.encode(config.size).len();
    if size > limit {
        bail!(
            "--size {} makes {size}-byte messages, over the {limit}-byte limit of {}: use --size {limit} or less",
            config.size,
            queue.describe()
        );
    }
    Ok(())
}

/// What a batch task needs to build and publish its messages. Cheap to clone.
#[derive(Clone)]
struct Batcher {
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
    start_unix_us: u64,
    run_id: u64,
    producer_id: u32,
    size: usize,
    /// The counters (failed publishes, throttled ones), shared by every batch task.
    metrics: Metrics,
    /// The current streak of failed publishes, shared by every batch task.
    failures: Arc<Failures>,
    /// How long a bounded run (--count or --duration) retries a queue that confirms nothing before it gives up;
    /// `None` for a run without an end, which waits for its queue.
    give_up_after: Option<Duration>,
}

/// How a batch ended.
enum Outcome {
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
struct Planned {
    offset: Option<Duration>,
    work: Option<Work>,
}

impl Batcher {
    /// Publishes messages `first..first + plan.len()`, retrying with back-off until confirmed or a stop is
    /// asked for.
    async fn publish(self, first: u64, plan: Vec<Planned>) -> Outcome {
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
                // Retrying cannot shrink a message: refused for good, on any backend.
                Err(error) if error.kind() == ErrorKind::TooLarge => {
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

struct Producer {
    config: Config,
    batcher: Batcher,
    schedule: Schedule,
    /// Draws each message's work from `--work`, when given.
    work: Option<WorkSampler>,
    started: Instant,
    /// Sequence numbers handed out so far: messages `0..seq_end` were attempted.
    seq_end: u64,
    /// Batches given up at a stop, as (first seq, count).
    unconfirmed: Vec<(u64, u64)>,
    first_sent_at_us: Option<u64>,
    lateness: LatencyHistogram,
    lateness_interval: LatencyHistogram,
    last_tick: Instant,
    sent_at_last_tick: u64,
}

impl Producer {
    fn new(config: Config, queue: Arc<dyn Queue>, shutdown: Shutdown, metrics: Metrics) -> Self {
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
        }
    }

    /// Sends until the limit, the duration or a stop; fails when the queue refuses messages for good.
    async fn send_all(&mut self) -> anyhow::Result<()> {
        let shutdown = self.batcher.shutdown.clone();
        // `--duration` is the schedule's business (no message due after it is sent); `--count` is ours.
        let limit = self.config.count.unwrap_or(u64::MAX);
        let concurrency = self.config.concurrency;
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut timer = PreciseTimer::new();
        // Why the run stopped sending early, if it did.
        let mut refused: Option<anyhow::Error> = None;
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
    fn settle(
        &mut self,
        done: Result<Outcome, tokio::task::JoinError>,
        refused: &mut Option<anyhow::Error>,
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
                refused.get_or_insert_with(|| {
                    anyhow::Error::new(error).context("the queue refused messages; stopped sending")
                });
            }
            Ok(Outcome::Unreachable {
                first,
                n,
                error,
                failing_for,
            }) => {
                self.batcher.metrics.unconfirmed.inc_by(n);
                self.unconfirmed.push((first, n));
                refused.get_or_insert_with(|| {
                    anyhow::Error::new(error).context(format!(
                        "the queue confirmed nothing for {:.0}s (--give-up-after {:?}): stopped sending",
                        failing_for.as_secs_f64(),
                        self.config.give_up_after
                    ))
                });
            }
            // A batch task cannot panic short of a bug; say so loudly rather than miscount silently.
            Err(e) => {
                tracing::error!(error = %e, "a publish task failed; its messages are unaccounted for")
            }
        }
    }

    fn emit(&mut self, kind: Kind) {
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
        stats::emit(&line);
        self.last_tick = now;
        self.sent_at_last_tick = sent;
        self.lateness_interval.reset();
    }
}

//! The send loop: publish what the schedule says is due, count only what the queue confirmed.

use std::time::{Duration, Instant};

use anyhow::Context;
use common::clock::unix_micros;
use common::envelope::{Envelope, format_run_id};
use common::queue::{self, Queue};
use common::shutdown::Shutdown;
use common::stats::{Kind, LatencyHistogram, Line, rate};
use tokio::time::sleep_until;

use crate::config::Config;
use crate::schedule::Schedule;

/// Back-off after a failed publish: 2ⁿ × 10 ms, capped, with full jitter so that many producers hitting one
/// failing queue do not retry in lockstep.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Counters and histograms of one run. Counters are totals since start.
struct Stats {
    started: Instant,
    sent: u64,
    errors: u64,
    first_sent_at_us: Option<u64>,
    lateness: LatencyHistogram,
    lateness_interval: LatencyHistogram,
    last_tick: Instant,
    sent_at_last_tick: u64,
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    let queue = queue::open(&config.queue_url)
        .await
        .with_context(|| format!("cannot open queue {:?}", config.queue_url))?;
    tracing::info!(
        queue = %queue.describe(),
        rate = config.rate,
        run_id = %format_run_id(config.run_id),
        producer_id = config.producer_id,
        "producing"
    );
    let mut producer = Producer::new(config, queue, shutdown);
    producer.send_all().await;
    producer.emit(Kind::Summary);
    Ok(())
}

struct Producer {
    config: Config,
    queue: std::sync::Arc<dyn Queue>,
    shutdown: Shutdown,
    stats: Stats,
    schedule: Schedule,
    start_unix_us: u64,
}

impl Producer {
    fn new(config: Config, queue: std::sync::Arc<dyn Queue>, shutdown: Shutdown) -> Self {
        let started = Instant::now();
        let start_unix_us = unix_micros();
        let schedule = Schedule::new(started, config.rate);
        Producer {
            stats: Stats {
                started,
                sent: 0,
                errors: 0,
                first_sent_at_us: None,
                lateness: LatencyHistogram::default(),
                lateness_interval: LatencyHistogram::default(),
                last_tick: started,
                sent_at_last_tick: 0,
            },
            config,
            queue,
            shutdown,
            schedule,
            start_unix_us,
        }
    }

    /// The number of messages this run may send, from `--count` and `--duration`.
    fn limit(&self) -> u64 {
        let by_duration = self
            .config
            .duration
            .and_then(|d| self.schedule.count_within(d));
        [self.config.count, by_duration]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX)
    }

    async fn send_all(&mut self) {
        let limit = self.limit();
        let mut next_seq = 0u64;
        let mut next_tick = self.stats.started + self.config.stats_interval;
        let deadline = self.config.duration.map(|d| self.stats.started + d);
        while next_seq < limit && !self.shutdown.is_requested() {
            let now = Instant::now();
            if now >= next_tick {
                self.emit(Kind::Interval);
                next_tick += self.config.stats_interval;
                // Never emit a burst of catch-up lines after a long stall.
                if next_tick < now {
                    next_tick = now + self.config.stats_interval;
                }
            }
            if !self.schedule.is_paced() && deadline.is_some_and(|d| now >= d) {
                break;
            }
            let due = self.schedule.due_by(now).min(limit);
            if due <= next_seq {
                let wake = self.schedule.due_at(next_seq).min(next_tick);
                tokio::select! {
                    _ = sleep_until(wake.into()) => {}
                    _ = self.shutdown.requested() => {}
                }
                continue;
            }
            let n = (due - next_seq).min(self.config.batch as u64);
            if !self.publish(next_seq, n).await {
                break;
            }
            next_seq += n;
        }
    }

    /// Publishes messages `first..first + n`, retrying with back-off until the queue confirms them.
    /// Returns false when a stop was requested before they were confirmed: those messages are not sent.
    async fn publish(&mut self, first: u64, n: u64) -> bool {
        let mut attempt = 0u32;
        loop {
            let sent_us = unix_micros();
            let mut bodies = Vec::with_capacity(n as usize);
            let mut lateness = Vec::with_capacity(n as usize);
            for seq in first..first + n {
                let intended_us = if self.schedule.is_paced() {
                    self.start_unix_us + self.schedule.offset(seq).as_micros() as u64
                } else {
                    sent_us
                };
                lateness.push(sent_us.saturating_sub(intended_us));
                let envelope = Envelope {
                    run_id: self.config.run_id,
                    producer_id: self.config.producer_id,
                    seq,
                    intended_us,
                    sent_us,
                    work: self.config.work,
                };
                bodies.push(envelope.encode(self.config.size));
            }
            match self.queue.publish(bodies).await {
                Ok(()) => {
                    self.stats.sent += n;
                    self.stats.first_sent_at_us.get_or_insert(sent_us);
                    for l in lateness {
                        self.stats.lateness.record(l);
                        self.stats.lateness_interval.record(l);
                    }
                    return true;
                }
                Err(e) => {
                    self.stats.errors += 1;
                    attempt += 1;
                    let cap = BACKOFF_BASE
                        .saturating_mul(1 << attempt.min(16))
                        .min(BACKOFF_MAX);
                    let pause = cap.mul_f64(rand::random::<f64>());
                    tracing::warn!(error = %e, attempt, "publish failed; retrying in {pause:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shutdown.requested() => return false,
                    }
                }
            }
        }
    }

    fn emit(&mut self, kind: Kind) {
        let now = Instant::now();
        let (interval_rate, lateness) = match kind {
            Kind::Interval => {
                let secs = now.duration_since(self.stats.last_tick).as_secs_f64();
                (
                    rate(self.stats.sent - self.stats.sent_at_last_tick, secs),
                    &self.stats.lateness_interval,
                )
            }
            Kind::Summary => (
                rate(
                    self.stats.sent,
                    now.duration_since(self.stats.started).as_secs_f64(),
                ),
                &self.stats.lateness,
            ),
        };
        Line::new("producer", kind, self.stats.started)
            .field("run_id", format_run_id(self.config.run_id))
            .field("producer_id", self.config.producer_id)
            .field("sent", self.stats.sent)
            .field("errors", self.stats.errors)
            .field("rate", interval_rate)
            .latency("lateness", lateness)
            .field("first_sent_at_us", self.stats.first_sent_at_us)
            .emit();
        self.stats.last_tick = now;
        self.stats.sent_at_last_tick = self.stats.sent;
        self.stats.lateness_interval.reset();
    }
}

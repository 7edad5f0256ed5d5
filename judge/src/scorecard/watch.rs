//! Recording a series from outside a run: `scorecard watch` polls the queue's depth (through common's
//! `Queue::depth`, so any backend) and the platform's consumer count once per interval, and takes the load
//! from the scenario's shape (the producers are not visible from outside, so the rate shown is the rate the
//! shape schedules). With a second source (`--decided`) it records the engine's decision beside the consumers
//! running, and the scorecard grades each.

use std::time::{Duration, Instant};

use queues::Queue;
use workload::shape::Shape;

use super::heartbeats::Heartbeats;
use super::series::{Sample, Series, band_low, changes_of};
use super::sources::{ConsumerSource, SourceError};

/// Where the consumers running are counted: a source polled each interval, or the consumers' heartbeats.
#[derive(Clone, Copy)]
pub enum Consumers<'a> {
    Polled(&'a ConsumerSource),
    Heartbeats(&'a Heartbeats),
}

impl Consumers<'_> {
    async fn count(&self, http: &reqwest::Client) -> Result<usize, SourceError> {
        match self {
            Consumers::Polled(source) => source.count(http).await,
            Consumers::Heartbeats(beats) => beats.count(),
        }
    }
}

/// What to watch and for how long.
pub struct Watch<'a> {
    pub queue: &'a dyn Queue,
    pub consumers: Consumers<'a>,
    /// Where the engine's decision is read (its desired replicas), when it can be read apart.
    pub decided: Option<&'a ConsumerSource>,
    pub target: u64,
    /// The load, for its changes and rate; `None` when unknown (no reactions are then graded).
    pub shape: Option<&'a Shape>,
    pub duration: Duration,
    pub interval: Duration,
    /// The work model and the consumer's slots (`--max-in-flight`), recorded so that the run is graded against
    /// its demand too; `None` leaves the elasticity figures out.
    pub work: Option<String>,
    pub consumer_slots: Option<usize>,
}

/// A reading that keeps failing is reported when it starts failing, then at most every
/// [`workload::failures::LOG_EVERY`] with how many polls failed meanwhile, and once when it reads again: a
/// source that is down logged a line every poll (every second).
struct Reported {
    what: &'static str,
    failed: u64,
    last_log: Option<Instant>,
}

impl Reported {
    fn new(what: &'static str) -> Reported {
        Reported {
            what,
            failed: 0,
            last_log: None,
        }
    }

    fn failed(&mut self, e: &dyn std::fmt::Display) {
        self.failed += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= workload::failures::LOG_EVERY);
        if due {
            tracing::warn!(
                "cannot read {}: {e} ({} failed polls so far)",
                self.what,
                self.failed
            );
            self.last_log = Some(Instant::now());
        }
    }

    fn read(&mut self) {
        if self.failed > 0 {
            tracing::info!(
                "reading {} again after {} failed polls",
                self.what,
                self.failed
            );
            *self = Reported::new(self.what);
        }
    }
}

/// How many polls there were, and how many read the depth and the consumer count. A run in which one of them
/// was never read has nothing to grade: the caller says so instead of grading made-up figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readings {
    pub polls: u64,
    pub depth_read: u64,
    pub count_read: u64,
    /// Polls that read the engine's decision (0 when there is no such source).
    pub decided_read: u64,
}

/// Polls until `duration` has passed or `stop` resolves; returns the series and how many readings succeeded.
/// A failed read of the depth or the count is logged and recorded as unknown depth / the previous count, not
/// fatal: a flaky reading should not throw a long run away.
pub async fn record(
    w: Watch<'_>,
    stop: impl std::future::Future<Output = ()>,
) -> (Series, Readings) {
    // Verified TLS on the web roots, like every client of the suite; building it cannot fail without extra
    // certificates, but if it ever did, reqwest's own default (the OS trust store) still verifies.
    let http = workload::tls::http_client_builder(Vec::new(), "scorecard")
        .ok()
        .and_then(|b| b.build().ok())
        .unwrap_or_default();
    let start = Instant::now();
    let started_us = workload::clock::unix_micros();
    let mut tick = tokio::time::interval(w.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples: Vec<Sample> = Vec::new();
    let mut readings = Readings::default();
    let (mut depth_log, mut count_log, mut decided_log) = (
        Reported::new("the queue depth"),
        Reported::new("the consumer count"),
        Reported::new("the engine's decision"),
    );
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        let t = start.elapsed();
        readings.polls += 1;
        let depth = match w.queue.depth().await {
            Ok(d) => {
                readings.depth_read += 1;
                depth_log.read();
                Some(d.total())
            }
            Err(e) => {
                depth_log.failed(&e);
                None
            }
        };
        let consumers = match w.consumers.count(&http).await {
            Ok(n) => {
                readings.count_read += 1;
                count_log.read();
                n
            }
            Err(e) => {
                count_log.failed(&e);
                samples.last().map_or(0, |s| s.consumers)
            }
        };
        let decided = match w.decided {
            None => None,
            Some(source) => match source.count(&http).await {
                Ok(n) => {
                    readings.decided_read += 1;
                    decided_log.read();
                    Some(n)
                }
                Err(e) => {
                    decided_log.failed(&e);
                    samples.last().and_then(|s| s.decided)
                }
            },
        };
        samples.push(Sample {
            t: t.as_secs_f64(),
            depth,
            consumers,
            remainders: 0,
            produce_rate: w.shape.map_or(0.0, |s| s.rate_at(t)),
            busy_s: None,
            decided,
        });
        if t >= w.duration {
            break;
        }
    }
    let end = samples
        .last()
        .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s.t));
    let (changes_s, change_directions) = w.shape.map(changes_of).unwrap_or_default();
    let series = Series {
        title: None,
        policy: None,
        settings: None,
        target: w.target,
        band_low: band_low(w.target),
        shape: w.shape.map(ToString::to_string),
        changes_s,
        change_directions,
        manual: Vec::new(),
        consumed: w.shape.map_or(0, |s| s.sent_by(end).round() as u64),
        lost: None,
        work: w.work,
        consumer_slots: w.consumer_slots,
        started_us: Some(started_us),
        samples,
    };
    (series, readings)
}

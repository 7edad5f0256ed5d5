//! The consume loop: lease, work, write the ledger, ack; and the drain that ends it.
//!
//! One task owns all state; work runs in spawned tasks that report back over a channel. The order for each
//! message is fixed and is what keeps the counts honest: the ledger entry is written before the ack, and a
//! message that was not acked is released (or simply left to its lease), never dropped.
//!
//! The failure model (`--fail-rate`, `--fail-delay`, `--max-deliveries`) decides each message's fate once its
//! work is done:
//! - *failed*: with probability `--fail-rate` the work "fails" and the message is given back (released with
//!   `--fail-delay`), never acked, so the queue delivers it again;
//! - *poison*: a message whose work fails on its `--max-deliveries`th delivery, or that arrives with a higher
//!   delivery count (earlier deliveries died with their consumer or lost their lease; it is then not worked on
//!   at all), is set aside: recorded in the ledger as poison, acked, and logged. So with `--fail-rate 1
//!   --max-deliveries 3` every message is delivered exactly three times and ends as poison;
//! - otherwise it is consumed: ledger entry, then ack.
//!
//! Every delivery ends in exactly one of these counters, which gives the identity the tests check (summed
//! over any set of consumers, at any stats line):
//! `received = acked + lease_lost + failed + released + unreleased + in_flight`,
//! where `acked + lease_lost` are the acks sent (`poison` and `foreign` are among them).
//!
//! Busy time, for utilisation: `busy_s` is the time spent working messages (from the start of a message's
//! work to the moment the consumer sees it finished, work still running counted up to the line's time),
//! summed over messages and divided by `slots` (`--max-in-flight`); so it grows by at most 1.0 per second,
//! and `Δbusy_s / Δelapsed_s` is the share of the consumer's capacity in use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::clock::unix_micros;
use common::envelope::{Envelope, format_run_id};
use common::failures::Failures;
use common::ledger::{Entry, LedgerWriter, Outcome};
use common::metrics::{Counter, Exporter, Registry, SecondsCounter};
use common::queue::{AckOutcome, Delivery, Queue, Receipt};
use common::shutdown::Shutdown;
use common::stats::{Kind, LatencyHistogram, Line, rate};
use common::work::Work;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::config::Config;
use crate::metrics::Metrics;

/// How long one receive waits for a message when nothing is being worked on.
const RECEIVE_WAIT: Duration = Duration::from_millis(100);
/// Polling bounds while work is in flight and the queue is empty.
const IDLE_MIN: Duration = Duration::from_millis(1);
const IDLE_MAX: Duration = Duration::from_millis(25);
/// Back-off after failed queue calls: 2ⁿ × 100 ms, capped, with jitter, so that many consumers of one
/// struggling queue (Azure's 503 ServerBusy asks for exactly this) do not retry in lockstep.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
const ERROR_PAUSE_MAX: Duration = Duration::from_secs(5);
/// Foreign bodies logged individually before the rest are only counted.
const FOREIGN_LOG_LIMIT: u64 = 5;
/// Poison messages logged individually at warn level; later ones at debug (the ledger records every one).
const POISON_LOG_LIMIT: u64 = 20;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    // Bound before anything else, so that a port in use stops the run before it takes a message.
    let exporter = match config.metrics_addr {
        Some(addr) => Some(Exporter::bind(addr).await?),
        None => None,
    };
    let queue = config
        .queue
        .open()
        .await
        .with_context(|| format!("cannot open queue {:?}", config.queue.to_string()))?;
    let ledger = config
        .ledger
        .as_deref()
        .map(LedgerWriter::open)
        .transpose()?;
    tracing::info!(queue = %queue.describe(), work = %config.work, max_in_flight = config.max_in_flight, "consuming");
    let backend = config.queue.backend();
    let mut registry = common::metrics::registry("consumer", Some(backend));
    let metrics = Metrics::register(&mut registry, config.max_in_flight);
    if exporter.is_some() {
        let every = config.stats_interval;
        metrics
            .depth
            .spawn_poller(queue.clone(), every, shutdown.clone());
    }
    let mut consumer = Consumer::new(config, queue, shutdown.clone(), ledger, metrics);
    consumer.counts.register(&mut registry);
    if let Some(exporter) = exporter {
        exporter.serve(registry, shutdown);
    }
    let result = consumer.consume().await;
    consumer.drain().await;
    consumer.emit(Kind::Summary);
    result
}

/// A message this consumer holds a lease on.
struct Held {
    receipt: Receipt,
    /// The ledger entry, `None` for a foreign body.
    entry: Option<Entry>,
    /// The producer's send time (µs since the epoch), for the end-to-end latency taken at the ack.
    sent_us: Option<u64>,
    /// Work finished (it waits for the ledger and the ack).
    done: bool,
    /// The backend's delivery count (1 = first delivery).
    deliveries: u32,
    /// Arrived with more deliveries than --max-deliveries: set aside without work.
    poison: bool,
    /// When its work started, while it runs (for `busy_s`).
    work_started: Option<Instant>,
}

/// What the consumer counts: read by the JSON stats lines and exported, as they are, on `/metrics`.
#[derive(Default)]
struct Counters {
    received: Counter,
    acked: Counter,
    released: Counter,
    foreign: Counter,
    redelivered: Counter,
    lease_lost: Counter,
    errors: Counter,
    /// Errors where the queue asked us to slow down (Azure 503 ServerBusy, 500, timeouts).
    throttled: Counter,
    /// Deliveries the failure model gave back (released with --fail-delay, not acked).
    failed: Counter,
    /// Messages set aside after too many deliveries: recorded as poison in the ledger, then acked.
    poison: Counter,
    /// Messages the drain could not give back (lease already lost, or the call failed): they return when
    /// their lease ends.
    unreleased: Counter,
    /// Time spent on finished work, summed over messages (not yet divided by the slots).
    busy: SecondsCounter,
    first_received_at_us: Option<u64>,
    last_acked_at_us: Option<u64>,
}

impl Counters {
    /// Registers every counter under its Prometheus name (`_total` is added by the encoder).
    fn register(&self, r: &mut Registry) {
        let counters = [
            (
                "messages_received",
                "Deliveries taken off the queue, redeliveries included",
                &self.received,
            ),
            (
                "messages_acked",
                "Messages acked (consumed, poison and foreign ones)",
                &self.acked,
            ),
            (
                "messages_released",
                "Messages given back unfinished at a stop",
                &self.released,
            ),
            (
                "messages_foreign",
                "Bodies that are not this suite's envelope: acked unworked",
                &self.foreign,
            ),
            (
                "messages_redelivered",
                "Deliveries of a message delivered before",
                &self.redelivered,
            ),
            (
                "acks_lease_lost",
                "Acks refused because the lease had passed to another consumer",
                &self.lease_lost,
            ),
            (
                "queue_errors",
                "Failed queue calls (receive, ack, release, extend)",
                &self.errors,
            ),
            (
                "queue_throttled",
                "Failed queue calls where the queue asked to slow down",
                &self.throttled,
            ),
            (
                "messages_failed",
                "Deliveries the failure model gave back (--fail-rate)",
                &self.failed,
            ),
            (
                "messages_poison",
                "Messages set aside after --max-deliveries",
                &self.poison,
            ),
            (
                "messages_unreleased",
                "Messages a stop could not give back: they return after their lease",
                &self.unreleased,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register_with_unit(
            "consumer_busy",
            "Time spent on finished work, summed over messages: over slots and time, the utilisation",
            common::metrics::Unit::Seconds,
            self.busy.clone(),
        );
    }
}

struct Consumer {
    config: Config,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
    ledger: Option<LedgerWriter>,
    ledger_failed: bool,
    held: HashMap<u64, Held>,
    next_key: u64,
    done_tx: mpsc::UnboundedSender<u64>,
    done_rx: mpsc::UnboundedReceiver<u64>,
    tasks: JoinSet<()>,
    /// Work finished, ledger not yet written.
    ready: Vec<u64>,
    /// Ledger written, ack not yet confirmed.
    to_ack: Vec<u64>,
    /// Failed by the failure model, to be given back with --fail-delay.
    to_release: Vec<u64>,
    counts: Counters,
    metrics: Metrics,
    e2e: LatencyHistogram,
    e2e_interval: LatencyHistogram,
    started: Instant,
    next_tick: Instant,
    last_tick: Instant,
    acked_at_last_tick: u64,
    next_extend: Instant,
    /// Failed receives in a row: logged once, then every 10 s, and timed for --give-up-after.
    failures: Failures,
}

impl Consumer {
    fn new(
        config: Config,
        queue: Arc<dyn Queue>,
        shutdown: Shutdown,
        ledger: Option<LedgerWriter>,
        metrics: Metrics,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        Consumer {
            next_tick: started + config.stats_interval,
            next_extend: started + config.lease / 3,
            config,
            queue,
            shutdown,
            ledger,
            ledger_failed: false,
            held: HashMap::new(),
            next_key: 0,
            done_tx,
            done_rx,
            tasks: JoinSet::new(),
            ready: Vec::new(),
            to_ack: Vec::new(),
            to_release: Vec::new(),
            counts: Counters::default(),
            metrics,
            e2e: LatencyHistogram::default(),
            e2e_interval: LatencyHistogram::default(),
            started,
            last_tick: started,
            acked_at_last_tick: 0,
            failures: Failures::new("receive", "receiving again: the queue answered"),
        }
    }

    /// Receives and works until a stop is asked for, `--count` is reached, or the ledger cannot be written.
    async fn consume(&mut self) -> anyhow::Result<()> {
        let mut idle = IDLE_MIN;
        let mut failures = 0u32;
        loop {
            self.collect_done();
            self.metrics.in_flight.set(self.held.len() as i64);
            self.tick_if_due();
            if self.shutdown.is_requested() || self.count_reached() {
                return Ok(());
            }
            self.extend_if_due().await;
            self.log_ready()?;
            self.release_failed().await;
            let working = self.held.len() - self.to_ack.len();
            let max = self
                .config
                .max_in_flight
                .saturating_sub(working)
                .min(self.config.batch)
                .min(self.count_room());
            if max == 0 && self.to_ack.is_empty() {
                self.wait_for_done(None).await;
                continue;
            }
            let wait = if working > 0 {
                Duration::ZERO
            } else {
                RECEIVE_WAIT
            };
            let acks = self
                .to_ack
                .iter()
                .map(|k| self.held[k].receipt.clone())
                .collect();
            match self
                .queue
                .ack_and_receive(acks, max, self.config.lease, wait)
                .await
            {
                Ok((outcome, deliveries)) => {
                    failures = 0;
                    self.failures.confirmed();
                    self.acked(outcome);
                    let got = deliveries.len();
                    for d in deliveries {
                        self.accept(d);
                    }
                    if got == 0 && working > 0 {
                        self.wait_for_done(Some(idle)).await;
                        idle = (idle * 2).min(IDLE_MAX);
                    } else {
                        idle = IDLE_MIN;
                    }
                }
                Err(e) => {
                    self.counts.errors.inc();
                    self.counts.throttled.inc_by(u64::from(e.is_throttled()));
                    // Logged by the streak, not here: one line per attempt flooded the log of a consumer
                    // whose queue was down.
                    let failing_for = self.failures.failed(&e);
                    // Only a run with an end gives up: one without must outlive a broker restart.
                    if self.config.count.is_some() && failing_for >= self.config.give_up_after {
                        return Err(anyhow::Error::new(e).context(format!(
                            "the queue answered nothing for {:.0}s (--give-up-after {:?}): stopped receiving",
                            failing_for.as_secs_f64(),
                            self.config.give_up_after
                        )));
                    }
                    failures += 1;
                    let cap = ERROR_PAUSE
                        .saturating_mul(1 << failures.min(8))
                        .min(ERROR_PAUSE_MAX);
                    let mut pause = cap.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                    if self.config.count.is_some() {
                        // The last attempt falls on the deadline, so the run gives up when it said it would.
                        pause = pause.min(self.config.give_up_after.saturating_sub(failing_for));
                    }
                    tracing::debug!(error = %e, failures, "receive/ack failed; retrying in {pause:?}");
                    self.pause(pause).await;
                }
            }
        }
    }

    /// Waits out a back-off in full, finishing work and writing stats lines meanwhile. (A single
    /// `wait_for_done` ends at the next stats tick, which made every back-off at most --stats-interval long:
    /// a dead queue was retried every second whatever back-off was announced.)
    async fn pause(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        loop {
            let now = Instant::now();
            if now >= until || self.shutdown.is_requested() {
                return;
            }
            self.wait_for_done(Some(until - now)).await;
            self.collect_done();
            self.tick_if_due();
        }
    }

    /// Stops taking messages; finishes and acks held work until `--drain-timeout` (or a second signal), then
    /// releases whatever is left so other consumers get it at once.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.config.drain_timeout;
        // Push-based backends (NSQ: RDY 0, CLS) stop sending before the drain; a no-op for the others.
        if let Err(e) = self.queue.stop_receiving().await {
            tracing::warn!(error = %e, "could not stop deliveries; unacked messages return after their lease");
        }
        if !self.held.is_empty() {
            tracing::info!(held = self.held.len(), "draining");
        }
        loop {
            self.collect_done();
            if !self.ledger_failed && self.log_ready().is_err() {
                break;
            }
            self.release_failed().await;
            if !self.to_ack.is_empty() {
                let acks = self
                    .to_ack
                    .iter()
                    .map(|k| self.held[k].receipt.clone())
                    .collect();
                match self.queue.ack(acks).await {
                    Ok(outcome) => self.acked(outcome),
                    Err(e) => {
                        self.counts.errors.inc();
                        tracing::warn!(error = %e, "ack failed while draining");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            if self.held.is_empty() || self.shutdown.is_forced() || Instant::now() >= deadline {
                break;
            }
            self.tick_if_due();
            self.extend_if_due().await;
            if self.to_ack.is_empty() {
                tokio::select! {
                    Some(key) = self.done_rx.recv() => self.ready.push(key),
                    _ = sleep_until(deadline.min(self.next_tick).into()) => {}
                    _ = self.shutdown.forced() => {}
                }
            }
        }
        self.tasks.abort_all();
        // Failed messages decided just before a break go back with their delay, not as unfinished ones.
        self.release_failed().await;
        // Work cut short still counts as busy time.
        let now = Instant::now();
        for h in self.held.values_mut() {
            if let Some(started) = h.work_started.take() {
                self.counts
                    .busy
                    .inc_by(now.saturating_duration_since(started).as_secs_f64());
            }
        }
        if self.held.is_empty() {
            return;
        }
        // Whatever is left was not acked: give it back now rather than after its lease.
        let receipts: Vec<Receipt> = self.held.drain().map(|(_, h)| h.receipt).collect();
        let n = receipts.len() as u64;
        match self.queue.release(receipts, Duration::ZERO).await {
            Ok(released) => {
                self.counts.released.inc_by(released);
                self.counts.unreleased.inc_by(n.saturating_sub(released));
                tracing::info!(released, "released unfinished messages");
            }
            Err(e) => {
                self.counts.errors.inc();
                self.counts.unreleased.inc_by(n);
                tracing::warn!(error = %e, "could not release {n} message(s); they return when their lease ends");
            }
        }
    }

    fn count_reached(&self) -> bool {
        self.config
            .count
            .is_some_and(|c| self.counts.acked.get() >= c)
    }

    /// How many more messages may be received without overshooting `--count`.
    fn count_room(&self) -> usize {
        match self.config.count {
            Some(c) => c
                .saturating_sub(self.counts.acked.get() + self.held.len() as u64)
                .min(usize::MAX as u64) as usize,
            None => usize::MAX,
        }
    }

    fn accept(&mut self, d: Delivery) {
        let now_us = unix_micros();
        self.counts.received.inc();
        self.counts.first_received_at_us.get_or_insert(now_us);
        if d.deliveries > 1 {
            self.counts.redelivered.inc();
        }
        let (entry, sent_us, work) = match Envelope::decode(&d.body) {
            Ok(env) => {
                let entry = Entry {
                    run_id: env.run_id,
                    producer_id: env.producer_id,
                    seq: env.seq,
                };
                (
                    Some(entry),
                    Some(env.sent_us),
                    env.work.unwrap_or_else(|| self.config.work.next()),
                )
            }
            Err(e) => {
                self.counts.foreign.inc();
                if self.counts.foreign.get() <= FOREIGN_LOG_LIMIT {
                    let preview =
                        String::from_utf8_lossy(&d.body[..d.body.len().min(40)]).into_owned();
                    tracing::warn!(reason = %e, preview, "foreign message: acked and counted, not worked on");
                }
                (None, None, Work::None)
            }
        };
        // Failure model: a message already delivered more often than allowed is set aside without work.
        let poison = entry.is_some() && d.deliveries > self.config.failure.max_deliveries;
        let work = if poison { Work::None } else { work };
        let key = self.next_key;
        self.next_key += 1;
        self.held.insert(
            key,
            Held {
                receipt: d.receipt,
                entry,
                sent_us,
                done: false,
                deliveries: d.deliveries,
                poison,
                work_started: (!work.is_none()).then(Instant::now),
            },
        );
        if work.is_none() {
            self.mark_done(key);
        } else {
            let tx = self.done_tx.clone();
            self.tasks.spawn(async move {
                work.perform().await;
                // The receiver lives as long as the consumer; a send error means we are shutting down.
                let _ = tx.send(key);
            });
        }
    }

    fn mark_done(&mut self, key: u64) {
        if let Some(h) = self.held.get_mut(&key) {
            h.done = true;
            if let Some(started) = h.work_started.take() {
                let worked = started.elapsed().as_secs_f64();
                self.counts.busy.inc_by(worked);
                self.metrics.work.observe(worked);
            }
            self.ready.push(key);
        }
    }

    fn collect_done(&mut self) {
        while let Ok(key) = self.done_rx.try_recv() {
            self.mark_done(key);
        }
        while self.tasks.try_join_next().is_some() {}
    }

    /// Writes the ledger entries of finished work, then queues them for the ack. An error here is fatal: acking
    /// without a ledger entry would make the audit report a processed message as lost.
    ///
    /// The failure model decides each message's fate first: failed ones wait in `to_release` (no ledger entry);
    /// poison ones are recorded as poison and acked like consumed ones.
    fn log_ready(&mut self) -> anyhow::Result<()> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let mut acks = Vec::with_capacity(self.ready.len());
        for key in std::mem::take(&mut self.ready) {
            match self.fate(key) {
                Some(outcome) => {
                    if let (Some(ledger), Some(entry)) = (
                        self.ledger.as_mut(),
                        self.held.get(&key).and_then(|h| h.entry),
                    ) {
                        ledger.push_outcome(entry, outcome);
                    }
                    acks.push(key);
                }
                None => self.to_release.push(key),
            }
        }
        if let Some(ledger) = self.ledger.as_mut()
            && let Err(e) = ledger.flush()
        {
            self.ledger_failed = true;
            return Err(e).context("stopping: acked messages could no longer be recorded");
        }
        self.to_ack.append(&mut acks);
        Ok(())
    }

    /// The failure model's verdict on a message whose work is done: `None` to give it back (failed), or the
    /// outcome to record before the ack. Counts and logs failures and poison.
    fn fate(&mut self, key: u64) -> Option<Outcome> {
        let model = self.config.failure;
        let h = self.held.get_mut(&key)?;
        // Foreign bodies are acked unworked (they have no ledger entry); the model does not apply to them.
        let Some(entry) = h.entry else {
            return Some(Outcome::Consumed);
        };
        if !h.poison && model.fails() {
            if h.deliveries < model.max_deliveries {
                self.counts.failed.inc();
                return None;
            }
            // It failed on its last allowed delivery: poison, below.
        } else if !h.poison {
            return Some(Outcome::Consumed);
        }
        // Not a success: keep it out of the end-to-end latency.
        h.sent_us = None;
        let deliveries = h.deliveries;
        self.counts.poison.inc();
        let (run, producer, seq) = (format_run_id(entry.run_id), entry.producer_id, entry.seq);
        if self.counts.poison.get() <= POISON_LOG_LIMIT {
            tracing::warn!(
                run,
                producer,
                seq,
                deliveries,
                max_deliveries = model.max_deliveries,
                "poison message: set aside (recorded in the ledger as poison, acked)"
            );
            if self.counts.poison.get() == POISON_LOG_LIMIT {
                tracing::warn!(
                    "further poison messages are logged at debug level; the ledger records every one"
                );
            }
        } else {
            tracing::debug!(run, producer, seq, deliveries, "poison message: set aside");
        }
        Some(Outcome::Poison { deliveries })
    }

    /// Gives failed messages back, visible again after --fail-delay. One that cannot be given back (its lease
    /// passed on, or the call failed) returns when its lease ends: it is not lost either way.
    async fn release_failed(&mut self) {
        if self.to_release.is_empty() {
            return;
        }
        let receipts: Vec<Receipt> = std::mem::take(&mut self.to_release)
            .into_iter()
            .filter_map(|k| self.held.remove(&k))
            .map(|h| h.receipt)
            .collect();
        let n = receipts.len();
        if let Err(e) = self
            .queue
            .release(receipts, self.config.failure.delay)
            .await
        {
            self.counts.errors.inc();
            self.counts.throttled.inc_by(u64::from(e.is_throttled()));
            tracing::warn!(error = %e, "could not give back {n} failed message(s); they return when their lease ends");
        }
    }

    fn acked(&mut self, outcome: AckOutcome) {
        if self.to_ack.is_empty() {
            return;
        }
        // End to end = from the producer's send to the confirmed ack: queueing, delivery, work and ack, the
        // whole time a message costs. (A message whose ack was refused was still processed; it counts too.)
        let now_us = unix_micros();
        for key in self.to_ack.drain(..) {
            if let Some(sent_us) = self.held.remove(&key).and_then(|h| h.sent_us) {
                let e2e = now_us.saturating_sub(sent_us);
                self.e2e.record(e2e);
                self.metrics.end_to_end.observe(e2e as f64 / 1e6);
                self.e2e_interval.record(e2e);
            }
        }
        self.counts.acked.inc_by(outcome.acked);
        self.counts.lease_lost.inc_by(outcome.lease_lost);
        self.counts.last_acked_at_us = Some(now_us);
        if outcome.lease_lost > 0 {
            tracing::warn!(
                lease_lost = outcome.lease_lost,
                "acks refused: the lease ran out and another consumer took the message (raise --lease?)"
            );
        }
    }

    /// Keeps the leases of messages still being worked on alive.
    async fn extend_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_extend {
            return;
        }
        self.next_extend = now + self.config.lease / 3;
        let keys: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| !h.done)
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return;
        }
        let mut receipts: Vec<Receipt> =
            keys.iter().map(|k| self.held[k].receipt.clone()).collect();
        match self.queue.extend(&mut receipts, self.config.lease).await {
            Ok(held) => {
                let lost = held.iter().filter(|h| !**h).count();
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "leases already lost while working; another consumer may process them too"
                    );
                }
                for (key, receipt) in keys.into_iter().zip(receipts) {
                    if let Some(h) = self.held.get_mut(&key) {
                        h.receipt = receipt;
                    }
                }
            }
            Err(e) => {
                self.counts.errors.inc();
                tracing::warn!(error = %e, "could not extend leases");
            }
        }
    }

    /// Waits for finished work, the next stats tick, a stop request, or `limit`.
    async fn wait_for_done(&mut self, limit: Option<Duration>) {
        let mut until = self.next_tick;
        if let Some(limit) = limit {
            until = until.min(Instant::now() + limit);
        }
        tokio::select! {
            Some(key) = self.done_rx.recv() => self.mark_done(key),
            _ = sleep_until(until.into()) => {}
            _ = self.shutdown.requested(), if !self.shutdown.is_requested() => {}
        }
    }

    fn tick_if_due(&mut self) {
        let now = Instant::now();
        if now >= self.next_tick {
            self.emit(Kind::Interval);
            self.next_tick += self.config.stats_interval;
            if self.next_tick < now {
                self.next_tick = now + self.config.stats_interval;
            }
        }
    }

    fn emit(&mut self, kind: Kind) {
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
            .emit();
        self.last_tick = now;
        self.acked_at_last_tick = self.counts.acked.get();
        self.metrics.in_flight.set(self.held.len() as i64);
        self.e2e_interval.reset();
    }
}

//! The consume loop: lease, work, write the ledger, ack; and the drain that ends it.
//!
//! One task owns all state; work runs in spawned tasks that report back over a channel. The order for each
//! message is fixed and is what keeps the counts honest: the ledger entry is written before the ack, and a
//! message that was not acked is released (or simply left to its lease), never dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::clock::unix_micros;
use common::envelope::Envelope;
use common::ledger::{Entry, LedgerWriter};
use common::queue::{self, AckOutcome, Delivery, Queue, Receipt};
use common::shutdown::Shutdown;
use common::stats::{Kind, LatencyHistogram, Line, rate};
use common::work::Work;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::config::Config;

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

pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    let queue = queue::open(&config.queue_url)
        .await
        .with_context(|| format!("cannot open queue {:?}", config.queue_url))?;
    let ledger = config
        .ledger
        .as_deref()
        .map(LedgerWriter::open)
        .transpose()?;
    tracing::info!(queue = %queue.describe(), work = %config.work, max_in_flight = config.max_in_flight, "consuming");
    let mut consumer = Consumer::new(config, queue, shutdown, ledger);
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
}

#[derive(Default)]
struct Counters {
    received: u64,
    acked: u64,
    released: u64,
    foreign: u64,
    redelivered: u64,
    lease_lost: u64,
    errors: u64,
    /// Errors where the queue asked us to slow down (Azure 503 ServerBusy, 500, timeouts).
    throttled: u64,
    first_received_at_us: Option<u64>,
    last_acked_at_us: Option<u64>,
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
    counts: Counters,
    e2e: LatencyHistogram,
    e2e_interval: LatencyHistogram,
    started: Instant,
    next_tick: Instant,
    last_tick: Instant,
    acked_at_last_tick: u64,
    next_extend: Instant,
}

impl Consumer {
    fn new(
        config: Config,
        queue: Arc<dyn Queue>,
        shutdown: Shutdown,
        ledger: Option<LedgerWriter>,
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
            counts: Counters::default(),
            e2e: LatencyHistogram::default(),
            e2e_interval: LatencyHistogram::default(),
            started,
            last_tick: started,
            acked_at_last_tick: 0,
        }
    }

    /// Receives and works until a stop is asked for, `--count` is reached, or the ledger cannot be written.
    async fn consume(&mut self) -> anyhow::Result<()> {
        let mut idle = IDLE_MIN;
        let mut failures = 0u32;
        loop {
            self.collect_done();
            self.tick_if_due();
            if self.shutdown.is_requested() || self.count_reached() {
                return Ok(());
            }
            self.extend_if_due().await;
            self.log_ready()?;
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
                    self.counts.errors += 1;
                    self.counts.throttled += u64::from(e.is_throttled());
                    failures += 1;
                    let cap = ERROR_PAUSE
                        .saturating_mul(1 << failures.min(8))
                        .min(ERROR_PAUSE_MAX);
                    let pause = cap.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                    tracing::warn!(error = %e, failures, "receive/ack failed; retrying in {pause:?}");
                    self.wait_for_done(Some(pause)).await;
                }
            }
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
            if !self.to_ack.is_empty() {
                let acks = self
                    .to_ack
                    .iter()
                    .map(|k| self.held[k].receipt.clone())
                    .collect();
                match self.queue.ack(acks).await {
                    Ok(outcome) => self.acked(outcome),
                    Err(e) => {
                        self.counts.errors += 1;
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
        if self.held.is_empty() {
            return;
        }
        // Whatever is left was not acked: give it back now rather than after its lease.
        let receipts: Vec<Receipt> = self.held.drain().map(|(_, h)| h.receipt).collect();
        let n = receipts.len();
        match self.queue.release(receipts, Duration::ZERO).await {
            Ok(released) => {
                self.counts.released += released;
                tracing::info!(released, "released unfinished messages");
            }
            Err(e) => {
                self.counts.errors += 1;
                tracing::warn!(error = %e, "could not release {n} message(s); they return when their lease ends");
            }
        }
    }

    fn count_reached(&self) -> bool {
        self.config.count.is_some_and(|c| self.counts.acked >= c)
    }

    /// How many more messages may be received without overshooting `--count`.
    fn count_room(&self) -> usize {
        match self.config.count {
            Some(c) => c
                .saturating_sub(self.counts.acked + self.held.len() as u64)
                .min(usize::MAX as u64) as usize,
            None => usize::MAX,
        }
    }

    fn accept(&mut self, d: Delivery) {
        let now_us = unix_micros();
        self.counts.received += 1;
        self.counts.first_received_at_us.get_or_insert(now_us);
        if d.deliveries > 1 {
            self.counts.redelivered += 1;
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
                    env.work.unwrap_or(self.config.work),
                )
            }
            Err(e) => {
                self.counts.foreign += 1;
                if self.counts.foreign <= FOREIGN_LOG_LIMIT {
                    let preview =
                        String::from_utf8_lossy(&d.body[..d.body.len().min(40)]).into_owned();
                    tracing::warn!(reason = %e, preview, "foreign message: acked and counted, not worked on");
                }
                (None, None, Work::None)
            }
        };
        let key = self.next_key;
        self.next_key += 1;
        self.held.insert(
            key,
            Held {
                receipt: d.receipt,
                entry,
                sent_us,
                done: false,
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
    fn log_ready(&mut self) -> anyhow::Result<()> {
        if self.ready.is_empty() {
            return Ok(());
        }
        if let Some(ledger) = self.ledger.as_mut() {
            for key in &self.ready {
                if let Some(entry) = self.held.get(key).and_then(|h| h.entry) {
                    ledger.push(entry);
                }
            }
            if let Err(e) = ledger.flush() {
                self.ledger_failed = true;
                return Err(e).context("stopping: acked messages could no longer be recorded");
            }
        }
        self.to_ack.append(&mut self.ready);
        Ok(())
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
                self.e2e_interval.record(e2e);
            }
        }
        self.counts.acked += outcome.acked;
        self.counts.lease_lost += outcome.lease_lost;
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
                self.counts.errors += 1;
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
                    rate(self.counts.acked - self.acked_at_last_tick, secs),
                    &self.e2e_interval,
                )
            }
            Kind::Summary => (
                rate(
                    self.counts.acked,
                    now.duration_since(self.started).as_secs_f64(),
                ),
                &self.e2e,
            ),
        };
        let c = &self.counts;
        Line::new("consumer", kind, self.started)
            .field("pid", std::process::id())
            .field("received", c.received)
            .field("acked", c.acked)
            .field("released", c.released)
            .field("foreign", c.foreign)
            .field("redelivered", c.redelivered)
            .field("lease_lost", c.lease_lost)
            .field("errors", c.errors)
            .field("throttled", c.throttled)
            .field("in_flight", self.held.len())
            .field("rate", acked_rate)
            .latency("e2e", e2e)
            .field("first_received_at_us", c.first_received_at_us)
            .field("last_acked_at_us", c.last_acked_at_us)
            .emit();
        self.last_tick = now;
        self.acked_at_last_tick = self.counts.acked;
        self.e2e_interval.reset();
    }
}

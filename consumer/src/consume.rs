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
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use queues::{AckOutcome, BeforeCommit, Delivery, Queue, QueueError, Receipt, Recorded};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::sleep_until;
use workload::clock::unix_micros;
use workload::envelope::Envelope;
use workload::failures::Failures;
use workload::ledger::{Entry, LedgerError, LedgerWriter, Outcome, PendingWrite};
use workload::shutdown::Shutdown;
use workload::stats::LatencyHistogram;
use workload::telemetry::RECORDS_SUFFIX;
use workload::work::Work;

use crate::config::Config;
use crate::counters::Counters;
use crate::error::Error;
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

/// A message this consumer holds a lease on.
pub(crate) struct Held {
    pub(crate) receipt: Receipt,
    /// The ledger entry, `None` for a foreign body.
    pub(crate) entry: Option<Entry>,
    /// The producer's send time (µs since the epoch), for the end-to-end latency taken at the ack.
    pub(crate) sent_us: Option<u64>,
    /// Work finished (it waits for the ledger and the ack).
    pub(crate) done: bool,
    /// The backend's delivery count (1 = first delivery).
    pub(crate) deliveries: u32,
    /// Arrived with more deliveries than --max-deliveries: set aside without work.
    pub(crate) poison: bool,
    /// When its work started, while it runs (for `busy_s`).
    pub(crate) work_started: Option<Instant>,
}

pub(crate) struct Consumer {
    pub(crate) config: Config,
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) shutdown: Shutdown,
    pub(crate) ledger: Option<LedgerWriter>,
    pub(crate) ledger_failed: bool,
    /// The telemetry channel, when on: ledger records confirmed there before the ack, and heartbeats.
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
    pub(crate) held: HashMap<u64, Held>,
    pub(crate) next_key: u64,
    pub(crate) done_tx: mpsc::UnboundedSender<u64>,
    pub(crate) done_rx: mpsc::UnboundedReceiver<u64>,
    pub(crate) tasks: JoinSet<()>,
    /// Work finished, ledger not yet written.
    pub(crate) ready: Vec<u64>,
    /// Ledger written, ack not yet sent.
    pub(crate) to_ack: Vec<u64>,
    /// Acks sent in the background (see [`crate::background`]), oldest first, awaiting their answer.
    pub(crate) acking: std::collections::VecDeque<crate::background::Acking>,
    /// Whether the queue may send acks in the background (until it first declines).
    pub(crate) background: bool,
    /// Failed by the failure model, to be given back with --fail-delay.
    pub(crate) to_release: Vec<u64>,
    pub(crate) counts: Counters,
    pub(crate) metrics: Metrics,
    pub(crate) e2e: LatencyHistogram,
    pub(crate) e2e_interval: LatencyHistogram,
    pub(crate) started: Instant,
    pub(crate) next_tick: Instant,
    pub(crate) last_tick: Instant,
    pub(crate) acked_at_last_tick: u64,
    pub(crate) next_extend: Instant,
    /// Failed receives in a row: logged once, then every 10 s, and timed for --give-up-after.
    pub(crate) failures: Failures,
    /// Where the stats lines go (see [`crate::Reporting`]).
    pub(crate) stats: Box<dyn Write + Send>,
}

impl Consumer {
    pub(crate) fn new(
        config: Config,
        queue: Arc<dyn Queue>,
        shutdown: Shutdown,
        ledger: Option<LedgerWriter>,
        telemetry: Option<crate::telemetry::Telemetry>,
        metrics: Metrics,
        stats: Box<dyn Write + Send>,
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
            telemetry,
            held: HashMap::new(),
            next_key: 0,
            done_tx,
            done_rx,
            tasks: JoinSet::new(),
            ready: Vec::new(),
            to_ack: Vec::new(),
            acking: std::collections::VecDeque::new(),
            background: true,
            to_release: Vec::new(),
            counts: Counters::default(),
            metrics,
            e2e: LatencyHistogram::default(),
            e2e_interval: LatencyHistogram::default(),
            started,
            last_tick: started,
            acked_at_last_tick: 0,
            failures: Failures::new("receive", "receiving again: the queue answered"),
            stats,
        }
    }

    /// Receives and works until a stop is asked for, `--count` is reached, or the ledger cannot be written.
    pub(crate) async fn consume(&mut self) -> Result<(), Error> {
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
            self.record_ready()?;
            // With telemetry, the records of finished work are published by a background task while this loop
            // goes on acking and receiving; those finished meanwhile gather into the next group (group
            // commit). Their messages are acked in the first turn after their publish is confirmed.
            self.confirm_records()?;
            self.release_failed().await;
            // Finished messages waiting for their records' confirmation hold no work slot, as those waiting
            // for their ack do not.
            let confirming = self.telemetry.as_ref().map_or(0, |t| t.confirming());
            let publishing = self.telemetry.as_ref().is_some_and(|t| t.publishing());
            let waiting = self.to_ack.len() + self.acks_in_flight() + confirming;
            let working = self.held.len().saturating_sub(waiting);
            let mut max = self
                .config
                .max_in_flight
                .saturating_sub(working)
                .min(self.config.batch)
                .min(self.count_room());
            if self.telemetry.is_some() {
                // A slow channel throttles the receive rather than letting finished messages pile up (see
                // [`crate::telemetry::WAITING_TURNS`]).
                let cap = crate::telemetry::WAITING_TURNS
                    * self.config.batch.min(self.config.max_in_flight);
                max = max.min(cap.saturating_sub(waiting));
            }
            if max == 0 && self.to_ack.is_empty() && self.acking.is_empty() {
                let retry = self.telemetry.as_ref().and_then(|t| t.retry_in());
                self.wait_for_done(retry).await;
                continue;
            }
            // A receive returns at once while work is running or records are being confirmed (their acks
            // should not wait out a long poll); while a failed publish waits to be retried, it waits at most
            // until the retry (a receive returning at once would spin against the broker meanwhile).
            let wait = if working > 0 || publishing {
                Duration::ZERO
            } else {
                let retry = self.telemetry.as_ref().and_then(|t| t.retry_in());
                retry.map_or(RECEIVE_WAIT, |r| r.min(RECEIVE_WAIT))
            };
            match self.turn(max, wait).await? {
                Ok(got) => {
                    failures = 0;
                    self.failures.confirmed();
                    // Nothing came: wait a little for work or for the records' confirmation (which wakes
                    // this at once) rather than poll again straight away.
                    if got == 0 && (working > 0 || publishing) {
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
                    if e.kind() == queues::ErrorKind::Denied {
                        return Err(Error::Denied(e));
                    }
                    let failing_for = self.failures.failed(&e);
                    // Only a run with an end gives up: one without must outlive a broker restart.
                    if self.config.count.is_some() && failing_for >= self.config.give_up_after {
                        return Err(Error::GaveUp {
                            source: e,
                            failing_for,
                            give_up_after: self.config.give_up_after,
                        });
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
    pub(crate) async fn pause(&mut self, pause: Duration) {
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

    pub(crate) fn count_reached(&self) -> bool {
        self.config
            .count
            .is_some_and(|c| self.counts.acked.get() >= c)
    }

    /// How many more messages may be received without overshooting `--count`.
    pub(crate) fn count_room(&self) -> usize {
        match self.config.count {
            Some(c) => c
                .saturating_sub(self.counts.acked.get() + self.held.len() as u64)
                .min(usize::MAX as u64) as usize,
            None => usize::MAX,
        }
    }

    pub(crate) fn accept(&mut self, d: Delivery) {
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

    pub(crate) fn mark_done(&mut self, key: u64) {
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

    pub(crate) fn collect_done(&mut self) {
        while let Ok(key) = self.done_rx.try_recv() {
            self.mark_done(key);
        }
        while self.tasks.try_join_next().is_some() {}
    }

    /// Acks every message in `to_ack` and receives up to `max` (`max` 0: acks only), in one round trip where
    /// the backend can, and settles the answer: acks counted, messages received taken in (how many is the
    /// answer). Where ledger records ride in the acks' own transaction (telemetry on SQLite), those of the
    /// messages acked go with them, and their file ledger entries are written inside it, before the commit.
    /// The outer error is the file ledger's, fatal; the inner one the queue's.
    pub(crate) async fn send_acks(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Result<usize, QueueError>, Error> {
        let sent = self.to_ack.len();
        let acks: Vec<Receipt> = self
            .to_ack
            .iter()
            .map(|k| self.held[k].receipt.clone())
            .collect();
        let lease = self.config.lease;
        let answer = match self.take_recorded() {
            None if max == 0 => self.queue.ack(acks).await.map(|o| (o, Vec::new())),
            None => self.queue.ack_and_receive(acks, max, lease, wait).await,
            Some(Joint {
                records,
                recorded,
                failed,
            }) => {
                let answer = self
                    .queue
                    .ack_and_receive_recorded(records, acks, max, lease, wait)
                    .await;
                self.ledger_hook_failed(&failed)?;
                if answer.is_err() {
                    self.records_again(recorded);
                }
                answer
            }
        };
        let (outcome, deliveries) = match answer {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(e)),
        };
        self.acked(outcome, sent);
        let got = deliveries.len();
        for d in deliveries {
            self.accept(d);
        }
        Ok(Ok(got))
    }

    /// With joint telemetry (records in the acks' transaction): the records of the messages in `to_ack`, and
    /// their file ledger entries, to be written by the queue just before the commit.
    pub(crate) fn take_recorded(&mut self) -> Option<Joint> {
        let t = self.telemetry.as_mut().filter(|t| t.joint)?;
        let recorded = std::mem::take(&mut t.with_acks);
        let bodies = workload::telemetry::ledger_bodies(&t.id, &recorded);
        let failed = Arc::new(Mutex::new(None));
        let before_commit = self.ledger.as_mut().map(|ledger| {
            for &(entry, outcome) in &recorded {
                ledger.push_outcome(entry, outcome);
            }
            ledger_hook(ledger.take_pending(), failed.clone())
        });
        let records = Recorded {
            suffix: RECORDS_SUFFIX,
            bodies,
            before_commit,
        };
        Some(Joint {
            records,
            recorded,
            failed,
        })
    }

    /// The file ledger's failure inside an ack's transaction, which ends the run.
    pub(crate) fn ledger_hook_failed(
        &mut self,
        failed: &Mutex<Option<LedgerError>>,
    ) -> Result<(), Error> {
        match failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(e) => {
                self.ledger_failed = true;
                Err(Error::LedgerWrite(e))
            }
            None => Ok(()),
        }
    }

    /// Records whose acks failed (nothing was committed) go again with the next acks (their file entries too,
    /// written again if that try wrote them before failing to commit: a duplicate).
    pub(crate) fn records_again(&mut self, mut recorded: Vec<(Entry, Outcome)>) {
        if let Some(t) = self.telemetry.as_mut() {
            recorded.append(&mut t.with_acks);
            t.with_acks = recorded;
        }
    }

    /// Counts the outcome of an ack of the first `sent` messages of `to_ack` (later ones joined after it
    /// was sent).
    pub(crate) fn acked(&mut self, outcome: AckOutcome, sent: usize) {
        let keys: Vec<u64> = self.to_ack.drain(..sent).collect();
        self.settle(outcome, keys);
    }

    /// Counts the outcome of an ack of the messages `keys`, and lets them go.
    pub(crate) fn settle(&mut self, outcome: AckOutcome, keys: Vec<u64>) {
        if keys.is_empty() {
            return;
        }
        // End to end = from the producer's send to the confirmed ack: queueing, delivery, work and ack, the
        // whole time a message costs. (A message whose ack was refused was still processed; it counts too.)
        let now_us = unix_micros();
        for key in keys {
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

    /// Waits for finished work, the answer of the records' publish in flight, the next stats tick, a stop
    /// request, or `limit`.
    pub(crate) async fn wait_for_done(&mut self, limit: Option<Duration>) {
        let mut until = self.next_tick;
        if let Some(limit) = limit {
            until = until.min(Instant::now() + limit);
        }
        let published = self.telemetry.as_ref().and_then(|t| t.in_flight_done());
        let published = async {
            match published {
                Some(done) => done.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(key) = self.done_rx.recv() => self.mark_done(key),
            _ = published => {}
            _ = sleep_until(until.into()) => {}
            _ = self.shutdown.requested(), if !self.shutdown.is_requested() => {}
        }
    }
}

/// Ledger records that ride in the acks' transaction (joint telemetry), with what their failure needs.
pub(crate) struct Joint {
    pub(crate) records: Recorded,
    /// Their entries, to send again if the transaction fails.
    pub(crate) recorded: Vec<(Entry, Outcome)>,
    /// The file ledger's failure inside the transaction.
    pub(crate) failed: Arc<Mutex<Option<LedgerError>>>,
}

/// The file ledger's batch, written by the queue inside the acks' transaction; a failure aborts it and is kept
/// in `failed` for the consumer, whose run it ends.
fn ledger_hook(pending: PendingWrite, failed: Arc<Mutex<Option<LedgerError>>>) -> BeforeCommit {
    Box::new(move || {
        pending.write().map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            io
        })
    })
}

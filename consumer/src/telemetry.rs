//! The consumer's side of the telemetry channel (see [`workload::telemetry`]): ledger records published and
//! confirmed before the ack, heartbeats every stats interval, a goodbye on a graceful exit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queues::{ErrorKind, Queue, QueueError, QueueUrl};
use tokio::sync::{Notify, oneshot};
use workload::clock::unix_micros;
use workload::ledger::{Entry, Outcome};
use workload::telemetry::{self, Heartbeat, Record};

use crate::consume::Consumer;
use crate::error::Error;

/// A failed publish of ledger records is retried after this long (the batch waits, unacked, meanwhile).
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// The goodbye gets this long: a stopping consumer must not hang on a channel that is down.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// With telemetry, finished messages waiting for their ack or their records' confirmation are held up to
/// this many receives' worth (`min(--batch, --max-in-flight)` each): about one group being confirmed, one
/// accumulating behind it and one being acked. Past it the receive takes nothing, so a slow channel throttles
/// the consumer instead of growing what it holds without bound. [`crate::run`] tells the queue the same bound
/// ([`Queue::hold_at_most`]), which is what AMQP's prefetch is made of.
pub(crate) const WAITING_TURNS: usize = 3;

/// The two sibling queues of the work queue, opened.
pub(crate) struct Telemetry {
    pub(crate) id: String,
    records: Arc<dyn Queue>,
    beats: Arc<dyn Queue>,
    /// Records not yet sent, and the held messages they cover (acked only once they are confirmed). While a
    /// publish is in flight the next group gathers here: group commit, as a database does its log.
    pending: Vec<(Entry, Outcome)>,
    pending_keys: Vec<u64>,
    /// The publish running in the background, at most one: records are confirmed in the order they were made.
    in_flight: Option<InFlight>,
    retry_at: Option<Instant>,
    /// Whether the records ride in the acks' own transaction ([`Queue::records_with_acks`]: SQLite). Then
    /// nothing above is used: finished messages go straight to the ack, their records to `with_acks`.
    pub(crate) joint: bool,
    /// With `joint`: the records of the messages in the consumer's `to_ack`, sent with their acks.
    pub(crate) with_acks: Vec<(Entry, Outcome)>,
}

/// A publish of ledger records running as its own task, beside the loop's ack/receive round trips.
pub(crate) struct InFlight {
    records: Vec<(Entry, Outcome)>,
    keys: Vec<u64>,
    result: oneshot::Receiver<Result<(), QueueError>>,
    /// Signalled once `result` holds the answer, so that a loop waiting for work wakes for it too.
    done: Arc<Notify>,
}

impl Telemetry {
    /// Opens `QUEUE-telemetry` and `QUEUE-heartbeat` beside `queue` (`work`, opened); heartbeats expire where
    /// the backend can expire messages ([`telemetry::heartbeat_expiry`]), ledger records never do. Opening the
    /// records' sibling makes it, before any record is written with the acks.
    pub(crate) async fn open(
        queue: &QueueUrl,
        work: &dyn Queue,
        stats_interval: Duration,
    ) -> Result<Telemetry, QueueError> {
        let records = queue.sibling(telemetry::RECORDS_SUFFIX)?;
        let beats = queue.sibling(telemetry::HEARTBEAT_SUFFIX)?;
        let beats = beats
            .expiring(telemetry::heartbeat_expiry(stats_interval))
            .unwrap_or(beats);
        tracing::info!(records = %records, heartbeats = %beats, "telemetry on");
        Ok(Telemetry {
            id: telemetry::consumer_id(),
            records: records.open().await?,
            beats: beats.open().await?,
            pending: Vec::new(),
            pending_keys: Vec::new(),
            in_flight: None,
            retry_at: None,
            joint: work.records_with_acks(telemetry::RECORDS_SUFFIX),
            with_acks: Vec::new(),
        })
    }

    /// Adds the records of finished messages (and the held messages `keys` they cover) to the pending batch.
    pub(crate) fn hold(&mut self, records: Vec<(Entry, Outcome)>, mut keys: Vec<u64>) {
        self.pending.extend(records);
        self.pending_keys.append(&mut keys);
    }

    /// Starts publishing every pending record as a background task, unless a publish is in flight, nothing
    /// is pending, or a failed one waits out [`RETRY_AFTER`]. Returns whether it started one.
    pub(crate) fn start_publish(&mut self) -> bool {
        if self.in_flight.is_some() || self.pending_keys.is_empty() || self.retry_in().is_some() {
            return false;
        }
        let records = std::mem::take(&mut self.pending);
        let keys = std::mem::take(&mut self.pending_keys);
        let bodies = telemetry::ledger_bodies(&self.id, &records);
        let queue = self.records.clone();
        let (tx, result) = oneshot::channel();
        let done = Arc::new(Notify::new());
        let signal = done.clone();
        tokio::spawn(async move {
            // Only foreign bodies: nothing to record, their acks need no confirmation.
            let outcome = if bodies.is_empty() {
                Ok(())
            } else {
                queue.publish(bodies).await
            };
            // The loop may be gone (a fatal ledger error); the records then cover unacked messages, which are
            // delivered again: duplicates, never losses.
            let _ = tx.send(outcome);
            // A stored permit: the loop wakes even if it starts waiting only after this.
            signal.notify_one();
        });
        self.in_flight = Some(InFlight {
            records,
            keys,
            result,
            done,
        });
        true
    }

    /// The publish in flight, with its answer, once it has one (without waiting).
    pub(crate) fn finished(&mut self) -> Option<(InFlight, Result<(), QueueError>)> {
        let result = match self.in_flight.as_mut()?.result.try_recv() {
            Ok(result) => result,
            Err(oneshot::error::TryRecvError::Empty) => return None,
            Err(oneshot::error::TryRecvError::Closed) => Err(no_answer()),
        };
        self.in_flight.take().map(|f| (f, result))
    }

    /// The publish in flight, with its answer, waited for (the drain's way: it has no round trip to overlap).
    pub(crate) async fn wait_in_flight(&mut self) -> Option<(InFlight, Result<(), QueueError>)> {
        let mut f = self.in_flight.take()?;
        let result = (&mut f.result).await.unwrap_or_else(|_| Err(no_answer()));
        Some((f, result))
    }

    /// What wakes a loop once the publish in flight (if any) has its answer.
    pub(crate) fn in_flight_done(&self) -> Option<Arc<Notify>> {
        self.in_flight.as_ref().map(|f| f.done.clone())
    }

    /// Whether a publish is in flight.
    pub(crate) fn publishing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// How many held messages wait for their records' confirmation (pending or in flight).
    pub(crate) fn confirming(&self) -> usize {
        self.pending_keys.len() + self.in_flight.as_ref().map_or(0, |f| f.keys.len())
    }

    /// How long a failed publish still waits before the next attempt, if one does.
    pub(crate) fn retry_in(&self) -> Option<Duration> {
        self.retry_at
            .and_then(|at| at.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// The publish task ended without an answer (it panicked, or the runtime is stopping): its records may or may
/// not be in the channel, so they count as unconfirmed and are published again (a duplicate at worst).
fn no_answer() -> QueueError {
    QueueError::new(
        ErrorKind::Other,
        "the publish of ledger records ended without an answer",
    )
}

impl Consumer {
    /// Settles a finished publish of records: confirmed, its messages go on to the ack and its entries to
    /// the file ledger; failed, its records go back to the front of the pending batch (retried, with those
    /// gathered since, after [`RETRY_AFTER`]; unacked meanwhile): a message is never acked before its record
    /// is durable in the channel, and a confirmed record is never sent again. The file ledger is written
    /// channel first and file right after, so a file ledger kept beside the channel (as the tests do) never
    /// holds an entry the channel lacks. The error is the file ledger's, fatal.
    pub(crate) fn published(
        &mut self,
        publish: InFlight,
        result: Result<(), QueueError>,
    ) -> Result<(), Error> {
        let Some(t) = self.telemetry.as_mut() else {
            return Ok(());
        };
        let InFlight {
            mut records,
            mut keys,
            ..
        } = publish;
        match result {
            Ok(()) => {
                t.retry_at = None;
                self.to_ack.append(&mut keys);
                if let Some(ledger) = self.ledger.as_mut() {
                    for (entry, outcome) in records {
                        ledger.push_outcome(entry, outcome);
                    }
                }
                self.flush_ledger()
            }
            Err(e) => {
                self.counts.errors.inc();
                self.counts.throttled.inc_by(u64::from(e.is_throttled()));
                tracing::warn!(error = %e, held = keys.len() + t.pending_keys.len(), "could not publish ledger records; their acks wait");
                t.retry_at = Some(Instant::now() + RETRY_AFTER);
                // In front: the oldest records are retried first, and sent in the order they were made.
                records.append(&mut t.pending);
                keys.append(&mut t.pending_keys);
                t.pending = records;
                t.pending_keys = keys;
                Ok(())
            }
        }
    }

    /// Settles the publish in flight if it has finished, then starts the next one if it may: the loop's step
    /// for the telemetry channel, which never waits for it.
    pub(crate) fn confirm_records(&mut self) -> Result<(), Error> {
        let Some(t) = self.telemetry.as_mut() else {
            return Ok(());
        };
        if let Some((publish, result)) = t.finished() {
            // A file ledger that failed stops the run before anything more is published.
            self.published(publish, result)?;
        }
        if let Some(t) = self.telemetry.as_mut() {
            t.start_publish();
        }
        Ok(())
    }

    /// Waits for the publish in flight and then publishes the rest, until every pending record is confirmed
    /// or a publish failed: for the drain, which has no round trip to overlap them with.
    pub(crate) async fn confirm_all_records(&mut self) -> Result<(), Error> {
        loop {
            let Some(t) = self.telemetry.as_mut() else {
                return Ok(());
            };
            if let Some((publish, result)) = t.wait_in_flight().await {
                self.published(publish, result)?;
            }
            if !self.telemetry.as_mut().is_some_and(|t| t.start_publish()) {
                return Ok(());
            }
        }
    }

    fn heartbeat(&self, goodbye: bool) -> Option<(Arc<dyn Queue>, Vec<u8>)> {
        let t = self.telemetry.as_ref()?;
        let beat = Record::Heartbeat(Heartbeat {
            consumer: t.id.clone(),
            at_us: unix_micros(),
            interval_ms: self.config.stats_interval.as_millis() as u64,
            alive: !goodbye,
            slots: self.config.max_in_flight as u64,
            busy: self.held.len() as u64,
            goodbye,
        });
        Some((t.beats.clone(), beat.encode()))
    }

    /// Sends a heartbeat without waiting for it: a slow channel must not slow the work down, and a lost beat
    /// only makes a watcher count this consumer late.
    pub(crate) fn send_heartbeat(&self) {
        if let Some((beats, body)) = self.heartbeat(false) {
            tokio::spawn(async move {
                if let Err(e) = beats.publish(vec![body]).await {
                    tracing::debug!(error = %e, "heartbeat not sent");
                }
            });
        }
    }

    /// Says goodbye (a graceful exit), waiting for it a short while.
    pub(crate) async fn send_goodbye(&self) {
        if let Some((beats, body)) = self.heartbeat(true) {
            match tokio::time::timeout(GOODBYE_TIMEOUT, beats.publish(vec![body])).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "goodbye not sent; watchers will count this consumer gone after two missed beats")
                }
                Err(_) => tracing::warn!(
                    "goodbye timed out; watchers will count this consumer gone after two missed beats"
                ),
            }
        }
    }
}

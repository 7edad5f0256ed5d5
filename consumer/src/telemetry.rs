//! The consumer's side of the telemetry channel (see [`workload::telemetry`]): ledger records published and
//! confirmed before the ack, heartbeats every stats interval, a goodbye on a graceful exit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queues::{Queue, QueueError, QueueUrl};
use workload::clock::unix_micros;
use workload::ledger::{Entry, Outcome};
use workload::telemetry::{self, Heartbeat, Record};

use crate::consume::Consumer;
use crate::error::Error;

/// A failed publish of ledger records is retried after this long (the batch waits, unacked, meanwhile).
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// The goodbye gets this long: a stopping consumer must not hang on a channel that is down.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// The two sibling queues of the work queue, opened.
pub(crate) struct Telemetry {
    pub(crate) id: String,
    records: Arc<dyn Queue>,
    beats: Arc<dyn Queue>,
    /// Records not yet confirmed, and the held messages they cover (acked only once they are).
    pending: Vec<(Entry, Outcome)>,
    pending_keys: Vec<u64>,
    retry_at: Option<Instant>,
}

impl Telemetry {
    /// Opens `QUEUE-telemetry` and `QUEUE-heartbeat` beside `queue`; heartbeats expire where the backend can
    /// expire messages ([`telemetry::heartbeat_expiry`]), ledger records never do.
    pub(crate) async fn open(
        queue: &QueueUrl,
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
            retry_at: None,
        })
    }

    /// Adds the records of finished messages (and the held messages `keys` they cover) to the pending batch.
    pub(crate) fn hold(&mut self, records: Vec<(Entry, Outcome)>, mut keys: Vec<u64>) {
        self.pending.extend(records);
        self.pending_keys.append(&mut keys);
    }

    /// The publish of the pending batch, unless there is none or a failed one waits out [`RETRY_AFTER`].
    pub(crate) fn publish(&self) -> Option<Publish> {
        if self.pending_keys.is_empty() || self.retry_in().is_some() {
            return None;
        }
        Some(Publish {
            queue: self.records.clone(),
            bodies: telemetry::ledger_bodies(&self.id, &self.pending),
        })
    }

    /// How many held messages wait for their records' confirmation.
    pub(crate) fn confirming(&self) -> usize {
        self.pending_keys.len()
    }

    /// How long a failed publish still waits before the next attempt, if one does.
    pub(crate) fn retry_in(&self) -> Option<Duration> {
        self.retry_at
            .and_then(|at| at.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// One publish of ledger records, owning what it needs so that it can run beside the ack/receive round trip.
pub(crate) struct Publish {
    queue: Arc<dyn Queue>,
    bodies: Vec<Vec<u8>>,
}

impl Publish {
    pub(crate) async fn run(self) -> Result<(), QueueError> {
        if self.bodies.is_empty() {
            // Only foreign bodies: nothing to record, their acks need no confirmation.
            return Ok(());
        }
        self.queue.publish(self.bodies).await
    }
}

impl Consumer {
    /// Settles a publish of the pending batch: confirmed, its messages go on to the ack; failed, they stay
    /// pending (retried after [`RETRY_AFTER`], unacked meanwhile): a message is never acked before its record
    /// is durable in the channel. Either way the file ledger is written now, channel first and file right
    /// after, so that a SIGKILL between the two falls in a write of microseconds rather than a broker's round
    /// trip, and a file ledger kept beside the channel (as the tests do) almost never holds an entry the
    /// channel lacks. The error is the file ledger's, fatal.
    pub(crate) fn published(&mut self, result: Result<(), QueueError>) -> Result<(), Error> {
        if let Some(t) = self.telemetry.as_mut() {
            match result {
                Ok(()) => {
                    t.retry_at = None;
                    t.pending.clear();
                    self.to_ack.append(&mut t.pending_keys);
                }
                Err(e) => {
                    self.counts.errors.inc();
                    self.counts.throttled.inc_by(u64::from(e.is_throttled()));
                    tracing::warn!(error = %e, held = t.pending_keys.len(), "could not publish ledger records; their acks wait");
                    t.retry_at = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
        self.flush_ledger()
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

//! The consumer's side of the telemetry channel (see [`workload::telemetry`]): ledger records published and
//! confirmed before the ack, heartbeats every stats interval, a goodbye on a graceful exit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queues::{Queue, QueueError, QueueUrl};
use workload::clock::unix_micros;
use workload::ledger::{Entry, Outcome};
use workload::telemetry::{self, Heartbeat, Record};

use crate::consume::Consumer;

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
    /// Opens `QUEUE-telemetry` and `QUEUE-heartbeat` beside `queue`.
    pub(crate) async fn open(queue: &QueueUrl) -> Result<Telemetry, QueueError> {
        let records = queue.sibling(telemetry::RECORDS_SUFFIX)?;
        let beats = queue.sibling(telemetry::HEARTBEAT_SUFFIX)?;
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
}

impl Consumer {
    /// Publishes the ledger records of `entries` (for the held messages `keys`), and returns the keys whose
    /// records the channel confirmed: those may be acked now. Without telemetry every key may.
    ///
    /// One publish per ack batch; a failed one keeps its batch pending (retried after [`RETRY_AFTER`], the
    /// messages unacked meanwhile): a message is never acked before its record is durable in the channel.
    pub(crate) async fn publish_records(
        &mut self,
        entries: Vec<(Entry, Outcome)>,
        mut keys: Vec<u64>,
    ) -> Vec<u64> {
        let Some(t) = self.telemetry.as_mut() else {
            return keys;
        };
        t.pending.extend(entries);
        t.pending_keys.append(&mut keys);
        if t.pending_keys.is_empty() || t.retry_at.is_some_and(|at| Instant::now() < at) {
            return Vec::new();
        }
        if !t.pending.is_empty() {
            let bodies = telemetry::ledger_bodies(&t.id, &t.pending);
            if let Err(e) = t.records.publish(bodies).await {
                self.counts.errors.inc();
                self.counts.throttled.inc_by(u64::from(e.is_throttled()));
                tracing::warn!(error = %e, held = t.pending_keys.len(), "could not publish ledger records; their acks wait");
                t.retry_at = Some(Instant::now() + RETRY_AFTER);
                return Vec::new();
            }
        }
        t.retry_at = None;
        t.pending.clear();
        std::mem::take(&mut t.pending_keys)
    }

    /// Held messages whose records wait for the channel (they count as held, not as ready to ack).
    pub(crate) fn records_pending(&self) -> bool {
        self.telemetry
            .as_ref()
            .is_some_and(|t| !t.pending_keys.is_empty())
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

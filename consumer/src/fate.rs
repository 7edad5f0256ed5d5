//! The failure model (`--fail-rate`, `--fail-delay`, `--max-deliveries`; see [`crate::consume`]): each
//! finished message is consumed, failed (given back with `--fail-delay`) or set aside as poison; the ledger is
//! written (and, with telemetry, its records confirmed by the channel) before any ack.

use queues::Receipt;
use workload::envelope::format_run_id;
use workload::ledger::Outcome;

use crate::consume::Consumer;
use crate::error::Error;

/// Poison messages logged individually at warn level; later ones at debug (the ledger records every one).
const POISON_LOG_LIMIT: u64 = 20;

impl Consumer {
    /// Decides the fate of finished work and records it: without telemetry the ledger entries are written
    /// and the messages queued for the ack; with telemetry their records join the channel's pending batch
    /// (published in the background, grouped, see [`Consumer::consume`]) and the file ledger is written once
    /// the channel confirmed them. An error here is fatal: acking without a ledger entry would make
    /// the audit report a processed message as lost.
    ///
    /// The failure model decides each message's fate first: failed ones wait in `to_release` (no ledger entry);
    /// poison ones are recorded as poison and acked like consumed ones.
    pub(crate) fn record_ready(&mut self) -> Result<(), Error> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let mut acks = Vec::with_capacity(self.ready.len());
        let mut records = Vec::new();
        for key in std::mem::take(&mut self.ready) {
            match self.fate(key) {
                Some(outcome) => {
                    if let Some(entry) = self.held.get(&key).and_then(|h| h.entry) {
                        // With telemetry the file ledger gets the entry once the channel confirmed it.
                        if self.telemetry.is_some() {
                            records.push((entry, outcome));
                        } else if let Some(ledger) = self.ledger.as_mut() {
                            ledger.push_outcome(entry, outcome);
                        }
                    }
                    acks.push(key);
                }
                None => self.to_release.push(key),
            }
        }
        match self.telemetry.as_mut() {
            // The records go with the acks, in one transaction: nothing to confirm first.
            Some(t) if t.joint => {
                t.with_acks.append(&mut records);
                self.to_ack.append(&mut acks);
            }
            Some(t) => t.hold(records, acks),
            None => {
                self.flush_ledger()?;
                self.to_ack.append(&mut acks);
            }
        }
        Ok(())
    }

    /// Writes the file ledger's buffered entries (a no-op without one).
    pub(crate) fn flush_ledger(&mut self) -> Result<(), Error> {
        if let Some(ledger) = self.ledger.as_mut()
            && let Err(e) = ledger.flush()
        {
            self.ledger_failed = true;
            return Err(Error::LedgerWrite(e));
        }
        Ok(())
    }

    /// [`Consumer::record_ready`], then, with telemetry, the publish in flight and the pending records
    /// waited for: for the drain, which has no receive to overlap them with.
    pub(crate) async fn log_ready(&mut self) -> Result<(), Error> {
        self.record_ready()?;
        self.confirm_all_records().await
    }

    /// The failure model's verdict on a message whose work is done: `None` to give it back (failed), or the
    /// outcome to record before the ack. Counts and logs failures and poison.
    pub(crate) fn fate(&mut self, key: u64) -> Option<Outcome> {
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
    pub(crate) async fn release_failed(&mut self) {
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
}

//! The drain that ends a run: finish and ack what is held until `--drain-timeout` (or a second signal), then
//! give back the rest, so that nothing held is lost and other consumers get it at once.

use std::time::{Duration, Instant};

use queues::Receipt;
use tokio::time::sleep_until;

use crate::consume::Consumer;

impl Consumer {
    /// Stops taking messages; finishes and acks held work until `--drain-timeout` (or a second signal), then
    /// releases whatever is left so other consumers get it at once.
    pub(crate) async fn drain(&mut self) {
        let deadline = Instant::now() + self.config.drain_timeout;
        // Push-based backends (NSQ: RDY 0, CLS) stop sending before the drain; a no-op for the others.
        if let Err(e) = self.queue.stop_receiving().await {
            tracing::warn!(error = %e, "could not stop deliveries; unacked messages return after their lease");
        }
        // Acks sent in the background are answered once deliveries have stopped: settle them all (a failed
        // one goes back to `to_ack`, sent below).
        while !self.acking.is_empty() {
            match self.settle_answers(true).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.counts.errors.inc();
                    tracing::warn!(error = %e, "ack failed while draining");
                }
                // The file ledger failed: what is held goes back below.
                Err(_) => break,
            }
        }
        if !self.held.is_empty() {
            tracing::info!(held = self.held.len(), "draining");
        }
        loop {
            self.collect_done();
            if !self.ledger_failed && self.log_ready().await.is_err() {
                break;
            }
            self.release_failed().await;
            if !self.to_ack.is_empty() {
                // Where the file ledger's entries are written in the acks' own transaction, a failed file
                // ledger stops the acks: they would be acks without entries. What is held goes back below.
                if self.ledger_failed && self.telemetry.as_ref().is_some_and(|t| t.joint) {
                    break;
                }
                match self.send_acks(0, Duration::ZERO).await {
                    Ok(Ok(_)) => {}
                    // The file ledger failed: what is held goes back below.
                    Err(_) => break,
                    Ok(Err(e)) => {
                        self.counts.errors.inc();
                        tracing::warn!(error = %e, "ack failed while draining");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            // With the file ledger failed, nothing held can be acked any more but what was recorded before
            // (`to_ack`, sent above): waiting out the drain timeout would only keep the rest from other
            // consumers. It goes back below.
            let unrecordable = self.ledger_failed && self.to_ack.is_empty();
            if self.held.is_empty()
                || unrecordable
                || self.shutdown.is_forced()
                || Instant::now() >= deadline
            {
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
}

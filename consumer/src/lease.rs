//! Lease extension: messages whose work outlasts `--lease` keep their lease, so that no other consumer gets
//! them while they are worked on.

use std::time::Instant;

use queues::Receipt;

use crate::consume::Consumer;

impl Consumer {
    /// Keeps the leases of messages still being worked on alive.
    pub(crate) async fn extend_if_due(&mut self) {
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
}

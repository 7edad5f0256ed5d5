//! What the in-process tests of the producer and consumer loops share (producer/tests/it/loops.rs,
//! consumer/tests/it/loops.rs): a bound on every run, a writer that captures the stats lines a run writes, and
//! a test double around a real queue whose publishes or acks a test takes over.

use std::io::Write;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use queues::{AckOutcome, Delivery, Depth, Queue, QueueError, Receipt};
use serde_json::Value;

/// Every test's bound: a loop that hangs fails instead of blocking the suite.
pub const BOUND: Duration = Duration::from_secs(60);

/// Collects the stats lines a run writes (give a clone to the run's reporting).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line written so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("capture lock").clone();
        let text = String::from_utf8(bytes).expect("stats lines are UTF-8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a stats line is JSON"))
            .collect()
    }

    /// The last line, checked to be the summary.
    pub fn summary(&self) -> Value {
        let summary = self.lines().pop().expect("a summary line");
        assert_eq!(summary["kind"], "summary");
        summary
    }

    /// How many interval lines were written.
    pub fn intervals(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l["kind"] == "interval")
            .count()
    }
}

/// What a test double changes: publishes, acks, or both; every other call goes to the real queue.
#[async_trait]
pub trait Hooks: Send + Sync {
    /// The real queue underneath.
    fn inner(&self) -> &dyn Queue;
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        self.inner().publish(bodies).await
    }
    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        self.inner().ack(receipts).await
    }
}

/// A queue that is the real one but for what its [`Hooks`] take over; the hooks' own fields (what they
/// recorded) are reached through `Deref`.
pub struct Double<H>(pub H);

impl<H> Deref for Double<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.0
    }
}

#[async_trait]
impl<H: Hooks> Queue for Double<H> {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        self.0.publish(bodies).await
    }
    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.0.inner().receive(max, lease, wait).await
    }
    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        self.0.ack(receipts).await
    }
    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        self.0.inner().release(receipts, delay).await
    }
    async fn extend(
        &self,
        receipts: &mut [Receipt],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        self.0.inner().extend(receipts, lease).await
    }
    async fn depth(&self) -> Result<Depth, QueueError> {
        self.0.inner().depth().await
    }
    fn describe(&self) -> String {
        format!("test double around {}", self.0.inner().describe())
    }
}

//! SIGTERM and SIGINT, handled in one place and turned into tokens that every task watches.
//!
//! Scaling engines and container runtimes stop a container with SIGTERM, then SIGKILL after a grace period
//! (10 s by default in Docker and Marathon, 30 s in Kubernetes). The first signal asks for a graceful stop:
//! producers stop sending, consumers stop taking messages and drain. A second signal asks to hurry: consumers
//! give their in-flight messages back at once instead of finishing them. Tasks stop only at safe points (after
//! an ack, between batches), never by being dropped mid-operation.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The stop request shared by every task of a process. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    graceful: CancellationToken,
    forced: CancellationToken,
}

impl Shutdown {
    /// A token no signal triggers (tests, or a caller that stops by other means).
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs SIGTERM and SIGINT handlers. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the signal handlers cannot be registered (the OS refused).
    pub fn from_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let s = shutdown.clone();
        tokio::spawn(async move {
            for round in 0.. {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                // Trigger first, log after: the stop must never depend on a log write (stderr may be a
                // pipe whose reader went away).
                if round == 0 {
                    s.trigger();
                    tracing::info!(
                        "{name} received: stopping gracefully (send it again to stop at once)"
                    );
                } else {
                    s.force();
                    tracing::warn!("{name} received again: stopping at once");
                }
            }
        });
        Ok(shutdown)
    }

    /// Asks for a graceful stop.
    pub fn trigger(&self) {
        self.graceful.cancel();
    }

    /// Asks for an immediate stop (implies a graceful one).
    pub fn force(&self) {
        self.graceful.cancel();
        self.forced.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.graceful.is_cancelled()
    }

    pub fn is_forced(&self) -> bool {
        self.forced.is_cancelled()
    }

    /// Completes when a stop has been asked for.
    pub async fn requested(&self) {
        self.graceful.cancelled().await
    }

    /// Completes when an immediate stop has been asked for.
    pub async fn forced(&self) {
        self.forced.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn force_implies_requested_and_clones_share_state() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_requested());
        s.force();
        c.requested().await;
        c.forced().await;
        assert!(c.is_requested() && c.is_forced());
    }
}

//! Publish failures, shared by the batch tasks: logged once when they start and then as a summary at most every
//! [`LOG_EVERY`] (a dead queue retried with back-off would otherwise log every attempt, dozens of lines a
//! minute), logged again when the queue recovers, and timed so that a bounded run can give up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most often a failing queue is reported after its first failure.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The current streak of failed publishes, if any.
#[derive(Default)]
pub struct Failures(Mutex<Streak>);

#[derive(Default)]
struct Streak {
    /// When the first failure since the last confirmed publish happened.
    since: Option<Instant>,
    /// Failed attempts in the streak.
    attempts: u64,
    /// Failed attempts since the last log line.
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Failures {
    /// Records a failed attempt and logs it when due; returns how long the queue has been failing.
    pub fn failed(&self, error: &dyn std::fmt::Display) -> Duration {
        let now = Instant::now();
        // A poisoned lock only means another batch task panicked mid-update; the counts are still usable.
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let since = *s.since.get_or_insert(now);
        s.attempts += 1;
        s.unlogged += 1;
        match s.last_log {
            None => {
                tracing::warn!(
                    "publish failed: {error}; retrying with back-off (reported again every {}s while it lasts)",
                    LOG_EVERY.as_secs()
                );
                s.last_log = Some(now);
                s.unlogged = 0;
            }
            Some(last) if now.duration_since(last) >= LOG_EVERY => {
                tracing::warn!(
                    "publish still failing after {:.0}s: {} failed attempts since the last report; last error: {error}",
                    now.duration_since(since).as_secs_f64(),
                    s.unlogged
                );
                s.last_log = Some(now);
                s.unlogged = 0;
            }
            Some(_) => {}
        }
        now.duration_since(since)
    }

    /// Records a confirmed publish, which ends a streak of failures.
    pub fn confirmed(&self) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = s.since.take() {
            tracing::info!(
                "publishing again: the queue confirmed after {} failed attempts over {:.1}s",
                s.attempts,
                since.elapsed().as_secs_f64()
            );
            *s = Streak::default();
        }
    }
}

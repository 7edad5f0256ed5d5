//! A streak of failed queue calls (the producer's publishes, the consumer's receives): logged once when it
//! starts and then as a summary at most every [`LOG_EVERY`] (a dead queue retried with back-off would
//! otherwise log every attempt, dozens of lines a minute), logged again when the queue recovers, and timed so
//! that a run with an end can give up. One type for both roles, so that they report a dead queue alike.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most often a failing queue is reported after its first failure.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The current streak of failed calls, if any. Shared (behind an `Arc`) by the tasks that make the calls.
pub struct Failures {
    streak: Mutex<Streak>,
    /// The call that fails, as the log names it: "publish", "receive".
    call: &'static str,
    /// The line's opening when the queue answers again: "publishing again: the queue confirmed".
    recovered: &'static str,
}

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
    /// `call` names the failing call in the log ("publish"); `recovered` opens the line logged when the
    /// queue answers again ("publishing again: the queue confirmed").
    pub fn new(call: &'static str, recovered: &'static str) -> Self {
        Failures {
            streak: Mutex::default(),
            call,
            recovered,
        }
    }

    /// Records a failed attempt and logs it when due; returns how long the queue has been failing.
    pub fn failed(&self, error: &dyn std::fmt::Display) -> Duration {
        let now = Instant::now();
        // A poisoned lock only means another batch task panicked mid-update; the counts are still usable.
        let mut s = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        let since = *s.since.get_or_insert(now);
        s.attempts += 1;
        s.unlogged += 1;
        match s.last_log {
            None => {
                tracing::warn!(
                    "{} failed: {error}; retrying with back-off (reported again every {}s while it lasts)",
                    self.call,
                    LOG_EVERY.as_secs()
                );
                s.last_log = Some(now);
                s.unlogged = 0;
            }
            Some(last) if now.duration_since(last) >= LOG_EVERY => {
                tracing::warn!(
                    "{} still failing after {:.0}s: {} failed attempts since the last report; last error: {error}",
                    self.call,
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

    /// Records a call that succeeded, which ends a streak of failures.
    pub fn confirmed(&self) {
        let mut s = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = s.since.take() {
            tracing::info!(
                "{} after {} failed attempts over {:.1}s",
                self.recovered,
                s.attempts,
                since.elapsed().as_secs_f64()
            );
            *s = Streak::default();
        }
    }
}

//! The open-loop send schedule: message `i` is due at `start + i / rate`.
//!
//! Due times are computed from the start, never from the previous send, so sleeping late or a slow publish
//! does not shift every later message (the drift that closed-loop "send, then sleep" loops accumulate).
//! A producer that falls behind sends what is due in batches until it has caught up, and the lateness of each
//! message (actual − intended send time) says how far behind it was.

use std::time::{Duration, Instant};

/// When each message is due.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    /// Messages per second; `None` sends as fast as the queue accepts.
    rate: Option<f64>,
}

impl Schedule {
    /// `rate` in messages per second; 0 means as fast as possible.
    pub fn new(start: Instant, rate: f64) -> Self {
        Schedule {
            start,
            rate: (rate > 0.0).then_some(rate),
        }
    }

    /// Offset from the start at which message `seq` is due (zero when unpaced).
    pub fn offset(&self, seq: u64) -> Duration {
        match self.rate {
            Some(rate) => Duration::from_secs_f64(seq as f64 / rate),
            None => Duration::ZERO,
        }
    }

    /// When message `seq` is due; for an unpaced schedule, now.
    pub fn due_at(&self, seq: u64) -> Instant {
        match self.rate {
            Some(_) => self.start + self.offset(seq),
            None => Instant::now(),
        }
    }

    /// How many messages are due by `now` (messages `0..n`); unbounded when unpaced.
    pub fn due_by(&self, now: Instant) -> u64 {
        match self.rate {
            Some(rate) => {
                let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
                (elapsed * rate).floor() as u64 + 1
            }
            None => u64::MAX,
        }
    }

    /// How many messages fall inside the first `duration` (due strictly before its end), when paced.
    pub fn count_within(&self, duration: Duration) -> Option<u64> {
        self.rate
            .map(|rate| (duration.as_secs_f64() * rate).ceil() as u64)
    }

    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_come_from_the_start_not_the_last_send() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1500), Duration::from_millis(1500));
        assert_eq!(s.due_at(250), start + Duration::from_millis(250));
        // Far behind: everything up to now is due at once.
        assert_eq!(s.due_by(start + Duration::from_millis(999)), 1000);
        assert_eq!(s.due_by(start), 1);
    }

    #[test]
    fn a_long_run_does_not_drift() {
        let start = Instant::now();
        let s = Schedule::new(start, 333.0);
        let after_an_hour = start + Duration::from_secs(3600);
        assert_eq!(s.due_by(after_an_hour), 333 * 3600 + 1);
        let last = s.due_at(333 * 3600);
        assert!(last.duration_since(after_an_hour) < Duration::from_micros(1));
    }

    #[test]
    fn duration_limits_count_messages_due_inside_the_window() {
        let s = Schedule::new(Instant::now(), 1000.0);
        assert_eq!(s.count_within(Duration::from_secs(10)), Some(10_000));
        assert_eq!(
            Schedule::new(Instant::now(), 3.0).count_within(Duration::from_millis(1001)),
            Some(4)
        );
        assert_eq!(
            Schedule::new(Instant::now(), 0.0).count_within(Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn unpaced_means_always_due() {
        let s = Schedule::new(Instant::now(), 0.0);
        assert!(!s.is_paced());
        assert_eq!(s.due_by(Instant::now()), u64::MAX);
    }
}

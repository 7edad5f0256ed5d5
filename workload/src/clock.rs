//! Wall-clock time in microseconds since the Unix epoch (UTC).
//!
//! Every timestamp that crosses a process boundary (in a message envelope, in a stats line) uses this unit, so
//! that a consumer can subtract a producer's send time from its own receive time. Both processes must share a
//! clock (one machine) or keep their clocks in sync (NTP) for end-to-end latency to mean anything.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now. A clock set before 1970 reads as 0 rather than panicking.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_millis() -> i64 {
    (unix_micros() / 1000) as i64
}

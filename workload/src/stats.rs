//! Latency histograms and the JSON-lines stats writer (the lines themselves are typed in [`crate::contract`]).
//!
//! Stdout of every binary carries only stats lines: one JSON object per line, each with `"role"` and `"kind"`
//! (`interval` every `--stats-interval`, one `summary` at exit). This is the suite's public interface,
//! documented in the README; humans read stderr.

use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram tracks exactly: one hour in µs. Larger values are clamped, not dropped.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, with three significant figures.
#[derive(Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        // The bounds are constants that hdrhistogram accepts; failure here would be a programming error.
        LatencyHistogram(
            Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("valid histogram bounds"),
        )
    }
}

impl LatencyHistogram {
    /// Records one value; values outside the tracked range are clamped into it.
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_TRACKABLE_US));
    }

    /// The value at `q` (0..=1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    pub fn max(&self) -> u64 {
        if self.0.is_empty() { 0 } else { self.0.max() }
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Adds every value of `other` into this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }
}

pub use crate::contract::Kind;

/// Writes one stats line (a [`crate::contract`] struct) to stdout and flushes, so that a reader piping it sees
/// every line as it happens. A closed stdout (the reader went away) is ignored: stats are a report, not the
/// work.
pub fn emit(line: &impl Serialize) {
    let _ = write_to(line, &mut std::io::stdout().lock());
}

/// Writes one stats line to `out` (a file rather than stdout) and flushes.
///
/// # Errors
/// When `out` cannot be written.
pub fn write_to(line: &impl Serialize, out: &mut impl Write) -> std::io::Result<()> {
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// This process's peak resident set size in KiB (`VmHWM`), or `None` where /proc is not available.
///
/// Read by the process itself because a parent's `wait4` figure is not this program's own: Linux carries the
/// high-water mark of the pre-exec image (the parent's, after vfork) across `exec`.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A rate in messages (or units) per second over `secs`, rounded to 0.1.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        (count as f64 / secs * 10.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_and_clamping() {
        let mut h = LatencyHistogram::default();
        assert_eq!((h.quantile(0.99), h.max()), (0, 0));
        for v in 1..=1000 {
            h.record(v);
        }
        assert!(
            (985..=995).contains(&h.quantile(0.99)),
            "{}",
            h.quantile(0.99)
        );
        h.record(u64::MAX);
        assert!(h.max() >= MAX_TRACKABLE_US, "clamped, not dropped");
        assert_eq!(h.len(), 1001);
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        let kib = peak_rss_kib().expect("VmHWM on Linux");
        assert!(kib > 100 && kib < 10 * 1024 * 1024, "{kib} KiB");
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(rate(1000, 2.0), 500.0);
        assert_eq!(rate(5, 0.0), 0.0);
    }
}

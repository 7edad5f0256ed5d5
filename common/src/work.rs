//! The simulated work a consumer does for each message.
//!
//! A work spec is written `none`, `sleep:DURATION` (wait without using CPU, like the original demo's
//! `MSS_CONSUMER_SLEEP_MS`) or `cpu:DURATION` (spin on one core until this thread has used that much CPU time).
//! `cpu:` counts the thread's own CPU time rather than wall time, so a message costs the same CPU whatever else
//! runs on the machine: a consumer that gets less CPU gets through fewer messages, which is exactly what a
//! scaling engine needs to see.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// One unit of simulated work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Work {
    /// Ack at once.
    #[default]
    None,
    /// Wait this long without using the CPU.
    Sleep(Duration),
    /// Use this much CPU time on one core.
    Cpu(Duration),
}

/// A work spec that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid work spec {spec:?}: {reason} (expected none, sleep:DURATION or cpu:DURATION, e.g. sleep:300ms)"
)]
pub struct WorkParseError {
    spec: String,
    reason: String,
}

impl FromStr for Work {
    type Err = WorkParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| WorkParseError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec == "none" {
            return Ok(Work::None);
        }
        let (kind, duration) = spec
            .split_once(':')
            .ok_or_else(|| err("no ':' between kind and duration"))?;
        let duration = crate::cli::parse_duration(duration).map_err(|e| err(&e))?;
        match kind {
            "sleep" => Ok(Work::Sleep(duration)),
            "cpu" => Ok(Work::Cpu(duration)),
            other => Err(err(&format!("unknown kind {other:?}"))),
        }
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::None => f.write_str("none"),
            Work::Sleep(d) => write!(f, "sleep:{}", humantime::format_duration(*d)),
            Work::Cpu(d) => write!(f, "cpu:{}", humantime::format_duration(*d)),
        }
    }
}

impl Work {
    /// True when there is nothing to do, so the caller can ack without scheduling anything.
    pub fn is_none(&self) -> bool {
        match self {
            Work::None => true,
            Work::Sleep(d) | Work::Cpu(d) => d.is_zero(),
        }
    }

    /// Does the work. `cpu:` work blocks the calling thread, so async callers run it on a blocking thread.
    pub async fn perform(self) {
        match self {
            Work::None => {}
            Work::Sleep(d) => tokio::time::sleep(d).await,
            Work::Cpu(d) => {
                // A panic inside the closure cannot happen (spin only reads a clock); a JoinError would mean
                // the runtime is shutting down, and then the work no longer matters.
                let _ = tokio::task::spawn_blocking(move || spin_cpu(d)).await;
            }
        }
    }
}

/// Spins until the calling thread has used `budget` of CPU time.
pub fn spin_cpu(budget: Duration) {
    let start = thread_cpu_time();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        // A few thousand cheap operations between clock reads keeps the clock's own cost negligible.
        for _ in 0..2048 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
        if thread_cpu_time().saturating_sub(start) >= budget {
            return;
        }
    }
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!("none".parse::<Work>(), Ok(Work::None));
        assert_eq!(
            "sleep:300ms".parse::<Work>(),
            Ok(Work::Sleep(Duration::from_millis(300)))
        );
        assert_eq!(
            "cpu:5ms".parse::<Work>(),
            Ok(Work::Cpu(Duration::from_millis(5)))
        );
        assert_eq!(
            "sleep:1s".parse::<Work>().map(|w| w.to_string()),
            Ok("sleep:1s".to_string())
        );
    }

    #[test]
    fn rejects_bad_specs_with_the_reason() {
        let e = "nap:3s".parse::<Work>().unwrap_err().to_string();
        assert!(e.contains("unknown kind \"nap\""), "{e}");
        let e = "sleep:abc".parse::<Work>().unwrap_err().to_string();
        assert!(e.contains("sleep:abc"), "{e}");
        assert!("sleep".parse::<Work>().is_err());
    }

    #[test]
    fn cpu_work_uses_at_least_its_budget_of_cpu() {
        let before = thread_cpu_time();
        spin_cpu(Duration::from_millis(20));
        let used = thread_cpu_time() - before;
        assert!(used >= Duration::from_millis(20), "used {used:?}");
        assert!(used < Duration::from_millis(200), "used {used:?}");
    }
}

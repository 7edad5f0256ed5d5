//! Flag parsers and set-up that every binary uses, so that `--queue`, durations and logging read the same
//! everywhere.

use std::time::Duration;

use clap::Args;

/// Parses a human duration such as `300ms`, `10s`, `2m` or `1h30m`.
///
/// The error states the expected syntax, because clap shows it to the user as is.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}): expected a number with a unit, e.g. 300ms, 10s, 2m")
    })
}

/// Parses a duration that must be more than zero (an interval: zero would mean a busy loop).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("invalid interval {s:?}: it must be more than 0")),
        d => Ok(d),
    }
}

/// The queue every role talks to.
#[derive(Args, Clone, Debug)]
pub struct QueueArgs {
    /// Queue to use, as a URL: sqlite:PATH (an embedded queue in a file, shared by processes on one machine).
    ///
    /// The file is created when missing. Several producers and consumers may share one file.
    #[arg(long, env = "QUEUE_URL", value_name = "URL")]
    pub queue: Option<String>,
}

impl QueueArgs {
    /// The queue URL, or an error that says how to give one.
    pub fn url(&self) -> Result<&str, MissingQueue> {
        self.queue.as_deref().ok_or(MissingQueue)
    }
}

/// No queue URL was given.
#[derive(Debug, thiserror::Error)]
#[error(
    "no queue given: pass --queue URL or set QUEUE_URL (for example --queue sqlite:./queue.db)"
)]
pub struct MissingQueue;

/// How often stats lines are written.
#[derive(Args, Clone, Debug)]
pub struct StatsArgs {
    /// Interval between JSON stats lines on stdout; a summary line is always written at exit.
    #[arg(long, env = "STATS_INTERVAL", default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    pub stats_interval: Duration,
}

/// Sends human logs to stderr, filtered by `RUST_LOG` (default `info`). Stdout is left to the stats lines.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Reads a legacy millisecond variable (`MSS_PRODUCER_SLEEP_MS`, `MSS_CONSUMER_SLEEP_MS`) from the
/// environment. Unset gives `Ok(None)`; a value that is not a whole number of milliseconds is an error that
/// names the variable.
pub fn legacy_millis(var: &str) -> Result<Option<u64>, String> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{var}={v:?} is not a whole number of milliseconds")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{var} is not valid UTF-8")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_errors_say_what_is_expected() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        let e = parse_duration("ten seconds").unwrap_err();
        assert!(e.contains("expected a number with a unit"), "{e}");
        assert!(parse_duration("10").is_err(), "a bare number has no unit");
        assert!(parse_interval("0s").unwrap_err().contains("more than 0"));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
    }
}

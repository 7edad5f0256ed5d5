//! Flag parsers and set-up that every binary uses, so that `--queue`, durations and logging read the same
//! everywhere.

use std::fmt::Display;
use std::process::{ExitCode, Termination};
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
    // The help is made from the registry, so that it lists exactly the backends this build has.
    #[arg(
        long,
        env = "QUEUE_URL",
        value_name = "URL",
        help = crate::queue::registry::help_short(),
        long_help = crate::queue::registry::help_long()
    )]
    pub queue: Option<String>,
}

impl QueueArgs {
    /// The queue URL, parsed once: --queue/QUEUE_URL, else the first backend whose 2016 variables are set
    /// (see [`crate::queue::Backend::url_from_legacy_env`]).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::queue::ErrorKind::Invalid): no queue given, or a URL that does not parse.
    pub fn url(&self) -> Result<crate::queue::QueueUrl, crate::queue::QueueError> {
        let url = match &self.queue {
            Some(u) => u.clone(),
            None => crate::queue::registry::url_from_legacy_env(&|k| std::env::var(k).ok())
                .ok_or_else(|| {
                    crate::queue::QueueError::new(crate::queue::ErrorKind::Invalid, MissingQueue)
                })?,
        };
        crate::queue::QueueUrl::parse(&url)
    }
}

/// No queue URL was given. The text lists the forms this build knows.
#[derive(Debug)]
pub struct MissingQueue;

impl Display for MissingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no queue given: pass --queue URL or set QUEUE_URL, one of {} (for example --queue {})",
            crate::queue::registry::forms(),
            crate::queue::registry::example()
        )
    }
}

impl std::error::Error for MissingQueue {}

/// How often stats lines are written.
#[derive(Args, Clone, Debug)]
pub struct StatsArgs {
    /// Interval between JSON stats lines on stdout; a summary line is always written at exit.
    #[arg(long, env = "STATS_INTERVAL", default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    pub stats_interval: Duration,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off by default); :PORT listens on every interface.
    ///
    /// The same counters as the stats lines, latency histograms in seconds and, for producers and consumers,
    /// the queue depth read every --stats-interval. A port already in use stops the run before it starts.
    #[arg(long, env = "METRICS_ADDR", value_parser = crate::metrics::parse_addr, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Reports a usage error (bad flags or configuration found after parsing) and gives exit code 2.
pub fn usage_error(e: impl Display) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

/// Runs a binary's work on a current-thread runtime and turns the outcome into its exit code: the value's own
/// (`()` is 0) on success, 1 with the error chain on stderr on failure.
///
/// Current-thread because each binary has one task that owns its state; blocking work (SQLite, `cpu:` work)
/// goes to tokio's blocking pool.
pub fn run_async<T: Termination, E: Display>(work: impl Future<Output = Result<T, E>>) -> ExitCode {
    no_library_backtraces();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(value) => value.report(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets `RUST_LIB_BACKTRACE=0` unless it is set, so that `RUST_BACKTRACE=1` (common in containers) keeps panic
/// backtraces but stops `std::backtrace::Backtrace::capture` in libraries: the Azure SDK makes an error, with
/// a captured backtrace, for every optional header a request lacks: with `RUST_BACKTRACE=1` that unwinding was
/// a third of the producer's CPU per Azure put. Must run before any other thread starts (it changes the
/// environment).
fn no_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called at the top of run_async, before the runtime or any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
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
    fn queue_help_and_the_missing_queue_error_list_every_backend_of_this_build() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Role {
            #[command(flatten)]
            queue: QueueArgs,
        }
        let mut cmd = Role::command();
        let short = cmd.render_help().to_string();
        let long = cmd.render_long_help().to_string();
        let missing = MissingQueue.to_string();
        let mut n = 0;
        for b in crate::queue::registry::backends() {
            n += 1;
            for text in [&short, &long, &missing] {
                assert!(text.contains(&format!("{}:", b.scheme())), "{text}");
            }
            assert!(
                long.contains(b.summary().split(' ').next().unwrap_or("")),
                "{long}"
            );
        }
        assert!(n > 0, "this build has a backend");
    }

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

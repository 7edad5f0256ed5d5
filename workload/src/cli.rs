//! Flag parsers and set-up that every binary uses, so that durations, stats intervals, exit codes and logging
//! read the same everywhere. (`--queue` is `queues::cli::QueueArgs`.)

use std::fmt::Display;
use std::process::{ExitCode, Termination};
use std::time::Duration;

use clap::Args;

mod origin;
use origin::ValueOrigin;

/// The longest duration any flag takes: beyond it, a value is almost certainly a typo (`300d` for `300s`).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);
/// The highest rate any flag takes, in messages per second: far beyond what one process sends, so a value
/// above it is almost certainly a typo.
pub const MAX_RATE: f64 = 10_000_000.0;

/// Parses a human duration such as `300ms`, `10s`, `2m` or `1h30m`: not negative, at most [`MAX_DURATION`].
///
/// The error states the expected syntax, because clap shows it to the user as is (after the flag's name).
/// Flags that take it set `allow_hyphen_values`, so that `--duration -5s` gets here and is told durations
/// are not negative, instead of clap's "unexpected argument '-5' found".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration_or_problem(s).map_err(|problem| match problem {
        DurationProblem::TooLong => {
            format!("duration {s:?} is more than a year (365d), the most any duration may be")
        }
        other => format!(
            "invalid duration {s:?} ({other}): expected a number with a unit, e.g. 300ms, 10s, 2m"
        ),
    })
}

/// What is wrong with a duration, in a few words, for messages that say what was expected themselves (a work
/// spec's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationProblem {
    #[error("durations are not negative")]
    Negative,
    // humantime's own words list every unit it takes "(and few variations)": say what was wrong instead.
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
    #[error("a number is missing")]
    NumberExpected,
    #[error("a character is not allowed")]
    InvalidCharacter,
    #[error("the number is too large")]
    Overflow,
    #[error("it is empty")]
    Empty,
    #[error("more than a year (365d), the most any duration may be")]
    TooLong,
}

/// Parses a duration (a number with a unit, at most [`MAX_DURATION`]), or says what is wrong with it.
pub fn duration_or_problem(s: &str) -> Result<Duration, DurationProblem> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(DurationProblem::Negative);
    }
    let d = humantime::parse_duration(t).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } => DurationProblem::UnknownUnit(unit),
        humantime::DurationError::NumberExpected(_) => DurationProblem::NumberExpected,
        humantime::DurationError::InvalidCharacter(_) => DurationProblem::InvalidCharacter,
        humantime::DurationError::NumberOverflow => DurationProblem::Overflow,
        humantime::DurationError::Empty => DurationProblem::Empty,
    })?;
    if d > MAX_DURATION {
        return Err(DurationProblem::TooLong);
    }
    Ok(d)
}

/// A rate's bounds: a finite number of messages per second, 0 or more, at most [`MAX_RATE`].
fn rate_in_bounds(rate: f64) -> Result<f64, String> {
    if !rate.is_finite() || rate < 0.0 {
        return Err(format!(
            "must be a number of messages per second, 0 or more (got {rate})"
        ));
    }
    if rate > MAX_RATE {
        return Err(format!(
            "{rate} is above {MAX_RATE} messages per second, the most a rate may be"
        ));
    }
    Ok(rate)
}

/// Parses a rate flag (`--rate`): messages per second, a number from 0 to [`MAX_RATE`]. clap names the flag
/// in front of the message; its own parser said only "invalid float literal".
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let rate: f64 = t.parse().map_err(|_| {
        format!("{t:?} is not a number of messages per second (e.g. 100 or 2.5; 0 sends as fast as the queue takes them)")
    })?;
    if !rate.is_finite() {
        return Err(format!(
            "{t:?} is not a finite number of messages per second"
        ));
    }
    rate_in_bounds(rate)
}

/// Parses a flag that takes a number with a fraction (CPUs, MiB): any finite number. Its bounds are the
/// caller's to check, with the flag's own rule (Marathon's "more than 0" CPUs, "at least 8" MiB). clap names
/// the flag in front of the message.
pub fn parse_amount(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{t:?} is not a finite number")),
        Err(_) => Err(format!("{t:?} is not a number (e.g. 0.5 or 128)")),
    }
}

/// The highest count a flag of messages held, batched or in flight at once takes (`--max-in-flight`,
/// `--batch`, `--concurrency`…): far beyond what one process holds, so a value above it is almost certainly a
/// typo.
pub const MAX_COUNT: u64 = 1_000_000;
/// The most threads a flag takes: more than any machine this runs on has CPUs.
pub const MAX_THREADS: u64 = 4096;
/// The largest message body, in bytes, the producer agrees to build (`--size`); backends with lower limits
/// check their own.
pub const MAX_SIZE: u64 = 64 * 1024 * 1024;

/// The value parser of a whole-number flag from `min` to `max` (`u64::MAX`: no upper bound). The error states
/// the range, because clap shows it after the flag's name: `--batch: must be from 1 to 1000000 (got 0)`.
/// Flags that take it set `allow_negative_numbers`, so that `--batch -1` gets here and is told the range,
/// instead of clap's "unexpected argument '-1' found".
pub fn whole<T>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |s: &str| {
        let range = if max == u64::MAX {
            format!("{min} or more")
        } else {
            format!("from {min} to {max}")
        };
        let t = s.trim();
        let n = match t.parse::<u64>() {
            Ok(n) => n,
            Err(_) if t.parse::<i128>().is_ok() => {
                return Err(format!("must be {range} (got {t})"));
            }
            Err(_) => return Err(format!("{s:?} is not a whole number (expected {range})")),
        };
        if !(min..=max).contains(&n) {
            return Err(format!("must be {range} (got {n})"));
        }
        T::try_from(n).map_err(|_| format!("must be {range} (got {n})"))
    }
}

/// [`whole`] for a count that is never 0, as its type says.
pub fn whole_nonzero(
    max: u64,
) -> impl Fn(&str) -> Result<std::num::NonZeroUsize, String> + Clone + Send + Sync + 'static {
    let parse = whole::<usize>(1, max);
    move |s: &str| {
        let n = parse(s)?;
        std::num::NonZeroUsize::new(n).ok_or_else(|| format!("must be 1 or more (got {n})"))
    }
}

/// Parses a duration that must be more than zero (an interval: zero would mean a busy loop).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("invalid interval {s:?}: it must be more than 0")),
        d => Ok(d),
    }
}

/// How often stats lines are written.
#[derive(Args, Clone, Debug)]
pub struct StatsArgs {
    /// Interval between JSON stats lines on stdout; a summary line is always written at exit.
    #[arg(long, env = "STATS_INTERVAL", default_value = "1s", value_parser = parse_interval, allow_hyphen_values = true, value_name = "DURATION")]
    pub stats_interval: Duration,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off by default); :PORT listens on every interface.
    ///
    /// The same counters as the stats lines, latency histograms in seconds and, for producers and consumers,
    /// the queue depth read every --stats-interval. A port already in use stops the run before it starts.
    #[arg(long, env = "METRICS_ADDR", value_parser = crate::metrics::parse_addr, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Whether a producer or consumer publishes its records to the run's telemetry channel (see
/// [`crate::telemetry`]).
#[derive(Args, Clone, Debug)]
pub struct TelemetryArgs {
    /// Publish this process's records (consumers: ledger entries before each ack, and heartbeats; producers:
    /// their stats lines) to the telemetry channel beside the queue, for `audit --queue` and
    /// `scorecard watch --consumers telemetry` where no disk is shared.
    ///
    /// Off for local runs, where --ledger files do the job; the compose file, the Kubernetes manifests and
    /// marathon-install turn it on. The channel is two sibling queues on the same backend (QUEUE-telemetry,
    /// QUEUE-heartbeat), never the queue whose depth the engine reads.
    #[arg(long, env = "MW_TELEMETRY", default_value = "off", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub telemetry: bool,
}

/// Parses `on`/`off` (also `true`/`false`, `1`/`0`, `yes`/`no`).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" | "" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

/// Parses the command line into `P`; bad usage (an unknown flag, a bad value, a missing argument) is one line
/// on stderr, `error: …` as every other error, and exit status 2. `--help` and `--version` are clap's own.
pub fn parse_args<P: clap::Parser>() -> P {
    P::try_parse().unwrap_or_else(|e| exit_on_clap_error::<P>(e))
}

/// Prints a clap error of the command `P` as one line and exits 2 (help and version: clap's own output and
/// status). `P` tells which environment variable a bad value came from, when it did not come from the command
/// line (see [`ValueOrigin`]).
pub fn exit_on_clap_error<P: clap::CommandFactory>(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let origin = ValueOrigin::of(&P::command(), &e, &argv, &|var| std::env::var_os(var));
    let line = clap_error_line(&e, &origin);
    // One hint: a message that already says where to look (the README for --autoscale's keys) gets no second.
    let hint = if line.contains("(see ") {
        ""
    } else {
        " (see --help)"
    };
    // As every other error ([`exit`]): a value parser may quote a URL that carries a password.
    note(format_args!(
        "error: {}",
        crate::redact::url(&format!("{line}{hint}"))
    ));
    std::process::exit(2)
}

/// A clap error as one line without `error: `: `--rate: invalid value "abc": invalid float literal` for a
/// bad value, else clap's own message with its list and tips on the same line and its usage left out
/// (`--help` has it). A value read from the environment names its variable too (`--rate (from
/// PRODUCER_RATE): …`), and the value of a flag that hides its variable's value is never shown.
pub(crate) fn clap_error_line(e: &clap::Error, origin: &ValueOrigin) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let flag = origin::flag_of(e).map(|flag| match &origin.var {
        Some(var) => format!("{flag} (from {var})"),
        None => flag,
    });
    let value = origin::context(e, ContextKind::InvalidValue).unwrap_or_default();
    let hide = |text: String| {
        if origin.secret && !value.is_empty() {
            // The parser may have trimmed the value before quoting it.
            let trimmed = value.trim();
            let text = text.replace(&value, crate::redact::MASK);
            if trimmed.is_empty() {
                text
            } else {
                text.replace(trimmed, crate::redact::MASK)
            }
        } else {
            text
        }
    };
    let shown = if origin.secret {
        crate::redact::MASK.to_string()
    } else {
        format!("{value:?}")
    };
    match (e.kind(), flag) {
        (ErrorKind::ValueValidation, Some(flag)) if !value.is_empty() => {
            let cause = std::error::Error::source(e).map_or_else(String::new, one_line);
            if cause.contains(&value) && !origin.secret {
                format!("{flag}: {cause}")
            } else {
                format!("{flag}: invalid value {shown}: {}", hide(cause))
            }
        }
        (ErrorKind::InvalidValue, Some(flag)) if !value.is_empty() => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => format!("; expected one of: {}", v.join(", ")),
                _ => String::new(),
            };
            format!("{flag}: invalid value {shown}{valid}")
        }
        _ => hide(flatten_rendered(&e.render().to_string())),
    }
}

/// Clap's rendered message on one line: indented list items follow their heading, tips follow a `;`, the
/// usage and the "For more information" line are left out.
fn flatten_rendered(rendered: &str) -> String {
    let mut line = String::new();
    for l in rendered.lines().map(str::trim) {
        if l.is_empty() || l.starts_with("Usage:") || l.starts_with("For more information") {
            continue;
        }
        let l = l.strip_prefix("error: ").unwrap_or(l);
        if line.is_empty() {
            line.push_str(l);
        } else if l.starts_with("tip:") || line.ends_with(':') {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
            line.push_str(l);
        } else {
            line.push_str(", ");
            line.push_str(l);
        }
    }
    line
}

/// Bad usage found after clap parsed the flags: a value that does not make sense, a queue URL that cannot be
/// parsed, a file named on the command line that is missing or unreadable or is not what the flag wants. Exit
/// status 2; see [`exit`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> UsageError {
        UsageError(msg.into())
    }
}

/// Turns any error into a [`UsageError`], keeping its whole message (`{:#}` gives anyhow's chain).
pub fn usage(e: impl Display) -> UsageError {
    UsageError(format!("{e:#}"))
}

/// The one rule that turns a binary's outcome into its exit status, for every binary: the value's own on
/// success (`()` is 0), 2 when a [`UsageError`] is anywhere in the error's chain, 1 for any other failure
/// (something went wrong at run time). The error is printed as one line on stderr, each cause once, with
/// secrets masked ([`crate::redact::url`]).
///
/// Clap's own parse errors (unknown flag, missing argument) exit 2 before this runs.
pub fn exit<T, E>(outcome: Result<T, E>) -> ExitCode
where
    T: Termination,
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    match outcome {
        Ok(value) => value.report(),
        Err(e) => {
            let e = e.as_ref();
            note(format_args!("error: {}", crate::redact::url(&one_line(e))));
            let usage = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.is::<UsageError>());
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes as `outer: cause: root`, leaving out a cause whose text is already said: many
/// errors quote their source in their own message, and printing it again gave
/// `No such file or directory (os error 2): No such file or directory (os error 2)`.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text.replace('\n', " ")
}

/// Runs a binary's work on a current-thread runtime and turns the outcome into its exit status with [`exit`].
///
/// Current-thread because each binary has one task that owns its state; blocking work (SQLite, `cpu:` work)
/// goes to tokio's blocking pool.
pub fn run_async<T, E>(work: impl Future<Output = Result<T, E>>) -> ExitCode
where
    T: Termination,
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    no_library_backtraces();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => exit(runtime.block_on(work)),
        Err(e) => {
            note(format_args!("error: cannot start the async runtime: {e}"));
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

/// The log filter when `RUST_LOG` is not set: `info`, with the queue clients' noisy targets at `warn`.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Sends human logs to stderr, filtered by `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]). Stdout is left to the
/// stats lines. `quiet` names log targets held at `warn` (the queue clients': `queues::registry::
/// quiet_log_targets()`), also when `RUST_LOG` is set, unless it names one of them itself: some client
/// libraries log request URLs, which can hold secrets, at `info`.
///
/// A log line that cannot be written (stderr is a pipe whose reader went away) is dropped: logs are a report,
/// and neither the work nor a graceful stop may depend on them. tracing-subscriber's own fallback for a
/// failed write is an `eprintln!`, which panics on the same broken pipe, so it is turned off.
pub fn init_logging(quiet: &[&str]) {
    let mut spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_string());
    let quiet: String = quiet.iter().map(|t| format!(",{t}=warn")).collect();
    if !quiet.is_empty() && !spec_names_any(&spec, &quiet) {
        spec.push_str(&quiet);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{DEFAULT_LOG_FILTER}{quiet}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Whether a `RUST_LOG` spec names any target of the `,target=warn` list `quiet` (then the user chose).
fn spec_names_any(spec: &str, quiet: &str) -> bool {
    quiet
        .split(',')
        .filter_map(|d| d.split('=').next())
        .filter(|t| !t.is_empty())
        .any(|t| spec.contains(t))
}

/// Stderr for logs: a failed write is reported as done, so that no writer up the stack retries, reports or
/// panics.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Writes `text` and a newline to stderr, ignoring a failure: for messages to a person, which must never turn
/// a closed stderr into a panic (as `eprintln!` does).
pub fn note(text: impl Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Writes `text` and a newline to stdout and flushes, ignoring a failure (the reader went away): for results
/// that are a report, which must never turn a closed stdout into a panic (as `println!` does).
pub fn out(text: impl Display) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}").and_then(|_| o.flush());
}

/// `eprintln!` that never panics: a line for a person on stderr, dropped when stderr is closed.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::cli::note(format_args!($($arg)*)) };
}

/// `println!` that never panics: a result line on stdout, flushed, dropped when stdout is closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::out(format_args!($($arg)*)) };
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
mod tests;

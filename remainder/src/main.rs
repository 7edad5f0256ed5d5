//! `remainder`: fills the CPU time nothing else wants with counted work units, at the lowest scheduling priority.

mod filler;
mod priority;
mod run;

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use workload::cli::{StatsArgs, parse_duration};

use crate::filler::Mode;

/// Fill spare CPU with low-priority work units and report how many ran.
///
/// The remainder is the third role of the Microscaling demo: the task that takes whatever capacity the
/// producers and consumers leave, and gives it back the moment they need it. Its workers run at SCHED_IDLE
/// (nice 19 where that is refused), so they only get CPU time no other thread wants; the units they complete
/// measure that spare capacity.
///
/// Stdout carries JSON stats lines only ("role":"remainder"). An interval line every --stats-interval has
/// units (total so far), units_per_s (over the interval), threads and mode; the summary at exit has units,
/// units_per_s (over the whole run), threads, mode, priority (sched_idle, nice19 or normal), unit_us (the
/// calibrated CPU time of one unit; null in sleep mode) and first_unit_at_us (Unix µs; null if none ran).
/// Logs go to stderr (RUST_LOG, default info). SIGTERM or SIGINT stops it within about 100 ms, exit code 0.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Number of worker threads [default: the CPUs this process may use].
    ///
    /// Defaults to the number of CPUs available to this process, honouring its CPU affinity and cgroup CPU
    /// quota (as std::thread::available_parallelism reports them), so that at full tilt it can fill every CPU
    /// it is allowed. Must be at least 1.
    #[arg(long, env = "REMAINDER_THREADS", value_parser = parse_threads, allow_negative_numbers = true, value_name = "N")]
    threads: Option<NonZeroUsize>,

    /// What each worker does: run CPU work units, or hold its slot idle.
    ///
    /// cpu (the default) runs work units calibrated at start to take about 1 ms of CPU each. sleep reproduces
    /// the original 2016 remainder: it holds a place on the cluster and does nothing, so it uses no CPU and
    /// reports 0 units.
    #[arg(long, value_enum, default_value_t = Mode::Cpu, value_name = "MODE")]
    mode: Mode,

    /// Stop by itself after this long (e.g. 30s, 5m) [default: run until SIGTERM/SIGINT].
    ///
    /// Counted from when the workers start, after calibration. Stopping this way exits 0 and writes the summary
    /// line, as a signal does.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    duration: Option<Duration>,

    #[command(flatten)]
    stats: StatsArgs,
}

fn main() -> ExitCode {
    let args = workload::cli::parse_args::<Args>();
    workload::cli::init_logging(&[]);
    let config = run::Config {
        threads: args.threads.unwrap_or_else(default_threads),
        mode: args.mode,
        stats_interval: args.stats.stats_interval,
        duration: args.duration,
        metrics_addr: args.stats.metrics_addr,
    };
    workload::cli::run_async(run::run(config))
}

/// Parses `--threads`/`REMAINDER_THREADS`; the error says what is expected, because clap shows it as is.
fn parse_threads(s: &str) -> Result<NonZeroUsize, String> {
    workload::cli::whole_nonzero(workload::cli::MAX_THREADS)(s)
}

/// The CPUs this process may use; 1 (with a warning) when the OS cannot say.
fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or_else(|e| {
        tracing::warn!(
            "cannot tell how many CPUs are available ({e}); using 1 thread (set --threads)"
        );
        NonZeroUsize::MIN
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn thread_counts_must_be_positive_whole_numbers() {
        assert_eq!(parse_threads(" 3 ").map(NonZeroUsize::get), Ok(3));
        for bad in ["0", "-1", "two", ""] {
            let e = parse_threads(bad).expect_err(bad);
            assert!(e.contains("from 1 to 4096"), "{e}");
        }
    }
}

//! Flags, environment and the validated configuration of a consumer run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use queues::cli::QueueArgs;
use workload::cli::{
    MAX_COUNT, StatsArgs, TelemetryArgs, legacy_millis, parse_duration, parse_interval, whole,
};
use workload::work::{Work, WorkSampler, WorkSpec};

/// Takes messages off a queue, does simulated work on each, acks it after the work, and reports, as JSON
/// lines on stdout, what it received and the end-to-end latency.
///
/// On SIGTERM or SIGINT it stops taking messages, finishes what it holds within --drain-timeout, gives back
/// (releases) what it could not finish, prints its summary and exits 0. A second signal releases at once.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub queue: QueueArgs,

    /// Most messages held at once (received and not yet acked); each is worked on concurrently.
    #[arg(
        long,
        env = "CONSUMER_MAX_IN_FLIGHT",
        default_value_t = 1,
        value_name = "N",
        value_parser = whole::<usize>(1, MAX_COUNT),
        allow_negative_numbers = true
    )]
    pub max_in_flight: usize,

    /// Most messages taken in one receive call.
    #[arg(long, env = "CONSUMER_BATCH", default_value_t = 100, value_name = "N", value_parser = whole::<usize>(1, MAX_COUNT), allow_negative_numbers = true)]
    pub batch: usize,

    /// Work per message: none, sleep:DURATION (wait, no CPU), cpu:DURATION (CPU time on one core), or a
    /// distribution drawn per message: sleep:exp(200ms), cpu:lognormal(5ms,1.0), sleep:uniform(100ms..500ms),
    /// sleep:normal(100ms,20ms), each with an optional ,max=CAP (default 10 × the mean).
    ///
    /// A work spec carried in the message (producer --work) takes precedence. Default: sleep:300ms, or
    /// sleep:<MSS_CONSUMER_SLEEP_MS>ms when that variable of the original demo is set.
    #[arg(long, env = "CONSUMER_WORK", value_name = "SPEC")]
    pub work: Option<WorkSpec>,

    /// Seed for drawing --work from a distribution (default: random), so a run can be repeated.
    #[arg(long, env = "CONSUMER_SEED", value_name = "N", value_parser = whole::<u64>(0, u64::MAX), allow_negative_numbers = true)]
    pub seed: Option<u64>,

    /// How long a received message stays invisible to other consumers; kept alive during longer work.
    #[arg(long, env = "CONSUMER_LEASE", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub lease: Duration,

    /// On SIGTERM, how long to keep working on held messages before releasing the rest.
    ///
    /// Keep it under the platform's grace period (10 s in Docker and Marathon) so the summary is written.
    #[arg(long, env = "CONSUMER_DRAIN_TIMEOUT", default_value = "8s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Append (run, producer, seq) of every acked message to FILE, for the audit.
    #[arg(long, env = "CONSUMER_LEDGER", value_name = "FILE")]
    pub ledger: Option<PathBuf>,

    /// Stop (gracefully, as on SIGTERM) after acking this many messages (default: no limit).
    #[arg(long, env = "CONSUMER_COUNT", value_name = "N", value_parser = whole::<u64>(1, u64::MAX), allow_negative_numbers = true)]
    pub count: Option<u64>,

    /// With --count: stop with an error (exit 1) when the queue has answered nothing for this long, retrying
    /// with back-off meanwhile.
    ///
    /// A queue that cannot be reached would otherwise keep a run that should end running for ever. A run
    /// without --count keeps retrying whatever this says: it waits for its queue to come (back), as a
    /// scaled consumer must across a broker restart.
    #[arg(long, env = "CONSUMER_GIVE_UP_AFTER", default_value = "60s", value_parser = parse_interval, allow_hyphen_values = true, value_name = "DURATION")]
    pub give_up_after: Duration,

    // --- Failure model (see crate::consume's docs for what happens to a failed or poison message) ---
    /// Probability (0 to 1) that a message fails after its work: it is given back to the queue, not acked.
    ///
    /// A failed message returns after --fail-delay and is delivered again. Default 0: nothing fails.
    #[arg(long, env = "CONSUMER_FAIL_RATE", default_value_t = 0.0, value_parser = parse_probability, value_name = "P", allow_negative_numbers = true)]
    pub fail_rate: f64,

    /// How long a failed message stays invisible before it is delivered again.
    ///
    /// Azure rounds it up to whole seconds; nsqd refuses delays over its --max-req-timeout (default 1h).
    #[arg(long, env = "CONSUMER_FAIL_DELAY", default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub fail_delay: Duration,

    /// Most deliveries a message gets; after that it is poison: recorded in the ledger as such, acked, logged.
    ///
    /// A message fails for the last time on its Nth delivery, or arrives with a delivery count above N (earlier
    /// deliveries died with their consumer or lost their lease): either way it is set aside instead of being
    /// given back again, so no message loops for ever. 1 to 65535 (NSQ counts attempts in 16 bits); there is
    /// no "unlimited", because a message that kills every consumer that takes it would loop for ever.
    #[arg(long, env = "CONSUMER_MAX_DELIVERIES", default_value_t = 5, value_parser = whole::<u32>(1, 65_535), allow_negative_numbers = true, value_name = "N")]
    pub max_deliveries: u32,

    #[command(flatten)]
    pub stats: StatsArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// A validated consumer run.
#[derive(Debug)]
pub struct Config {
    /// The queue, parsed once here; opened by the run.
    pub queue: queues::QueueUrl,
    pub max_in_flight: usize,
    pub batch: usize,
    /// Gives each message that carries no work its own, from --work.
    pub work: WorkSampler,
    pub lease: Duration,
    pub drain_timeout: Duration,
    pub ledger: Option<PathBuf>,
    /// Publish ledger records (before each ack) and heartbeats to the telemetry channel.
    pub telemetry: bool,
    pub count: Option<u64>,
    /// See [`Args::give_up_after`]; applies only with `count`.
    pub give_up_after: Duration,
    pub stats_interval: Duration,
    pub failure: FailureModel,
    /// Where to serve `/metrics`, when asked.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// What happens to a message after its work: it may fail (and be given back), and after too many deliveries
/// it is set aside as poison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureModel {
    /// Probability in 0..=1 that a worked message fails.
    pub rate: f64,
    /// How long a failed message stays invisible.
    pub delay: Duration,
    /// Deliveries a message gets before it is poison (at least 1).
    pub max_deliveries: u32,
}

impl FailureModel {
    /// Whether this delivery's work fails (a fresh draw each call).
    pub fn fails(&self) -> bool {
        // random() is in [0, 1): a rate of 0 never fails and a rate of 1 always does.
        self.rate > 0.0 && rand::random::<f64>() < self.rate
    }
}

/// Parses a probability: a finite number from 0 to 1.
fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.trim().parse().map_err(|_| {
        format!("{s:?} is not a number (expected a probability from 0 to 1, e.g. 0.01)")
    })?;
    if !(0.0..=1.0).contains(&p) {
        // Also refuses NaN, which no range contains.
        return Err(format!(
            "{s} is not a probability (expected a number from 0 to 1, e.g. 0.01)"
        ));
    }
    Ok(p)
}

impl Config {
    /// Checks every input before anything is opened.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let queue = args.queue.url()?;
        let work = match args.work {
            Some(w) => w,
            None => match legacy_millis("MSS_CONSUMER_SLEEP_MS").map_err(anyhow::Error::msg)? {
                Some(ms) => Work::Sleep(Duration::from_millis(ms)).into(),
                None => Work::Sleep(Duration::from_millis(300)).into(),
            },
        };
        let work = WorkSampler::new(work, args.seed.unwrap_or_else(rand::random));
        if args.lease < Duration::from_millis(100) {
            bail!(
                "--lease must be at least 100ms (got {}ms)",
                args.lease.as_millis()
            );
        }
        if args.stats.stats_interval.is_zero() {
            bail!("--stats-interval must be more than 0");
        }
        Ok(Config {
            queue,
            max_in_flight: args.max_in_flight,
            batch: args.batch,
            work,
            lease: args.lease,
            drain_timeout: args.drain_timeout,
            ledger: args.ledger,
            telemetry: args.telemetry.telemetry,
            count: args.count,
            give_up_after: args.give_up_after,
            stats_interval: args.stats.stats_interval,
            metrics_addr: args.stats.metrics_addr,
            failure: FailureModel {
                rate: args.fail_rate,
                delay: args.fail_delay,
                max_deliveries: args.max_deliveries,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_finite_numbers_from_zero_to_one() {
        for ok in ["0", "1", "0.2", " 0.01", "1e-3"] {
            assert!(parse_probability(ok).is_ok(), "{ok}");
        }
        for bad in ["-0.1", "1.5", "nan", "NaN", "inf", "-inf", "", "half"] {
            assert!(parse_probability(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_zero_and_one_are_certain() {
        let model = |rate| FailureModel {
            rate,
            delay: Duration::ZERO,
            max_deliveries: 1,
        };
        assert!((0..10_000).all(|_| !model(0.0).fails()));
        assert!((0..10_000).all(|_| model(1.0).fails()));
        let failed = (0..100_000).filter(|_| model(0.2).fails()).count();
        // Binomial(100000, 0.2): standard deviation ~126; 6 sigma either side.
        assert!((19_250..=20_750).contains(&failed), "{failed}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}

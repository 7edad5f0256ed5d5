//! Flags, environment and the validated configuration of a consumer run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use common::cli::{QueueArgs, StatsArgs, legacy_millis, parse_duration};
use common::work::Work;

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
        value_name = "N"
    )]
    pub max_in_flight: usize,

    /// Most messages taken in one receive call.
    #[arg(long, env = "CONSUMER_BATCH", default_value_t = 100, value_name = "N")]
    pub batch: usize,

    /// Work per message: none, sleep:DURATION (wait, no CPU) or cpu:DURATION (CPU time on one core).
    ///
    /// A work spec carried in the message (producer --work) takes precedence. Default: sleep:300ms, or
    /// sleep:<MSS_CONSUMER_SLEEP_MS>ms when that variable of the original demo is set.
    #[arg(long, env = "CONSUMER_WORK", value_name = "SPEC")]
    pub work: Option<Work>,

    /// How long a received message stays invisible to other consumers; kept alive during longer work.
    #[arg(long, env = "CONSUMER_LEASE", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub lease: Duration,

    /// On SIGTERM, how long to keep working on held messages before releasing the rest.
    ///
    /// Keep it under the platform's grace period (10 s in Docker and Marathon) so the summary is written.
    #[arg(long, env = "CONSUMER_DRAIN_TIMEOUT", default_value = "8s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Append (run, producer, seq) of every acked message to FILE, for the audit.
    #[arg(long, env = "CONSUMER_LEDGER", value_name = "FILE")]
    pub ledger: Option<PathBuf>,

    /// Stop (gracefully, as on SIGTERM) after acking this many messages (default: no limit).
    #[arg(long, env = "CONSUMER_COUNT", value_name = "N")]
    pub count: Option<u64>,

    #[command(flatten)]
    pub stats: StatsArgs,
}

/// A validated consumer run.
#[derive(Debug)]
pub struct Config {
    pub queue_url: String,
    pub max_in_flight: usize,
    pub batch: usize,
    pub work: Work,
    pub lease: Duration,
    pub drain_timeout: Duration,
    pub ledger: Option<PathBuf>,
    pub count: Option<u64>,
    pub stats_interval: Duration,
}

impl Config {
    /// Checks every input before anything is opened.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let queue_url = args.queue.url()?.to_string();
        common::queue::QueueUrl::parse(&queue_url)?;
        let work = match args.work {
            Some(w) => w,
            None => match legacy_millis("MSS_CONSUMER_SLEEP_MS").map_err(anyhow::Error::msg)? {
                Some(ms) => Work::Sleep(Duration::from_millis(ms)),
                None => Work::Sleep(Duration::from_millis(300)),
            },
        };
        if args.max_in_flight == 0 {
            bail!("--max-in-flight must be at least 1");
        }
        if args.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if args.lease < Duration::from_millis(100) {
            bail!("--lease must be at least 100ms (got {:?})", args.lease);
        }
        if args.stats.stats_interval.is_zero() {
            bail!("--stats-interval must be more than 0");
        }
        Ok(Config {
            queue_url,
            max_in_flight: args.max_in_flight,
            batch: args.batch,
            work,
            lease: args.lease,
            drain_timeout: args.drain_timeout,
            ledger: args.ledger,
            count: args.count,
            stats_interval: args.stats.stats_interval,
        })
    }
}

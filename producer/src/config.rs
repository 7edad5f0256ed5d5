//! Flags, environment and the validated configuration of a producer run.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use common::cli::{QueueArgs, StatsArgs, legacy_millis, parse_duration};
use common::work::Work;

/// Puts messages on a queue at a steady rate and reports, as JSON lines on stdout, how many the queue
/// confirmed and how late each was against its schedule.
///
/// Each message is an envelope (run id, producer id, sequence number, intended and actual send time, optional
/// work) that consumers decode to measure end-to-end latency and that the audit uses to count loss.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub queue: QueueArgs,

    /// Messages per second; 0 sends as fast as the queue accepts.
    ///
    /// Send times are scheduled from the start (message i at start + i/rate), so the rate does not drift.
    /// Default: 10, or 1000/MSS_PRODUCER_SLEEP_MS when that variable of the original demo is set.
    #[arg(long, env = "PRODUCER_RATE", value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,

    /// Stop after this many messages have been confirmed (default: no limit).
    #[arg(long, env = "PRODUCER_COUNT", value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this long: the messages scheduled inside it are sent (default: no limit).
    #[arg(long, env = "PRODUCER_DURATION", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Size of each message body in bytes, padded with '.'; bodies never shrink below the envelope (~70 B).
    #[arg(long, env = "PRODUCER_SIZE", default_value_t = 0, value_name = "BYTES")]
    pub size: usize,

    /// Most messages sent in one publish; a producer behind schedule catches up in batches this big.
    #[arg(long, env = "PRODUCER_BATCH", default_value_t = 100, value_name = "N")]
    pub batch: usize,

    /// Most publishes in flight at once. One suits SQLite; remote queues that take one message per request
    /// (Azure) need more to reach a high rate.
    #[arg(
        long,
        env = "PRODUCER_CONCURRENCY",
        default_value_t = 1,
        value_name = "N"
    )]
    pub concurrency: usize,

    /// Work for the consumer, stamped into every message (none, sleep:DURATION or cpu:DURATION).
    ///
    /// When unset, each consumer applies its own --work.
    #[arg(long, env = "PRODUCER_WORK", value_name = "SPEC")]
    pub work: Option<Work>,

    /// Run id shared by the producers of one run, 1-16 hex digits (default: random).
    #[arg(long, env = "RUN_ID", value_name = "HEX")]
    pub run_id: Option<String>,

    /// This producer's id, unique within the run (default: random).
    #[arg(long, env = "PRODUCER_ID", value_name = "N")]
    pub producer_id: Option<u32>,

    #[command(flatten)]
    pub stats: StatsArgs,
}

/// A validated producer run.
#[derive(Debug)]
pub struct Config {
    pub queue_url: String,
    pub rate: f64,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub size: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub work: Option<Work>,
    pub run_id: u64,
    pub producer_id: u32,
    pub stats_interval: Duration,
}

/// The largest body we agree to build; backends with lower limits check their own.
const MAX_SIZE: usize = 64 * 1024 * 1024;

impl Config {
    /// Checks every input before anything is opened or sent.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let queue_url = args.queue.url()?.to_string();
        common::queue::QueueUrl::parse(&queue_url)?;
        let rate = match args.rate {
            Some(rate) => rate,
            None => match legacy_millis("MSS_PRODUCER_SLEEP_MS").map_err(anyhow::Error::msg)? {
                Some(0) => 0.0,
                Some(ms) => 1000.0 / ms as f64,
                None => 10.0,
            },
        };
        if !rate.is_finite() || rate < 0.0 {
            bail!("--rate must be a number of messages per second, 0 or more (got {rate})");
        }
        if args.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if args.size > MAX_SIZE {
            bail!("--size {} is over the {MAX_SIZE}-byte limit", args.size);
        }
        if args.stats.stats_interval.is_zero() {
            bail!("--stats-interval must be more than 0");
        }
        let run_id = match args.run_id {
            Some(hex) => parse_hex_id(&hex).with_context(|| format!("invalid --run-id {hex:?}"))?,
            None => rand::random(),
        };
        Ok(Config {
            queue_url,
            rate,
            count: args.count,
            duration: args.duration,
            size: args.size,
            batch: args.batch,
            concurrency: args.concurrency,
            work: args.work,
            run_id,
            producer_id: args.producer_id.unwrap_or_else(rand::random),
            stats_interval: args.stats.stats_interval,
        })
    }
}

fn parse_hex_id(s: &str) -> anyhow::Result<u64> {
    if s.is_empty() || s.len() > 16 {
        bail!("expected 1 to 16 hex digits");
    }
    u64::from_str_radix(s, 16).map_err(|_| anyhow::anyhow!("expected 1 to 16 hex digits"))
}

//! Flags, environment and the validated configuration of a producer run.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use queues::cli::QueueArgs;
use workload::cli::{
    MAX_COUNT, MAX_SIZE, StatsArgs, TelemetryArgs, legacy_millis, parse_duration, parse_interval,
    parse_rate, whole,
};
use workload::shape::Shape;
use workload::work::WorkSpec;

use crate::schedule::Share;

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

    /// Messages per second, the same as --shape const:RATE; 0 sends as fast as the queue accepts.
    ///
    /// Send times are scheduled from the start (message i at start + (i+1)/rate), so the rate does not drift.
    /// Default: 10, or 1000/MSS_PRODUCER_SLEEP_MS when that variable of the original demo is set.
    #[arg(
        long,
        env = "PRODUCER_RATE",
        value_name = "MSGS_PER_S",
        conflicts_with = "shape",
        value_parser = parse_rate,
        // So that `--rate -5` reaches the check ("0 or more") instead of clap's "unexpected argument".
        allow_negative_numbers = true
    )]
    pub rate: Option<f64>,

    /// Load shape: msgs/s over time, for all --producers of the run together, instead of --rate.
    ///
    /// TERM[+TERM…], each const:RATE, step:RATE,RATE@OFFSET…, ramp:FROM..TO/OVER[@START],
    /// sine:MEAN+-AMP/PERIOD, burst:COUNT@OFFSET, poisson:RATE or replay:FILE; e.g.
    /// step:100,500@30s,100@60s or const:100+burst:5000@10s. --duration defaults to the shape's end (its last
    /// step, ramp end, burst or replay record) when it has one.
    #[arg(long, env = "PRODUCER_SHAPE", value_name = "SPEC")]
    pub shape: Option<String>,

    /// How many producer processes share the --shape (or --rate): together they send what it says.
    #[arg(long, env = "PRODUCERS", default_value_t = 1, value_name = "N", value_parser = whole::<u64>(1, MAX_COUNT), allow_negative_numbers = true)]
    pub producers: u64,

    /// Which of the --producers this one is, from 0 to N-1: it sends the shape's messages k with
    /// k mod N = I (and a Poisson process of rate/N for poisson: terms).
    #[arg(long, env = "PRODUCER_INDEX", default_value_t = 0, value_name = "I", value_parser = whole::<u64>(0, MAX_COUNT - 1), allow_negative_numbers = true)]
    pub producer_index: u64,

    /// Seed for the random parts of the load (poisson: arrivals, drawn --work); default: from the run id,
    /// so producers given one --run-id repeat their run. Each --producer-index draws its own stream.
    #[arg(long, env = "PRODUCER_SEED", value_name = "N", value_parser = whole::<u64>(0, u64::MAX), allow_negative_numbers = true)]
    pub seed: Option<u64>,

    /// Stop after this many messages have been confirmed (default: no limit).
    #[arg(long, env = "PRODUCER_COUNT", value_name = "N", value_parser = whole::<u64>(1, u64::MAX), allow_negative_numbers = true)]
    pub count: Option<u64>,

    /// Stop after this long: the messages scheduled inside it are sent (default: the --shape's end when it
    /// has one, else no limit).
    #[arg(long, env = "PRODUCER_DURATION", value_parser = parse_run_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Size of each message body in bytes, padded with '.'; bodies never shrink below the envelope (~70 B).
    #[arg(long, env = "PRODUCER_SIZE", default_value_t = 0, value_name = "BYTES", value_parser = whole::<usize>(0, MAX_SIZE), allow_negative_numbers = true)]
    pub size: usize,

    /// Most messages sent in one publish; a producer behind schedule catches up in batches this big.
    #[arg(long, env = "PRODUCER_BATCH", default_value_t = 100, value_name = "N", value_parser = whole::<usize>(1, MAX_COUNT), allow_negative_numbers = true)]
    pub batch: usize,

    /// Most publishes in flight at once. One suits SQLite; remote queues that take one message per request
    /// (Azure) need more to reach a high rate.
    #[arg(
        long,
        env = "PRODUCER_CONCURRENCY",
        default_value_t = 1,
        value_name = "N",
        value_parser = whole::<usize>(1, MAX_COUNT),
        allow_negative_numbers = true
    )]
    pub concurrency: usize,

    /// Work for the consumer, stamped into every message: none, sleep:DURATION, cpu:DURATION, or a
    /// distribution drawn per message, e.g. sleep:exp(200ms), cpu:lognormal(5ms,1.0),
    /// sleep:uniform(100ms..500ms), sleep:normal(100ms,20ms), each with an optional ,max=CAP (default 10 ×
    /// the mean).
    ///
    /// The drawn value is stamped, so every consumer does the same work for a message. When unset, each
    /// consumer applies its own --work.
    #[arg(long, env = "PRODUCER_WORK", value_name = "SPEC")]
    pub work: Option<WorkSpec>,

    /// With --count or --duration (or a shape that ends): stop with an error (exit 1) when the queue has
    /// confirmed nothing for this long, retrying with back-off meanwhile.
    ///
    /// A queue that cannot be reached would otherwise keep a run that should end running for ever. A run
    /// without an end keeps retrying whatever this says: it waits for its queue to come (back).
    #[arg(long, env = "PRODUCER_GIVE_UP_AFTER", default_value = "60s", value_parser = parse_interval, allow_hyphen_values = true, value_name = "DURATION")]
    pub give_up_after: Duration,

    /// Run id shared by the producers of one run, 1-16 hex digits (default: random).
    #[arg(long, env = "RUN_ID", value_name = "HEX")]
    pub run_id: Option<String>,

    /// This producer's id, unique within the run (default: random).
    #[arg(long, env = "PRODUCER_ID", value_name = "N", value_parser = whole::<u32>(0, u32::MAX.into()), allow_negative_numbers = true)]
    pub producer_id: Option<u32>,

    #[command(flatten)]
    pub stats: StatsArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Parses `--duration`: a [`parse_duration`] above 0. A run of 0s sends nothing. It is refused here, where clap
/// names the flag (or PRODUCER_DURATION), not by the send-nothing check of [`Config::from_args`], which can
/// only quote the shape: the default const:10 when the user gave none.
fn parse_run_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!(
            "{:?} sends no message: give a duration above 0 (e.g. 10s), or none to run until --count or a stop",
            s.trim()
        )),
        d => Ok(d),
    }
}

/// A validated producer run.
#[derive(Debug)]
pub struct Config {
    /// The queue, parsed once here; opened by the run.
    pub queue: queues::QueueUrl,
    /// The load shape; `None` sends as fast as the queue accepts (--rate 0).
    pub shape: Option<Shape>,
    /// This producer's part of the shape.
    pub share: Share,
    /// Seeds this producer's random streams (already mixed with its index).
    pub seed: u64,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub size: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub work: Option<WorkSpec>,
    pub run_id: u64,
    pub producer_id: u32,
    pub stats_interval: Duration,
    /// Publish every stats line to the telemetry channel too.
    pub telemetry: bool,
    /// See [`Args::give_up_after`].
    pub give_up_after: Duration,
    /// Where to serve `/metrics`, when asked.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Config {
    /// Checks every input before anything is opened or sent.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let queue = args.queue.url()?;
        let shape = match (&args.shape, args.rate) {
            (Some(spec), _) => {
                Some(Shape::parse(spec).with_context(|| format!("invalid --shape {spec:?}"))?)
            }
            (None, rate) => {
                // --rate (and PRODUCER_RATE) were checked as they were parsed ([`parse_rate`]).
                let rate = match rate {
                    Some(rate) => rate,
                    None => {
                        // Whole milliseconds: at most 1,000 msgs/s, always within the bounds.
                        match legacy_millis("MSS_PRODUCER_SLEEP_MS").map_err(anyhow::Error::msg)? {
                            Some(0) => 0.0,
                            Some(ms) => 1000.0 / ms as f64,
                            None => 10.0,
                        }
                    }
                };
                (rate > 0.0).then(|| Shape::constant(rate))
            }
        };
        if args.producer_index >= args.producers {
            bail!(
                "--producer-index {} is out of range: with --producers {} it goes from 0 to {}",
                args.producer_index,
                args.producers,
                args.producers - 1
            );
        }
        if args.stats.stats_interval.is_zero() {
            bail!("--stats-interval must be more than 0");
        }
        let run_id = match args.run_id {
            Some(hex) => workload::envelope::parse_run_id_arg(&hex)
                .map_err(|e| anyhow::anyhow!("--run-id: {e}"))?,
            None => rand::random(),
        };
        let seed = mix(args.seed.unwrap_or(run_id), args.producer_index);
        let duration = args
            .duration
            .or_else(|| shape.as_ref().and_then(Shape::natural_duration));
        if let Some(shape) = &shape {
            // A run that can send nothing would end at once with exit 0 and "sent 0", which reads as success.
            let horizon = duration.unwrap_or(Duration::from_secs(86_400));
            if shape.sent_by(horizon) <= 0.0 {
                let secs = horizon.as_secs_f64();
                bail!(
                    "--shape {shape} sends no message in {secs}s: give it a rate above 0 (or --rate 0 for as \
                     fast as the queue accepts)"
                );
            }
        }
        Ok(Config {
            queue,
            duration,
            shape,
            share: Share {
                producers: args.producers,
                index: args.producer_index,
            },
            seed,
            count: args.count,
            size: args.size,
            batch: args.batch,
            concurrency: args.concurrency,
            work: args.work,
            run_id,
            producer_id: args.producer_id.unwrap_or_else(rand::random),
            stats_interval: args.stats.stats_interval,
            telemetry: args.telemetry.telemetry,
            give_up_after: args.give_up_after,
            metrics_addr: args.stats.metrics_addr,
        })
    }
}

/// Mixes a producer's index into the run's seed (SplitMix64's finaliser), so that producers given the same seed
/// still draw independent streams.
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

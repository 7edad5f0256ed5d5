//! The local demo: the real `producer`, `consumer`s and `remainder` as child processes sharing an embedded
//! queue in a temporary directory, a live view, and an audit at the end.
//!
//! - [`schedule`]: the `--consumers` schedule (`3,0@10s,6@20s`).
//! - [`autoscale`]: the local autoscaler (`--autoscale`), which replaces the schedule.
//! - [`child`]: finding, starting, signalling and reaping the children, through a [`child::Launcher`]:
//!   processes of this machine, or containers ([`containers`], on the Engine API client in [`docker`]).
//! - [`supervisor`]: the run itself, phase by phase (run, stop the producer, drain, stop the rest).
//! - [`console`]: the status line and the per-second JSON line; [`keys`]: `+`, `-`, `q` in a terminal.
//! - [`record`]: the time series for the scorecard, manual changes included.
//! - [`report`]: the header, the final summary line and report.

pub mod autoscale;
pub mod child;
pub mod console;
pub mod containers;
pub mod docker;
pub mod keys;
pub mod record;
pub mod report;
pub mod schedule;
pub mod supervisor;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use workload::cli::{MAX_COUNT, MAX_SIZE, MAX_THREADS, parse_duration, whole, whole_nonzero};
use workload::shape::Shape;
use workload::work::{Work, WorkSpec};

pub use autoscale::{Autoscale, AutoscaleArgs};
pub use schedule::ConsumerSchedule;

use crate::scenario::Scenario;
pub use supervisor::run;

/// Run the whole workload on this machine: a producer, consumers and a remainder on an embedded queue.
///
/// The demo starts the real binaries (producer, consumer and remainder, found beside this one) as child
/// processes that share a SQLite queue in a temporary directory, and shows every second the queue depth, the
/// produce and consume rates, the consumers running, the end-to-end p99 and the remainder's work. After
/// --duration it stops the producer, lets the consumers drain the queue, stops them, and audits their ledgers
/// against what the producer sent: every message the queue confirmed must have been consumed. No server is
/// needed.
///
/// Keys, when run in a terminal: + adds a consumer, - removes one, q or Ctrl-C stops (press again to skip the
/// drain). SIGINT and SIGTERM stop it too.
///
/// The JSON lines, {"role":"demo","kind":"interval",...} every second and one {"role":"demo","kind":"summary",...}
/// at the end, go to --json FILE when given, else to stdout unless stdout is a terminal (there the live view
/// is all you see). The live view and the report go to stderr; each child's logs go to a file in the temporary
/// directory (RUST_LOG is passed on). Exit status: 0 when no message was lost (messages left in the queue
/// after you stopped the demo early are not lost), 1 when some were, the queue did not drain, or the demo
/// failed, 2 for bad usage.
#[derive(Parser, Debug)]
#[command(name = "demo", version)]
pub struct Args {
    /// Messages per second the producer sends; 0 sends as fast as the queue accepts [default: 100].
    #[arg(
        long,
        value_name = "MSGS_PER_S",
        conflicts_with = "shape",
        value_parser = workload::cli::parse_rate,
        allow_negative_numbers = true
    )]
    pub rate: Option<f64>,

    /// A load shape instead of a constant rate, e.g. step:100,500@30s,100@60s (the producer's --shape).
    #[arg(long, value_name = "SPEC")]
    pub shape: Option<String>,

    /// Size of each message body in bytes; bodies never shrink below the envelope (about 70 bytes).
    #[arg(long, default_value_t = 0, value_name = "BYTES", value_parser = whole::<usize>(0, MAX_SIZE), allow_negative_numbers = true)]
    pub size: usize,

    /// How long the producer runs; then the demo drains the queue and stops [default: 20s, or the scenario's].
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Consumers to run: a count, or a schedule such as 3,0@10s,6@20s.
    ///
    /// A schedule gives the count at the start, then COUNT@TIME steps from the demo's start: 3,0@10s,6@20s runs
    /// 3 consumers, none from 10 s (the backlog grows), 6 from 20 s. Removing a consumer sends it SIGTERM (it
    /// drains what it holds and exits); adding one starts a new process with its own ledger. At most 64.
    #[arg(
        long,
        default_value = "3",
        value_name = "N|SCHEDULE",
        conflicts_with = "autoscale",
        allow_negative_numbers = true
    )]
    pub consumers: ConsumerSchedule,

    /// Let the local autoscaler run the consumers: target=50,min=0,max=8,interval=1s[,slots=8], or
    /// policy=keda[,polling=30s,cooldown=300s,…].
    ///
    /// policy=microscaling (the default) is Microscaling's queue rule: every interval, one more consumer while
    /// the queue depth is above the target, one fewer while it is under 70 % of it, within min..max.
    /// policy=keda is KEDA with the Kubernetes HPA: activation from 0 and cooldown back to 0 every polling
    /// interval, ⌈depth / target⌉ replicas every HPA sync with its tolerance, stabilisation windows and rate
    /// policies; every KEDA and HPA setting has its default and a key (see the README). start-delay=D
    /// delays each started consumer, as a pod's start-up would. The spare slots (slots - consumers) run
    /// remainder processes, so consumers + remainders = slots. Keys a scenario file sets may be left out
    /// (`on` takes them all from --scenario). The run's time series, its scorecard and chart are written to
    /// --scorecard-dir.
    #[arg(long, value_name = "KEY=VALUE,...")]
    pub autoscale: Option<AutoscaleArgs>,

    /// Run a scenario file (scenarios/*.toml): its shape, work, target and duration. A flag given on the
    /// command line wins over the file.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Where to write the run's series.json, scorecard.json and chart.svg [default with --autoscale:
    /// scorecard; without it, none are written unless this is given].
    #[arg(long, value_name = "DIR")]
    pub scorecard_dir: Option<PathBuf>,

    /// Write the JSON lines to FILE instead of stdout (by default they go to stdout unless it is a terminal).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Work each consumer does per message: none, sleep:DURATION (no CPU), cpu:DURATION (CPU time), or a
    /// distribution such as sleep:exp(20ms) or cpu:lognormal(5ms,1.0) (see the README's work models).
    ///
    /// With the defaults (25 ms of sleep, one message at a time) a consumer takes about 35 messages/s, so 3
    /// consumers just keep up with 100 messages/s: press - to watch the backlog grow, + to drain it. Given
    /// here with --scenario, the producer also stamps it into every message, overriding the scenario's work
    /// [default: sleep:25ms].
    #[arg(long, value_name = "SPEC")]
    pub work: Option<WorkSpec>,

    /// Messages each consumer works on at once.
    #[arg(long, default_value_t = NonZeroUsize::MIN, value_name = "N", value_parser = whole_nonzero(MAX_COUNT), allow_negative_numbers = true)]
    pub max_in_flight: NonZeroUsize,

    /// Do not run the remainder (the low-priority task that fills spare CPU).
    #[arg(long)]
    pub no_remainder: bool,

    /// Worker threads of the remainder.
    #[arg(long, default_value_t = NonZeroUsize::MIN, value_name = "N", conflicts_with = "no_remainder", value_parser = whole_nonzero(MAX_THREADS), allow_negative_numbers = true)]
    pub remainder_threads: NonZeroUsize,

    /// After the producer stops, how long consumers may take to empty the queue before they are stopped anyway.
    ///
    /// Messages still in the queue then are reported as left in the queue, and the demo fails (exit 1).
    #[arg(long, default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Keep the temporary directory (queue, ledgers, logs) and print its path.
    ///
    /// It is also kept, whatever this flag says, when the demo fails, so that the logs can be read. It holds
    /// what `audit` needs to re-run: producer.jsonl (the producer's stdout) and ledgers/.
    #[arg(long)]
    pub keep: bool,

    /// Directory holding the producer, consumer and remainder binaries [default: the demo's own directory].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    // The help names only the forms this build has (a build with the embedded backend alone has no broker).
    #[arg(long, value_name = "URL", help = queue_help(false), long_help = queue_help(true))]
    pub queue: Option<String>,

    /// What runs the children: `process` (processes of this machine) or `docker` (containers of --image on
    /// the Docker engine at DOCKER_HOST's unix socket, default /var/run/docker.sock, on the host's network,
    /// with the demo's temporary directory mounted; every container, network and volume of the run is
    /// removed when the demo ends).
    #[arg(long, value_enum, default_value_t = EngineKind::Process)]
    pub engine: EngineKind,

    /// The workload image `--engine docker` runs (`make image` builds it).
    #[arg(long, value_name = "IMAGE", default_value = concat!("queue-workload:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
}

/// `--engine`: what runs the demo's children.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Process,
    Docker,
}

/// Where the children run, validated.
#[derive(Clone, Debug)]
pub enum Engine {
    Processes,
    /// Containers of `image` on the engine at `socket` (`unix:///…`).
    Docker {
        image: String,
        socket: String,
    },
}

/// A `--queue` given to the demo: the URL as given (the children need it whole) and as shown (secrets
/// masked). `Debug` shows only the masked form.
#[derive(Clone)]
pub struct QueueArg {
    pub url: String,
    pub shown: queues::QueueUrl,
}

impl std::fmt::Debug for QueueArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueArg({})", self.shown)
    }
}

/// Where `--autoscale` writes its scorecard when `--scorecard-dir` is not given.
const DEFAULT_SCORECARD_DIR: &str = "scorecard";
/// The depth a manual run without a scenario is measured against: the autoscaler's own example target.
const DEFAULT_TARGET: u64 = 50;

/// A validated demo run.
#[derive(Clone, Debug)]
pub struct Config {
    pub rate: f64,
    /// The load shape, which replaces `rate` when set.
    pub shape: Option<Shape>,
    pub size: usize,
    pub duration: Duration,
    pub consumers: ConsumerSchedule,
    /// The autoscaler, which replaces the consumer schedule when set.
    pub autoscale: Option<Autoscale>,
    /// Where the series, scorecard and chart go; `None` writes none.
    pub scorecard_dir: Option<PathBuf>,
    /// Where the JSON lines go instead of stdout.
    pub json: Option<PathBuf>,
    /// The scenario's name, for the chart's title.
    pub scenario: Option<String>,
    /// The depth a manual run's scorecard measures against: the scenario's target, or the autoscaler's.
    pub target: u64,
    /// Consumers' own work.
    pub work: WorkSpec,
    /// Work the producer stamps into every message (it wins over the consumers' own), from a scenario.
    pub stamp_work: Option<String>,
    pub max_in_flight: NonZeroUsize,
    /// Remainder threads, `None` for no remainder.
    pub remainder_threads: Option<NonZeroUsize>,
    pub drain_timeout: Duration,
    pub keep: bool,
    pub bin_dir: Option<PathBuf>,
    /// The queue, when not the embedded one.
    pub queue: Option<QueueArg>,
    pub engine: Engine,
}

impl Config {
    /// Checks what clap cannot.
    ///
    /// # Errors
    /// A message for the user, for a value out of range.
    pub fn from_args(args: Args) -> Result<Config, String> {
        let queue = match args.queue {
            Some(url) => Some(QueueArg {
                shown: queues::QueueUrl::parse(&url).map_err(|e| format!("--queue: {e}"))?,
                url,
            }),
            None => None,
        };
        // Checked as it was parsed (`parse_rate`).
        let rate = args.rate.unwrap_or(100.0);
        let scenario = args
            .scenario
            .as_deref()
            .map(Scenario::load)
            .transpose()
            .map_err(|e| e.to_string())?;
        let shape = match (&args.shape, args.rate) {
            (Some(spec), _) => Some(Shape::parse(spec).map_err(|e| format!("--shape: {e}"))?),
            // A --rate on the command line wins over the scenario's shape.
            (None, Some(_)) => None,
            (None, None) => scenario.as_ref().map(|s| s.shape.clone()),
        };
        let duration = args
            .duration
            .or(scenario.as_ref().map(|s| s.duration))
            .unwrap_or(Duration::from_secs(20));
        if duration.is_zero() {
            return Err("--duration must be more than 0 (e.g. 20s)".into());
        }
        let stamp_work = match (&args.work, &scenario) {
            (Some(w), Some(_)) => Some(w.to_string()),
            (None, Some(s)) => s.work.clone(),
            (_, None) => None,
        };
        let autoscale = match &args.autoscale {
            Some(a) => {
                let fallback = scenario
                    .as_ref()
                    .map_or_else(AutoscaleArgs::default, |s| s.autoscale.clone());
                Some(Autoscale::resolve(a, &fallback)?)
            }
            None => None,
        };
        let scorecard_dir = args.scorecard_dir.or_else(|| {
            autoscale
                .is_some()
                .then(|| PathBuf::from(DEFAULT_SCORECARD_DIR))
        });
        let target = match (&autoscale, &scenario) {
            (Some(a), _) => a.target,
            (None, Some(s)) => s.target,
            (None, None) => DEFAULT_TARGET,
        };
        let engine = match args.engine {
            EngineKind::Process => Engine::Processes,
            EngineKind::Docker => Engine::Docker {
                image: args.image,
                socket: crate::scorecard::sources::docker_socket()
                    .map_err(|e| format!("--engine docker: {e}"))?,
            },
        };
        Ok(Config {
            engine,
            rate,
            shape,
            size: args.size,
            duration,
            consumers: match &autoscale {
                // The autoscaler starts from its minimum.
                Some(a) => ConsumerSchedule {
                    initial: a.min,
                    steps: Vec::new(),
                },
                None => args.consumers,
            },
            autoscale,
            scorecard_dir,
            json: args.json,
            target,
            scenario: scenario.map(|s| s.name),
            work: args
                .work
                .unwrap_or(WorkSpec::from(Work::Sleep(Duration::from_millis(25)))),
            stamp_work,
            max_in_flight: args.max_in_flight,
            remainder_threads: (!args.no_remainder).then_some(args.remainder_threads),
            drain_timeout: args.drain_timeout,
            keep: args.keep,
            bin_dir: args.bin_dir,
            queue,
        })
    }
}

impl Config {
    /// Makes sure the run's outputs can be written before anything starts: `--scorecard-dir` is created and
    /// a file written in it (then removed), the `--json` file is created. Found only at the end, a run's
    /// minutes would be lost.
    ///
    /// # Errors
    /// A message for the user naming the flag, the path and the cause.
    pub fn check_outputs(&self) -> Result<(), String> {
        if let Some(dir) = &self.scorecard_dir {
            let failed = |e: std::io::Error| {
                format!("--scorecard-dir {}: cannot create it: {e}", dir.display())
            };
            std::fs::create_dir_all(dir).map_err(failed)?;
            // Created and dropped, so removed: what counts is that the directory takes a new file.
            tempfile::Builder::new()
                .prefix(".demo-probe-")
                .tempfile_in(dir)
                .map_err(|e| {
                    format!("--scorecard-dir {}: cannot write in it: {e}", dir.display())
                })?;
        }
        if let Some(path) = &self.json {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| format!("--json {}: cannot create it: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// The demo's `--queue` help: the forms of this build's backends, as the roles' own help lists them.
fn queue_help(long: bool) -> String {
    let short = format!(
        "Run on this queue instead of the embedded one in the temporary directory: {}",
        queues::registry::forms()
    );
    if long {
        format!(
            "{short}.\n\nThe children get it as their --queue, with the demo's environment (credentials \
included). Start from an empty queue: its depth is read as the demo's backlog, and messages of other runs in it \
would be consumed too."
        )
    } else {
        short
    }
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
    fn defaults_are_the_documented_ones() {
        let c = Config::from_args(Args::parse_from(["demo"])).unwrap();
        assert_eq!(c.rate, 100.0);
        assert_eq!(c.duration, Duration::from_secs(20));
        assert_eq!(c.consumers.initial, 3);
        assert_eq!(
            c.work,
            WorkSpec::from(Work::Sleep(Duration::from_millis(25)))
        );
        assert_eq!(c.max_in_flight.get(), 1);
        assert_eq!(c.remainder_threads.map(NonZeroUsize::get), Some(1));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        let c = Config::from_args(Args::parse_from(["demo", "--no-remainder"])).unwrap();
        assert_eq!(c.remainder_threads, None);
        // A rate out of bounds is refused as the flag is parsed, naming the flag and the bound.
        let e = Args::try_parse_from(["demo", "--rate=-1"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--rate") && e.contains("0 or more (got -1)"),
            "{e}"
        );
    }
}

//! `scorecard`: grades a scaling engine from a run's time series: how fast it scaled out after each load
//! change, how long the queue took to come back into the target band, how far it overshot, whether it flapped,
//! and what the capacity cost. Prints a table on stderr, the scorecard as one JSON document on stdout, and
//! writes series.json, scorecard.json and chart.svg into --out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use judge::scenario::Scenario;
use judge::scorecard::{
    self, compare, compare_chart, heartbeats::CountFrom, sources::ConsumerSource, table, watch,
};
use workload::cli::{MAX_COUNT, parse_duration, parse_interval, usage, whole};
use workload::shape::Shape;

/// Grade a scaling engine: reaction time, overshoot, time in band, flaps, cost, utilisation, loss.
///
/// `scorecard grade series.json` re-grades a recorded run (the demo writes one with --autoscale);
/// `scorecard watch` records one from outside while any engine scales consumers on any backend;
/// `scorecard compare RUN RUN…` puts recorded runs side by side.
///
/// Exit status: 0 graded, 1 when nothing could be read or written, 2 for bad usage (a series file that is
/// missing or not a series, no --target or --duration without a scenario that has them, a bad queue URL).
#[derive(Parser, Debug)]
#[command(name = "scorecard", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Grade a recorded series (series.json from `demo --autoscale` or `scorecard watch`).
    Grade {
        /// The series file, or a directory holding series.json (a --scorecard-dir, a watch's --out).
        #[arg(value_name = "SERIES")]
        series: PathBuf,
        /// Write scorecard.json and chart.svg (and a copy of the series) here [default: beside the series].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Compare recorded runs (engines, or one engine's settings): one column per run with every figure and
    /// the elastic speedup against the first, and one overlaid chart (compare.svg) of their depth and consumers.
    Compare {
        /// Each run: a series file, or a directory holding series.json (a --scorecard-dir, a watch's --out).
        /// The first is the baseline of the elastic speedup.
        #[arg(required = true, num_args = 2.., value_name = "RUN")]
        runs: Vec<PathBuf>,
        /// Directory for compare.json and compare.svg.
        #[arg(long, default_value = "compare", value_name = "DIR")]
        out: PathBuf,
    },
    /// Watch a run from outside: poll the queue's depth and the platform's consumer count, then grade.
    Watch {
        // The queue the engine reads; the help lists this build's queue URL forms, from the queue registry.
        #[arg(
            long,
            env = "QUEUE_URL",
            hide_env_values = true,
            value_name = "URL",
            help = queues::registry::help_short(),
            long_help = format!(
                "{}\n\nThe watch only reads: it opens the queue as it is and never creates it (whatever the \
                 forms above say), so it refuses one that no producer or consumer has made yet.",
                queues::registry::help_long()
            )
        )]
        queue: String,
        /// Where the count of consumers running comes from: nsqd:http://HOST:4151/TOPIC/CHANNEL (clients on
        /// the channel), marathon:http://HOST:8080/APP_ID (the app's running tasks),
        /// prometheus:http://HOST:9090?query=PROMQL (one instant query, e.g. count(mw_consumer_slots) or
        /// kube_deployment_status_replicas_available{deployment="consumer"}; the PromQL as is, quoted for the
        /// shell) or docker:LABEL=VALUE (running containers with the label, on the engine at DOCKER_HOST's unix
        /// socket), or telemetry (the consumers' own heartbeats on the queue's telemetry channel, any backend
        /// and platform: run them with --telemetry on).
        #[arg(long, value_name = "SOURCE")]
        consumers: CountFrom,
        /// Where the engine's decision comes from (its desired replicas), recorded beside the consumers running
        /// and graded too: any SOURCE form, e.g.
        /// prometheus:http://HOST:9090?query=kube_horizontalpodautoscaler_status_desired_replicas{horizontalpodautoscaler="keda-hpa-consumer"}.
        #[arg(long, value_name = "SOURCE")]
        decided: Option<ConsumerSource>,
        /// The consumers' work model (the producer's --work), so the run is graded against its demand
        /// [default: the scenario's work].
        #[arg(long, value_name = "SPEC")]
        work: Option<String>,
        /// Messages one consumer works on at once (its --max-in-flight), for the demand.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = whole::<usize>(1, MAX_COUNT), allow_negative_numbers = true)]
        consumer_slots: usize,
        /// The scenario being run: its shape gives the load changes, its target and duration the defaults.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// The load shape, when there is no scenario file (or to override its shape).
        #[arg(long, value_name = "SPEC")]
        shape: Option<String>,
        /// The queue depth the engine aims at [default: the scenario's].
        #[arg(long, value_name = "DEPTH", value_parser = whole::<u64>(1, u64::MAX), allow_negative_numbers = true)]
        target: Option<u64>,
        /// How long to watch [default: the scenario's duration plus 60 s for the drain].
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
        duration: Option<Duration>,
        /// How often to read the depth and the count.
        #[arg(long, default_value = "1s", value_parser = parse_interval, allow_hyphen_values = true, value_name = "DURATION")]
        interval: Duration,
        /// Directory for series.json, scorecard.json and chart.svg.
        #[arg(long, default_value = "scorecard", value_name = "DIR")]
        out: PathBuf,
    },
}

/// Found only after the watch, an --out that cannot be a directory would throw the run away; checked without
/// creating anything, so that a watch that fails to start leaves nothing behind.
fn check_out_dir(out: &std::path::Path) -> Result<(), String> {
    let mut at = Some(out);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
        if p.exists() {
            return if p.is_dir() {
                Ok(())
            } else {
                Err(format!(
                    "--out {}: {} is not a directory",
                    out.display(),
                    p.display()
                ))
            };
        }
        at = p.parent();
    }
    Ok(())
}

/// `scorecard compare`: the table on stderr, the comparison as one JSON document on stdout, and both files.
fn compare(paths: &[PathBuf], out: &std::path::Path) -> anyhow::Result<ExitCode> {
    // A run named on the command line that is missing or not a series is bad usage, as for `grade`.
    let runs = paths
        .iter()
        .map(|p| compare::Run::load(p).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    let comparison = compare::compare(&runs);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let svg = compare_chart::svg(&runs, &format!("compared: {}", labels.join(" vs ")))?;
    let (json_path, svg_path) = (out.join("compare.json"), out.join("compare.svg"));
    std::fs::write(&json_path, scorecard::json::to_string_pretty(&comparison)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&svg_path, svg)
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    let mut err = std::io::stderr().lock();
    compare::write_table(&mut err, &comparison).context("cannot write the table")?;
    workload::note!("  files  {}, {}", json_path.display(), svg_path.display());
    workload::outln!("{}", scorecard::json::to_string(&comparison)?);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    workload::cli::init_logging(&queues::registry::quiet_log_targets());
    let args = workload::cli::parse_args::<Args>();
    workload::cli::run_async(async move {
        let (series, out, title) = match args.command {
            Command::Compare { runs, out } => return compare(&runs, &out),
            Command::Grade { series, out } => {
                // The series is a file named on the command line (or a directory holding one, as compare takes
                // it): missing or not a series is bad usage.
                let (series, parsed) = compare::read_series(&series).map_err(usage)?;
                let dir =
                    out.unwrap_or_else(|| series.parent().map(PathBuf::from).unwrap_or_default());
                let title = parsed
                    .title
                    .clone()
                    .unwrap_or_else(|| series.display().to_string());
                (parsed, dir, title)
            }
            Command::Watch {
                queue,
                consumers,
                decided,
                work,
                consumer_slots,
                scenario,
                shape,
                target,
                duration,
                interval,
                out,
            } => {
                let scenario = scenario
                    .as_deref()
                    .map(Scenario::load)
                    .transpose()
                    .map_err(usage)?;
                let shape = match shape {
                    Some(s) => {
                        Some(Shape::parse(&s).map_err(|e| usage(format!("invalid --shape: {e}")))?)
                    }
                    None => scenario.as_ref().map(|s| s.shape.clone()),
                };
                let target = target
                    .or(scenario.as_ref().map(|s| s.target))
                    .ok_or_else(|| usage("give --target or a --scenario that has one"))?;
                let duration = duration
                    .or(scenario
                        .as_ref()
                        .map(|s| s.duration + Duration::from_secs(60)))
                    .ok_or_else(|| usage("give --duration or a --scenario that has one"))?;
                // Watching must not create the queue it watches: one that is not there is a mistyped name,
                // not an empty queue (where the backend can tell).
                let work = work.or(scenario.as_ref().and_then(|s| s.work.clone()));
                if let Some(w) = &work {
                    w.parse::<workload::work::WorkSpec>()
                        .map_err(|e| usage(format!("invalid --work {w:?}: {e}")))?;
                }
                check_out_dir(&out).map_err(usage)?;
                let url = queues::QueueUrl::parse(&queue).map_err(usage)?;
                let q = url.open_existing().await.map_err(|e| {
                    let missing = e.kind() == queues::ErrorKind::NotFound;
                    anyhow::Error::new(e).context(if missing {
                        "scorecard watch reads the queue a run uses; start the run first or fix the URL"
                            .to_string()
                    } else {
                        format!("cannot open queue {:?}", url.to_string())
                    })
                })?;
                let beats;
                let counted = match &consumers {
                    CountFrom::Polled(source) => watch::Consumers::Polled(source),
                    CountFrom::Heartbeats => {
                        beats = scorecard::heartbeats::Heartbeats::start(&url)
                            .await
                            .context("cannot read the consumers' heartbeats")?;
                        watch::Consumers::Heartbeats(&beats)
                    }
                };
                let shutdown = workload::shutdown::Shutdown::from_signals()
                    .context("cannot install signal handlers")?;
                let w = watch::Watch {
                    queue: q.as_ref(),
                    consumers: counted,
                    decided: decided.as_ref(),
                    target,
                    shape: shape.as_ref(),
                    duration,
                    interval,
                    work,
                    consumer_slots: Some(consumer_slots),
                };
                let (mut series, readings) =
                    watch::record(w, async move { shutdown.requested().await }).await;
                if readings.count_read == 0 || readings.depth_read == 0 {
                    let what = if readings.count_read == 0 {
                        format!("the consumer count from {consumers}")
                    } else {
                        "the queue depth".to_string()
                    };
                    anyhow::bail!(
                        "could not read {what} once in {} polls: nothing to grade (the warnings above say why)",
                        readings.polls
                    );
                }
                if let Some(d) = decided.as_ref().filter(|_| readings.decided_read == 0) {
                    tracing::warn!(
                        "could not read the engine's decision from {d} once in {} polls: only the consumers running are graded",
                        readings.polls
                    );
                }
                let decided_short = decided.is_some() && readings.decided_read < readings.polls;
                if readings.count_read < readings.polls
                    || readings.depth_read < readings.polls
                    || decided_short
                {
                    tracing::warn!(
                        "of {} polls, {} read the depth, {} the consumer count{}; the others hold the last reading",
                        readings.polls,
                        readings.depth_read,
                        readings.count_read,
                        if decided.is_some() {
                            format!(" and {} the engine's decision", readings.decided_read)
                        } else {
                            String::new()
                        }
                    );
                }
                let title = match scenario {
                    Some(s) => format!("{}: consumers from {consumers}", s.name),
                    None => format!("consumers from {consumers}"),
                };
                series.title = Some(title.clone());
                (series, out, title)
            }
        };
        let (card, files) = scorecard::write_all(&out, &series, &title)?;
        let mut err = std::io::stderr().lock();
        table::write(&mut err, &card).context("cannot write the table")?;
        workload::note!(
            "  files  {}, {}, {}",
            files.series.display(),
            files.scorecard.display(),
            files.chart.display()
        );
        workload::outln!("{}", scorecard::json::to_string(&card)?);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

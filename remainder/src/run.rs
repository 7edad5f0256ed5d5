//! One run of the remainder: calibrate, start the filler, write stats lines until a signal or `--duration`
//! stops it, then write the summary.
//!
//! The runtime thread that runs this stays at normal priority while the workers drop to the lowest, so stats
//! lines and the reaction to SIGTERM stay timely however busy the machine is.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::time::MissedTickBehavior;
use workload::contract::{self, Head};
use workload::metrics::{Exporter, Gauge, Registry};
use workload::shutdown::Shutdown;
use workload::stats::{self, Kind, rate};

use crate::filler::{self, Mode, Pool};

/// The role name in every stats line.
const ROLE: &str = "remainder";

/// How long a stop waits for the workers to finish their current unit. Units take about 1 ms, so this only
/// runs out for workers the scheduler is not running at all; it keeps the exit well within 100 ms of the signal.
const STOP_GRACE: Duration = Duration::from_millis(50);

/// Everything a run needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub threads: NonZeroUsize,
    pub mode: Mode,
    pub stats_interval: Duration,
    /// Stop by itself this long after the workers start.
    pub duration: Option<Duration>,
    /// Where to serve `/metrics`, when asked.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Runs until SIGTERM/SIGINT or the configured duration, then writes the summary line.
///
/// # Errors
/// When the signal handlers cannot be installed or the worker threads cannot be started.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Signals first, so that a SIGTERM that arrives while calibrating still ends in a clean exit and a summary.
    let shutdown =
        Shutdown::from_signals().context("cannot install the SIGTERM/SIGINT handlers")?;
    // Bound before anything else, so that a port in use stops the run before it calibrates.
    let exporter = match config.metrics_addr {
        Some(addr) => Some(Exporter::bind(addr).await?),
        None => None,
    };
    let calibration = match config.mode {
        // Calibrating blocks this runtime thread for about 0.1 s; nothing else needs it yet (a signal that
        // arrives meanwhile is recorded and acted on right after).
        Mode::Cpu => {
            let c = filler::calibrate(filler::UNIT_TARGET);
            tracing::info!(
                "calibrated work unit: {} iterations, {} µs of CPU each",
                c.iterations,
                c.unit.as_micros()
            );
            Some(c)
        }
        Mode::Sleep => None,
    };
    let started = Instant::now();
    let pool = Pool::start(config.threads, calibration).with_context(|| {
        format!(
            "cannot start {} filler threads (try fewer with --threads)",
            config.threads
        )
    })?;
    if let Some(exporter) = exporter {
        exporter.serve(registry(&pool, calibration), shutdown.clone());
    }
    tracing::info!(
        "filling spare CPU: mode {}, {} thread(s){}",
        config.mode.as_str(),
        pool.threads(),
        config
            .duration
            .map(|d| format!(", for {}", humantime::format_duration(d)))
            .unwrap_or_default()
    );

    report_until_stopped(&pool, &config, started, &shutdown).await;

    let elapsed = started.elapsed();
    let priority = pool.priority();
    let threads = pool.threads();
    let stopped = pool.stop(STOP_GRACE);
    stats::emit(&contract::Remainder {
        head: Head::new(ROLE, Kind::Summary, started),
        units: stopped.units,
        units_per_s: rate(stopped.units, elapsed.as_secs_f64()),
        threads: threads as u64,
        mode: config.mode.as_str().to_string(),
        priority: Some(priority.as_str().to_string()),
        unit_us: Some(calibration.map(|c| c.unit.as_micros() as u64)),
        first_unit_at_us: Some(stopped.first_unit_at_us),
    });
    Ok(())
}

/// The remainder's metrics: its units, read from the pool's own counters at each scrape (so `/metrics` and
/// the stats lines count the same units), its thread count and the calibrated size of a unit.
fn registry(pool: &Pool, calibration: Option<filler::Calibration>) -> Registry {
    let mut r = workload::metrics::registry(ROLE, None);
    workload::metrics::register_counter_fn(
        &mut r,
        "remainder_units",
        "Work units completed with spare CPU time",
        pool.units_reader(),
    );
    let threads: Gauge = Gauge::default();
    threads.set(i64::try_from(pool.threads()).unwrap_or(i64::MAX));
    r.register("remainder_threads", "Worker threads", threads);
    if let Some(c) = calibration {
        let unit = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        unit.set(c.unit.as_secs_f64());
        r.register_with_unit(
            "remainder_unit",
            "CPU time one work unit took when calibrated",
            workload::metrics::Unit::Seconds,
            unit,
        );
    }
    r
}

/// Writes an interval line every `stats_interval` until a stop is requested or the duration has passed.
async fn report_until_stopped(pool: &Pool, config: &Config, started: Instant, shutdown: &Shutdown) {
    let period = config.stats_interval;
    let start = tokio::time::Instant::from_std(started);
    // The first tick one period after the start (not at once): an interval line reports a whole interval.
    let mut ticker = tokio::time::interval_at(start + period, period);
    // After a stall, carry on from now rather than writing a burst of catch-up lines.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let until_done = async {
        match config.duration {
            Some(d) => tokio::time::sleep_until(start + d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_done);
    let (mut last_at, mut last_units) = (started, 0);
    loop {
        tokio::select! {
            biased;
            () = shutdown.requested() => return,
            () = &mut until_done => {
                tracing::info!("--duration reached: stopping");
                return;
            }
            _ = ticker.tick() => {
                let (now, units) = (Instant::now(), pool.units());
                stats::emit(&contract::Remainder {
                    head: Head::new(ROLE, Kind::Interval, started),
                    units,
                    units_per_s: rate(units - last_units, (now - last_at).as_secs_f64()),
                    threads: pool.threads() as u64,
                    mode: config.mode.as_str().to_string(),
                    ..contract::Remainder::default()
                });
                (last_at, last_units) = (now, units);
            }
        }
    }
}

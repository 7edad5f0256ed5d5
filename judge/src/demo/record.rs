//! The run's time series, kept for the scorecard: one sample per autoscaler decision (or per second when the
//! consumers follow a manual schedule), and every consumer count set by hand (a key, a schedule step), so that
//! the grading never credits the engine with them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::Config;
use super::report::Summary;
use crate::scorecard::series::{ManualEvent, changes_of};
use crate::scorecard::{self, Sample, Series};

/// What the demo records while it runs.
#[derive(Debug, Default)]
pub struct Recorder {
    pub samples: Vec<Sample>,
    pub manual: Vec<ManualEvent>,
}

impl Recorder {
    /// Notes a consumer count set by hand at `t` seconds on the samples' clock.
    pub fn manual(&mut self, t: f64, consumers: usize, source: &str) {
        self.manual.push(ManualEvent {
            t: round_ms(t),
            consumers,
            source: source.into(),
        });
    }
}

/// Seconds rounded to the millisecond, the samples' resolution.
pub fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// The chart's title, for people: the scenario, who ran the consumers, the target.
pub fn title(config: &Config) -> String {
    let name = config.scenario.as_deref().unwrap_or("demo");
    let engine = match &config.autoscale {
        Some(a) => format!(
            "local autoscaler ({} policy), {}..{} consumers every {}",
            a.policy.name(),
            a.min,
            a.max,
            humantime::format_duration(a.interval)
        ),
        None => format!("consumers by hand ({})", config.consumers),
    };
    format!("{name}: {engine}, target depth {}", config.target)
}

/// Grades the run and writes the series, the scorecard and the chart to `dir`, then the table to stderr.
///
/// # Errors
/// When a file cannot be written.
pub fn write_scorecard(
    config: &Config,
    dir: &Path,
    s: &Summary,
    recorder: Recorder,
) -> anyhow::Result<()> {
    let title = title(config);
    let (changes_s, change_directions) = match &config.shape {
        Some(shape) => changes_of(shape),
        // A constant rate starts at 0 and never changes.
        None => (vec![0.0], vec![scorecard::series::Direction::Up]),
    };
    let series = Series {
        title: Some(title.clone()),
        policy: config.autoscale.as_ref().map(|a| a.policy.name().into()),
        settings: config.autoscale.as_ref().map(ToString::to_string),
        target: config.target,
        band_low: config.autoscale.as_ref().map_or_else(
            || scorecard::series::band_low(config.target),
            super::Autoscale::band_low,
        ),
        shape: config.shape.as_ref().map(ToString::to_string),
        changes_s,
        change_directions,
        manual: recorder.manual,
        consumed: s.audit.totals.consumed,
        lost: Some(s.lost()),
        // The work the messages carried: a scenario's, stamped by the producer, wins over the consumers' own
        // (the demand the run is graded against follows from it).
        work: Some(
            config
                .stamp_work
                .clone()
                .unwrap_or_else(|| config.work.to_string()),
        ),
        consumer_slots: Some(config.max_in_flight.get()),
        started_us: None,
        samples: recorder.samples,
    };
    let (card, out) =
        scorecard::write_all(dir, &series, &title).context("cannot write the scorecard")?;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "scorecard ({}):", dir.display());
    let _ = scorecard::table::write(&mut err, &card);
    let _ = writeln!(
        err,
        "  files  {}, {}, {}",
        out.series.display(),
        out.scorecard.display(),
        out.chart.display()
    );
    Ok(())
}

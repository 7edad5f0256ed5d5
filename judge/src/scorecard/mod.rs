//! The scorecard: grades a scaling engine from a run's time series (queue depth, consumer count, load).
//!
//! - [`series`]: the recorded run, the only input of the grading.
//! - [`score`]: the grading itself, a pure function (recomputable from the series file).
//! - [`chart`]: the SVG chart; [`table`]: the table for people.
//! - [`sources`]: where the consumer count comes from, per platform (the demo, nsqd's `/stats`, Marathon,
//!   a Prometheus query: [`prometheus`]), or the consumers' own heartbeats on the telemetry channel
//!   ([`heartbeats`]).
//! - [`watch`]: recording a series from outside a run (`scorecard watch`).
//! - [`json`]: the JSON written, figures rounded to a documented precision.

pub mod chart;
pub mod compare;
pub mod compare_chart;
pub mod demand;
pub mod elasticity;
pub mod heartbeats;
pub mod json;
pub mod prometheus;
pub mod score;
pub mod series;
pub mod sources;
pub mod table;
pub mod watch;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use score::{Reaction, Scorecard, score};
pub use series::{Sample, Series};

/// The files a graded run leaves in its output directory.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub series: PathBuf,
    pub scorecard: PathBuf,
    pub chart: PathBuf,
}

impl Outputs {
    pub fn in_dir(dir: &Path) -> Outputs {
        Outputs {
            series: dir.join("series.json"),
            scorecard: dir.join("scorecard.json"),
            chart: dir.join("chart.svg"),
        }
    }
}

/// Grades `series` and writes `series.json`, `scorecard.json` and `chart.svg` into `dir` (created if need be);
/// figures are written to [`json::DECIMALS`] places.
///
/// # Errors
/// When the directory or a file cannot be written.
pub fn write_all(dir: &Path, series: &Series, title: &str) -> anyhow::Result<(Scorecard, Outputs)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = Outputs::in_dir(dir);
    let card = score(series);
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(&out.series, json::to_string_pretty(series)?)?;
    write(&out.scorecard, json::to_string_pretty(&card)?)?;
    write(&out.chart, chart::svg(series, title)?)?;
    Ok((card, out))
}

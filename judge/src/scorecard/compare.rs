//! `scorecard compare`: recorded runs side by side, one column per run (an engine, or one engine's settings),
//! every figure of the scorecard a row, and the elastic speedup of each run against the first
//! ([`super::elasticity::elastic_speedup`]). Each run is graded again from its series (the grading is pure),
//! so the table never trusts a stale `scorecard.json`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::elasticity::{Elasticity, elastic_speedup};
use super::score::{Scorecard, score};
use super::series::Series;

/// One run of the comparison.
#[derive(Clone, Debug)]
pub struct Run {
    /// Its column heading: the path given, without a trailing `/series.json`.
    pub label: String,
    pub series: Series,
    pub card: Scorecard,
}

/// A failure to read a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a series file: {source}{}", scorecard_hint(path))]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{dir} is a directory without a series.json in it: give a run's series file (the series.json that \
         `demo --autoscale` writes in its --scorecard-dir, and `scorecard watch` in its --out), or a directory \
         holding one"
    )]
    NoSeriesInDir { dir: PathBuf },
}

/// A hint for the outputs that sit beside a series and are not one: the grade and the comparison.
fn scorecard_hint(path: &Path) -> &'static str {
    match path.file_name().and_then(|n| n.to_str()) {
        Some("scorecard.json") => " (scorecard.json is a grade; give the series.json beside it)",
        Some("compare.json") => " (compare.json is a comparison; give the runs' series files)",
        _ => "",
    }
}

/// Reads a series: `path` is a series file, or a directory holding `series.json` (a `--scorecard-dir` or a
/// `scorecard watch --out`). Returns the file read and its series.
///
/// # Errors
/// When the file cannot be read or is not a series, or the directory holds no series.json.
pub fn read_series(path: &Path) -> Result<(PathBuf, Series), RunError> {
    let file = if path.is_dir() {
        let file = path.join("series.json");
        if !file.exists() {
            return Err(RunError::NoSeriesInDir {
                dir: path.to_path_buf(),
            });
        }
        file
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| RunError::Read {
        path: file.clone(),
        source,
    })?;
    let series = serde_json::from_str(&text).map_err(|source| RunError::Parse {
        path: file.clone(),
        source,
    })?;
    Ok((file, series))
}

impl Run {
    /// Reads a run: `path` is a series file, or a directory holding `series.json` (a `--scorecard-dir` or a
    /// `scorecard watch --out`).
    ///
    /// # Errors
    /// When the file cannot be read or is not a series.
    pub fn load(path: &Path) -> Result<Run, RunError> {
        let (_, series) = read_series(path)?;
        let shown = path.display().to_string();
        let label = shown
            .strip_suffix("series.json")
            .unwrap_or(&shown)
            .trim_end_matches('/')
            .to_string();
        Ok(Run::new(
            if label.is_empty() { shown } else { label },
            series,
        ))
    }

    /// A run from a series already in memory, graded now.
    pub fn new(label: String, series: Series) -> Run {
        let card = score(&series);
        Run {
            label,
            series,
            card,
        }
    }
}

/// One row of the table: a figure and its value for each run (`None`: the run has no such figure).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub figure: &'static str,
    pub values: Vec<Option<f64>>,
    /// The values as the table prints them (`—` for none).
    pub cells: Vec<String>,
}

/// The comparison: the runs' own scorecards, and the table.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub runs: Vec<RunCard>,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunCard {
    pub run: String,
    /// What scaled the consumers, as the run's series says ([`engine_of`]): the column's second heading,
    /// since paths alone (`scorecard`, `scorecard-2`) rarely tell runs apart.
    pub engine: String,
    /// The engine's every setting, when the series records them (`demo --autoscale` runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
    /// Against the first run; `None` when either lacks the elasticity figures (no demand known).
    pub elastic_speedup: Option<f64>,
    pub scorecard: Scorecard,
}

type Pick = fn(&Scorecard) -> Option<f64>;

/// How a figure prints: its decimals and unit suffix.
struct Format {
    decimals: usize,
    unit: &'static str,
}

const fn f(decimals: usize, unit: &'static str) -> Format {
    Format { decimals, unit }
}

fn el(c: &Scorecard, pick: fn(&Elasticity) -> f64) -> Option<f64> {
    c.elasticity.as_ref().map(pick)
}

/// Every figure of the scorecard, in the order of its table (`table.rs`), then the elasticity metrics.
const FIGURES: [(&str, Pick, Format); 22] = [
    ("duration", |c| Some(c.duration_s), f(1, " s")),
    ("worst scale-out", |c| c.worst_scale_out_s, f(1, " s")),
    ("worst scale-in", |c| c.worst_scale_in_s, f(1, " s")),
    ("worst back in band", |c| c.worst_back_in_band_s, f(1, " s")),
    (
        "never back in band",
        |c| Some(c.never_back_in_band as f64),
        f(0, " changes"),
    ),
    (
        "peak overshoot",
        |c| Some(c.peak_overshoot as f64),
        f(0, " msgs"),
    ),
    (
        "∫|depth − target| dt",
        |c| Some(c.depth_error_integral),
        f(0, " msg·s"),
    ),
    (
        "time in band",
        |c| Some(c.in_band_share * 100.0),
        f(1, " %"),
    ),
    ("flaps", |c| Some(c.flaps_per_min), f(2, "/min")),
    ("consumer·s", |c| Some(c.consumer_seconds), f(0, "")),
    (
        "consumer·s per 1k msgs",
        |c| c.consumer_seconds_per_1000,
        f(1, ""),
    ),
    (
        "utilisation",
        |c| c.utilisation.map(|u| u * 100.0),
        f(1, " %"),
    ),
    ("max consumers", |c| Some(c.max_consumers as f64), f(0, "")),
    ("lost", |c| c.lost.map(|l| l as f64), f(0, "")),
    ("a_U (consumers)", |c| el(c, |e| e.accuracy_under), f(2, "")),
    ("a_O (consumers)", |c| el(c, |e| e.accuracy_over), f(2, "")),
    ("τ_U", |c| el(c, |e| e.timeshare_under * 100.0), f(1, " %")),
    ("τ_O", |c| el(c, |e| e.timeshare_over * 100.0), f(1, " %")),
    ("θ_U", |c| el(c, |e| e.theta_under_pct), f(1, " %")),
    ("θ_O", |c| el(c, |e| e.theta_over_pct), f(1, " %")),
    ("jitter", |c| el(c, |e| e.jitter_per_min), f(2, "/min")),
    (
        "υ (instability)",
        |c| el(c, |e| e.instability_pct),
        f(1, " %"),
    ),
];

/// The figures also shown for the engine's decision, when a run recorded it (`scorecard watch --decided`).
const DECIDED: [(&str, Pick, Format); 5] = [
    (
        "decision: worst scale-out",
        |c| c.worst_scale_out_s,
        f(1, " s"),
    ),
    (
        "decision: worst scale-in",
        |c| c.worst_scale_in_s,
        f(1, " s"),
    ),
    ("decision: flaps", |c| Some(c.flaps_per_min), f(2, "/min")),
    (
        "decision: replica·s",
        |c| Some(c.consumer_seconds),
        f(0, ""),
    ),
    (
        "decision: max replicas",
        |c| Some(c.max_consumers as f64),
        f(0, ""),
    ),
];

fn cell(v: Option<f64>, fmt: &Format) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.*}{}", fmt.decimals, fmt.unit),
        _ => "—".into(),
    }
}

/// The elastic speedup of each run against the first (the first's is 1 when it has the figures).
pub fn speedups(runs: &[Run]) -> Vec<Option<f64>> {
    let base = runs.first().and_then(|r| r.card.elasticity.as_ref());
    runs.iter()
        .map(|r| Some(elastic_speedup(r.card.elasticity.as_ref()?, base?)))
        .collect()
}

/// What scaled a run's consumers, from its series: the demo's autoscaler policy when it names one
/// (`local autoscaler: keda`),
/// else its title without the scenario's name (`consumers from nsqd:http://…`, `consumers by hand (3)`,
/// `target depth 50`), else `unknown`.
pub fn engine_of(series: &Series) -> String {
    if let Some(policy) = &series.policy {
        return format!("local autoscaler: {policy}");
    }
    match &series.title {
        // "burst: consumers from …": the scenario is the same in every column; the rest is the engine.
        Some(title) => title
            .split_once(": ")
            .map_or(title.as_str(), |(_, rest)| rest)
            .to_string(),
        None => "unknown".into(),
    }
}

/// The comparison of `runs`, in their order.
pub fn compare(runs: &[Run]) -> Comparison {
    let row = |(figure, pick, fmt): &(&'static str, Pick, Format), cards: &[Option<&Scorecard>]| {
        let values: Vec<Option<f64>> = cards.iter().map(|c| c.and_then(pick)).collect();
        Row {
            figure,
            cells: values.iter().map(|&v| cell(v, fmt)).collect(),
            values,
        }
    };
    let cards: Vec<Option<&Scorecard>> = runs.iter().map(|r| Some(&r.card)).collect();
    let mut rows: Vec<Row> = FIGURES.iter().map(|fig| row(fig, &cards)).collect();
    let speedup = speedups(runs);
    let fmt = f(2, "");
    rows.push(Row {
        figure: "elastic speedup vs the first",
        cells: speedup.iter().map(|&v| cell(v, &fmt)).collect(),
        values: speedup.clone(),
    });
    let decided: Vec<Option<&Scorecard>> = runs.iter().map(|r| r.card.decided.as_deref()).collect();
    if decided.iter().any(Option::is_some) {
        rows.extend(DECIDED.iter().map(|fig| row(fig, &decided)));
    }
    Comparison {
        runs: runs
            .iter()
            .zip(speedup)
            .map(|(r, s)| RunCard {
                run: r.label.clone(),
                engine: engine_of(&r.series),
                settings: r.series.settings.clone(),
                elastic_speedup: s,
                scorecard: r.card.clone(),
            })
            .collect(),
        rows,
    }
}

/// Writes the table as Markdown (pastes into a README or an issue as is).
///
/// # Errors
/// When `out` cannot be written.
pub fn write_table(out: &mut impl Write, c: &Comparison) -> io::Result<()> {
    let heads: Vec<&str> = c.runs.iter().map(|r| r.run.as_str()).collect();
    writeln!(out, "| figure | {} |", heads.join(" | "))?;
    writeln!(out, "|---|{}", "---|".repeat(heads.len()))?;
    let cells = |pick: fn(&RunCard) -> Option<&str>| {
        c.runs
            .iter()
            .map(|r| pick(r).unwrap_or("—").replace('|', "\\|"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    writeln!(out, "| engine | {} |", cells(|r| Some(r.engine.as_str())))?;
    if c.runs.iter().any(|r| r.settings.is_some()) {
        writeln!(out, "| settings | {} |", cells(|r| r.settings.as_deref()))?;
    }
    for r in &c.rows {
        // A `|` in a figure's name (∫|depth − target| dt) would end its cell.
        writeln!(
            out,
            "| {} | {} |",
            r.figure.replace('|', "\\|"),
            r.cells.join(" | ")
        )?;
    }
    Ok(())
}

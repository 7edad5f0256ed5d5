//! The overlaid chart of `scorecard compare`: every run's depth on one panel and its consumers on the panel
//! below, on shared axes (one time axis, one depth axis, one count axis), one colour per run, with every run's
//! load changes marked. Runs of the same scenario share their marks; runs of different ones show each.
//! Drawn like [`super::chart`] (steps, legends right of the plots, plain SVG text).

use plotters::prelude::*;

use super::chart::{
    BAND, ChartError, LEGEND_W, LOAD_DOWN, LOAD_UP, Marks, Swatch, err, legend, panel, steps,
};
use super::compare::Run;
use super::series::Direction;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;

/// The runs' colours, in order (matplotlib's tab10 without the marks' grey and cyan), reused past eight.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
];

/// The legend entry of run `label`'s line on the panel `what` (`depth`, `consumers`), as the chart names it.
pub fn legend_name(what: &str, label: &str) -> String {
    // The legend column is 190 px wide: a long path keeps its end, where runs differ.
    let chars: Vec<char> = label.chars().collect();
    let short: String = if chars.len() > 22 {
        std::iter::once('…')
            .chain(chars[chars.len() - 21..].iter().copied())
            .collect()
    } else {
        label.to_string()
    };
    format!("{what}: {short}")
}

/// Renders the overlaid chart of `runs`, `title` on top.
///
/// # Errors
/// When plotters fails to lay the chart out.
pub fn svg(runs: &[Run], title: &str) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
        let (plots, legends) = root.split_horizontally(WIDTH - LEGEND_W);
        let panels = plots.split_evenly((2, 1));
        let legend_areas = legends.split_evenly((2, 1));
        let mut marks = Marks {
            changes: Vec::new(),
            manual: Vec::new(),
        };
        for r in runs {
            let m = Marks::of(&r.series);
            for c in m.changes {
                if !marks.changes.contains(&c) {
                    marks.changes.push(c);
                }
            }
            marks.manual.extend(m.manual);
        }
        let samples = || runs.iter().flat_map(|r| r.series.samples.iter());
        let t_end = samples().map(|x| x.t).fold(1.0, f64::max);
        let target = runs.first().map_or(0, |r| r.series.target);
        let same_target = runs.iter().all(|r| r.series.target == target);
        let depth_top = samples().filter_map(|x| x.depth).max().unwrap_or(0);
        let depth_max = depth_top.max(target) as f64 * 1.1 + 1.0;
        let count_max = samples().map(|x| x.consumers).max().unwrap_or(0) as f64 + 1.0;
        let colour = |i: usize| PALETTE[i % PALETTE.len()];

        let mut c = panel(&panels[0], t_end, depth_max, "messages", None, &marks)?;
        let mut entries: Vec<(String, Swatch)> = Vec::new();
        if same_target && !runs.is_empty() {
            c.draw_series(std::iter::once(Rectangle::new(
                [
                    (0.0, runs[0].series.band_low as f64),
                    (t_end, target as f64),
                ],
                BAND.mix(0.25).filled(),
            )))
            .map_err(err)?;
            entries.push((format!("target band (..{target})"), Swatch::Area(BAND)));
        }
        for (i, r) in runs.iter().enumerate() {
            c.draw_series(LineSeries::new(
                steps(&r.series.samples, |x| x.depth.map(|d| d as f64)),
                colour(i).stroke_width(2),
            ))
            .map_err(err)?;
            entries.push((legend_name("depth", &r.label), Swatch::Line(colour(i))));
        }
        if marks.changes.iter().any(|c| c.1 == Direction::Up) {
            entries.push(("load up".into(), Swatch::Line(LOAD_UP)));
        }
        if marks.changes.iter().any(|c| c.1 == Direction::Down) {
            entries.push(("load down".into(), Swatch::Line(LOAD_DOWN)));
        }
        let borrowed: Vec<(&str, Swatch)> = entries
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone()))
            .collect();
        legend(&legend_areas[0], &borrowed)?;

        let mut c = panel(
            &panels[1],
            t_end,
            count_max,
            "consumers",
            Some("time (s)"),
            &marks,
        )?;
        let mut entries: Vec<(String, Swatch)> = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            c.draw_series(LineSeries::new(
                steps(&r.series.samples, |x| Some(x.consumers as f64)),
                colour(i).stroke_width(2),
            ))
            .map_err(err)?;
            entries.push((legend_name("consumers", &r.label), Swatch::Line(colour(i))));
        }
        let borrowed: Vec<(&str, Swatch)> = entries
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone()))
            .collect();
        legend(&legend_areas[1], &borrowed)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

//! The SVG chart of a run, on one time axis in stacked panels (their units differ too much for one axis):
//! the depth against the target band; the same depth zoomed on the band (under a burst the band is a hairline
//! on the first panel); consumers and remainders; the producer's rate; and, when the series records what the
//! demand is made of (shape, work model, slots), demand against supply: the consumers the load needed
//! (d(t), [`super::demand`]) and those running (s(t)), the gaps shaded as under- and over-provisioning, and
//! the engine's decision when recorded.
//!
//! Depth and counts are drawn as steps: the scorecard holds each sample until the next, so the chart does
//! too. Load changes (up or down) and consumer counts set by hand are marked as vertical lines on every panel,
//! named in the top panel's margin. Legends sit in a column right of the plots, never over a line. Axes whose
//! values are whole numbers are labelled as whole numbers.
//!
//! Drawn with `plotters`' SVG backend only: text is written as SVG `<text>` and laid out by the viewer, so no
//! font library (fontconfig, freetype) is needed to build or run it.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::series::{Direction, Sample, Series};

/// The names of the series as they appear in the chart's legends (a test looks for each).
pub const SERIES_NAMES: [&str; 6] = [
    "depth",
    "target band",
    "depth near the band",
    "consumers",
    "remainders",
    "producer rate",
];

/// The names of the demand panel's series, in its legend (the last only when the decision is recorded).
pub const DEMAND_NAMES: [&str; 5] = [
    "demand d(t)",
    "supply s(t)",
    "under-provisioned",
    "over-provisioned",
    "engine's decision",
];

/// The names of the marks in the legend: a load change up, down, and a consumer count set by hand.
pub const MARK_NAMES: [&str; 3] = ["load up", "load down", "set by hand"];

pub(super) const DEPTH: RGBColor = RGBColor(31, 119, 180);
pub(super) const BAND: RGBColor = RGBColor(44, 160, 44);
const CONSUMERS: RGBColor = RGBColor(214, 39, 40);
const REMAINDERS: RGBColor = RGBColor(148, 103, 189);
const RATE: RGBColor = RGBColor(255, 127, 14);
pub(super) const LOAD_UP: RGBColor = RGBColor(90, 90, 90);
pub(super) const LOAD_DOWN: RGBColor = RGBColor(23, 190, 207);
pub(super) const MANUAL: RGBColor = RGBColor(227, 119, 194);
pub(super) const DEMAND: RGBColor = RGBColor(40, 40, 40);
const OVER: RGBColor = RGBColor(31, 119, 180);
const DECIDED: RGBColor = RGBColor(140, 86, 75);

/// Width of the legend column right of the plots.
pub(super) const LEGEND_W: u32 = 190;
const WIDTH: u32 = 1000;
/// Height of the four panels every chart has; the demand panel adds a fifth of the same height.
const HEIGHT: u32 = 920;

/// Errors drawing the chart: plotters' own, as text (its error type is generic over the backend).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(pub(super) String);

pub(super) fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// An axis label: whole numbers without a decimal point (`2000`, not `2000.0`), others with one decimal.
pub fn label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Sample-and-hold steps of `pick` over the samples (skipping samples where it is `None`).
pub(super) fn steps(s: &[Sample], pick: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    let known: Vec<(f64, f64)> = s.iter().filter_map(|x| Some((x.t, pick(x)?))).collect();
    hold(&known)
}

/// Sample-and-hold steps through `(t, value)` points.
fn hold(known: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts = Vec::with_capacity(known.len() * 2);
    for w in known.windows(2) {
        pts.push(w[0]);
        pts.push((w[1].0, w[0].1));
    }
    if let Some(&l) = known.last() {
        pts.push(l);
    }
    pts
}

/// One legend entry: a colour and how it is drawn.
#[derive(Clone)]
pub(super) enum Swatch {
    Line(RGBColor),
    Area(RGBColor),
}

/// Draws a legend column (entries one under the other) in `area`.
pub(super) fn legend(
    area: &DrawingArea<SVGBackend, Shift>,
    entries: &[(&str, Swatch)],
) -> Result<(), ChartError> {
    for (i, (name, swatch)) in entries.iter().enumerate() {
        let y = 20 + 18 * i as i32;
        match swatch {
            Swatch::Line(c) => area
                .draw(&PathElement::new(vec![(4, y), (24, y)], c.stroke_width(2)))
                .map_err(err)?,
            Swatch::Area(c) => area
                .draw(&Rectangle::new(
                    [(4, y - 5), (24, y + 5)],
                    c.mix(0.4).filled(),
                ))
                .map_err(err)?,
        }
        area.draw(&Text::new(
            name.to_string(),
            (30, y - 6),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The vertical marks every panel carries: load changes and manual events.
pub(super) struct Marks {
    pub(super) changes: Vec<(f64, Direction)>,
    pub(super) manual: Vec<f64>,
}

impl Marks {
    pub(super) fn of(series: &Series) -> Marks {
        // As graded: recorded directions, or those of the series' shape (a watched run, an older file).
        let directions = super::score::directions(series);
        Marks {
            changes: series
                .changes_s
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let d = directions.get(i).copied().unwrap_or(Direction::Up);
                    (c, d)
                })
                .collect(),
            manual: series.manual.iter().map(|m| m.t).collect(),
        }
    }

    /// The legend entries of the marks present.
    pub(super) fn legend(&self) -> Vec<(&'static str, Swatch)> {
        let mut out = Vec::new();
        if self.changes.iter().any(|c| c.1 == Direction::Up) {
            out.push((MARK_NAMES[0], Swatch::Line(LOAD_UP)));
        }
        if self.changes.iter().any(|c| c.1 == Direction::Down) {
            out.push((MARK_NAMES[1], Swatch::Line(LOAD_DOWN)));
        }
        if !self.manual.is_empty() {
            out.push((MARK_NAMES[2], Swatch::Line(MANUAL)));
        }
        out
    }
}

pub(super) type Chart<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Builds one panel's axes on `area` and draws the marks across its height.
pub(super) fn panel<'a>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    t_end: f64,
    y_max: f64,
    y_desc: &str,
    x_desc: Option<&str>,
    marks: &Marks,
) -> Result<Chart<'a>, ChartError> {
    let mut c = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(if x_desc.is_some() { 34 } else { 22 })
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_end, 0.0..y_max)
        .map_err(err)?;
    let mut mesh = c.configure_mesh();
    mesh.y_desc(y_desc)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .light_line_style(WHITE);
    if let Some(x) = x_desc {
        mesh.x_desc(x);
    }
    mesh.draw().map_err(err)?;
    let vline = |t: f64, colour: RGBColor| {
        PathElement::new(vec![(t, 0.0), (t, y_max)], colour.mix(0.8).stroke_width(1))
    };
    for &(t, d) in &marks.changes {
        let colour = match d {
            Direction::Up => LOAD_UP,
            Direction::Down => LOAD_DOWN,
        };
        c.draw_series(std::iter::once(vline(t, colour)))
            .map_err(err)?;
    }
    for &t in &marks.manual {
        c.draw_series(std::iter::once(vline(t, MANUAL)))
            .map_err(err)?;
    }
    Ok(c)
}

/// Renders the chart as an SVG document, `title` on top.
///
/// # Errors
/// When plotters fails to lay the chart out (it should not with finite data).
pub fn svg(series: &Series, title: &str) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let demand = super::score::demand_of(series).filter(|d| d.len() == series.samples.len());
        let n_panels = if demand.is_some() { 5 } else { 4 };
        let height = HEIGHT * n_panels / 4;
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
        let (plots, legends) = root.split_horizontally(WIDTH - LEGEND_W);
        let panels = plots.split_evenly((n_panels as usize, 1));
        let legend_areas = legends.split_evenly((n_panels as usize, 1));
        let s = &series.samples;
        let marks = Marks::of(series);
        let t_end = s.last().map_or(1.0, |x| x.t).max(1.0);
        let depth_top = s.iter().filter_map(|x| x.depth).max().unwrap_or(0);
        let depth_max = depth_top.max(series.target) as f64 * 1.1 + 1.0;
        // The zoomed panel shows twice the target: the band and what happens just around it.
        let zoom_max = (series.target as f64 * 2.0).max(2.0);
        let consumers_max = s
            .iter()
            .map(|x| x.consumers.max(x.remainders))
            .max()
            .unwrap_or(0) as f64
            + 1.0;
        let rate_max = s.iter().map(|x| x.produce_rate).fold(0.0, f64::max) * 1.1 + 1.0;
        let (lo, hi) = (series.band_low as f64, series.target as f64);
        let band_name = format!("target band ({}..{})", series.band_low, series.target);
        let band = |y_max: f64| {
            Rectangle::new(
                [(0.0, lo.min(y_max)), (t_end, hi.min(y_max))],
                BAND.mix(0.25).filled(),
            )
        };

        // Depth and the band, whole range.
        let mut c = panel(&panels[0], t_end, depth_max, "messages", None, &marks)?;
        c.draw_series(std::iter::once(band(depth_max)))
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            steps(s, |x| x.depth.map(|d| d as f64)),
            DEPTH.stroke_width(2),
        ))
        .map_err(err)?;
        let mut entries = vec![
            ("depth", Swatch::Line(DEPTH)),
            (band_name.as_str(), Swatch::Area(BAND)),
        ];
        entries.extend(marks.legend());
        legend(&legend_areas[0], &entries)?;

        // The same, zoomed on the band; a depth above the panel runs along its top edge.
        let mut c = panel(&panels[1], t_end, zoom_max, "messages", None, &marks)?;
        c.draw_series(std::iter::once(band(zoom_max)))
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            steps(s, |x| x.depth.map(|d| (d as f64).min(zoom_max))),
            DEPTH.stroke_width(2),
        ))
        .map_err(err)?;
        legend(
            &legend_areas[1],
            &[
                ("depth near the band", Swatch::Line(DEPTH)),
                (band_name.as_str(), Swatch::Area(BAND)),
            ],
        )?;

        // Consumers and remainders.
        let mut c = panel(&panels[2], t_end, consumers_max, "processes", None, &marks)?;
        c.draw_series(LineSeries::new(
            steps(s, |x| Some(x.consumers as f64)),
            CONSUMERS.stroke_width(2),
        ))
        .map_err(err)?;
        c.draw_series(LineSeries::new(
            steps(s, |x| Some(x.remainders as f64)),
            REMAINDERS.stroke_width(2),
        ))
        .map_err(err)?;
        legend(
            &legend_areas[2],
            &[
                ("consumers", Swatch::Line(CONSUMERS)),
                ("remainders", Swatch::Line(REMAINDERS)),
            ],
        )?;

        // The producer's rate: a measured rate over each interval, so a line between the samples.
        let x_desc = demand.is_none().then_some("time (s)");
        let mut c = panel(&panels[3], t_end, rate_max, "msgs/s", x_desc, &marks)?;
        c.draw_series(LineSeries::new(
            s.iter().map(|x| (x.t, x.produce_rate)),
            RATE.stroke_width(2),
        ))
        .map_err(err)?;
        legend(&legend_areas[3], &[("producer rate", Swatch::Line(RATE))])?;
        if let Some(d) = &demand {
            demand_panel(&panels[4], &legend_areas[4], series, d, t_end, &marks)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Demand against supply, both held from each sample to the next; the gap between them shaded, red where
/// consumers were missing and blue where they idled, as the accuracy metrics weigh it.
fn demand_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    legend_area: &DrawingArea<SVGBackend, Shift>,
    series: &Series,
    demand: &[u64],
    t_end: f64,
    marks: &Marks,
) -> Result<(), ChartError> {
    let s = &series.samples;
    let top = s
        .iter()
        .zip(demand)
        .map(|(x, &d)| {
            (d as f64)
                .max(x.consumers as f64)
                .max(x.decided.unwrap_or(0) as f64)
        })
        .fold(0.0, f64::max)
        + 1.0;
    let mut c = panel(area, t_end, top, "consumers", Some("time (s)"), marks)?;
    let gaps = s.windows(2).zip(demand).filter_map(|(w, &d)| {
        let (d, sup) = (d as f64, w[0].consumers as f64);
        let colour = if d > sup {
            CONSUMERS
        } else if sup > d {
            OVER
        } else {
            return None;
        };
        Some(Rectangle::new(
            [(w[0].t, d), (w[1].t, sup)],
            colour.mix(0.2).filled(),
        ))
    });
    c.draw_series(gaps).map_err(err)?;
    let demand_points: Vec<(f64, f64)> = s
        .iter()
        .zip(demand)
        .map(|(x, &d)| (x.t, d as f64))
        .collect();
    c.draw_series(LineSeries::new(
        hold(&demand_points),
        DEMAND.stroke_width(2),
    ))
    .map_err(err)?;
    c.draw_series(LineSeries::new(
        steps(s, |x| Some(x.consumers as f64)),
        CONSUMERS.stroke_width(2),
    ))
    .map_err(err)?;
    let mut entries = vec![
        (DEMAND_NAMES[0], Swatch::Line(DEMAND)),
        (DEMAND_NAMES[1], Swatch::Line(CONSUMERS)),
        (DEMAND_NAMES[2], Swatch::Area(CONSUMERS)),
        (DEMAND_NAMES[3], Swatch::Area(OVER)),
    ];
    if s.iter().any(|x| x.decided.is_some()) {
        c.draw_series(LineSeries::new(
            steps(s, |x| x.decided.map(|d| d as f64)),
            DECIDED.stroke_width(1),
        ))
        .map_err(err)?;
        entries.push((DEMAND_NAMES[4], Swatch::Line(DECIDED)));
    }
    legend(legend_area, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorecard::series::ManualEvent;

    fn sample(t: f64, depth: u64, consumers: usize) -> Sample {
        Sample {
            t,
            depth: Some(depth),
            consumers,
            remainders: 0,
            produce_rate: 100.0,
            busy_s: None,
            decided: None,
        }
    }

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants()
            .filter_map(|n| n.text())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }

    #[test]
    fn labels_integers_as_integers_and_marks_changes_and_manual_events() {
        assert_eq!(label(&2000.0), "2000");
        assert_eq!(label(&1.0), "1");
        assert_eq!(label(&0.5), "0.5");
        let series = Series {
            policy: None,
            settings: None,
            title: None,
            target: 50,
            band_low: 35,
            shape: None,
            changes_s: vec![2.0, 6.0],
            change_directions: vec![Direction::Up, Direction::Down],
            manual: vec![ManualEvent {
                t: 4.0,
                consumers: 3,
                source: "key +".into(),
            }],
            consumed: 0,
            lost: None,
            work: None,
            consumer_slots: None,
            started_us: None,
            samples: vec![sample(0.0, 0, 1), sample(3.0, 2000, 2), sample(8.0, 10, 3)],
        };
        let svg = svg(&series, "burst: local autoscaler").unwrap();
        let texts = texts(&svg);
        for name in SERIES_NAMES.iter().chain(&MARK_NAMES) {
            assert!(
                texts.iter().any(|t| t.starts_with(name)),
                "{name}: {texts:?}"
            );
        }
        // No axis label reads like 2000.0 or 1.0.
        assert!(
            !texts
                .iter()
                .any(|t| t.ends_with(".0") && t.parse::<f64>().is_ok()),
            "{texts:?}"
        );
        // Depth drawn as steps: from (0 s, 0) flat to 3 s before rising, so the first polyline has a
        // horizontal segment then a vertical one.
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let depth = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .find(|n| n.attribute("stroke") == Some("#1F77B4"))
            .and_then(|n| n.attribute("points"))
            .unwrap()
            .to_string();
        let pts: Vec<(f64, f64)> = depth
            .split_whitespace()
            .filter_map(|p| {
                let (x, y) = p.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect();
        assert!(pts.len() >= 4, "{depth}");
        assert_eq!(pts[0].1, pts[1].1, "flat first: {depth}");
        assert_eq!(pts[1].0, pts[2].0, "then up: {depth}");
    }

    /// The points of the polylines drawn in `stroke` with more than `min` points (legend swatches have 2).
    fn lines_in(svg: &str, stroke: &str, min: usize) -> Vec<Vec<(f64, f64)>> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(stroke))
            .filter_map(|n| n.attribute("points"))
            .map(|p| {
                p.split_whitespace()
                    .filter_map(|p| {
                        let (x, y) = p.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect::<Vec<(f64, f64)>>()
            })
            .filter(|pts| pts.len() > min)
            .collect()
    }

    #[test]
    fn a_series_that_knows_its_demand_gets_a_demand_and_supply_panel() {
        // const:100 × sleep:20ms over 1 slot: a demand of 2 throughout. Supply 1, 3, 2; decided 2, 3, 2.
        let mut samples = vec![sample(0.0, 0, 1), sample(10.0, 0, 3), sample(20.0, 0, 2)];
        for (x, d) in samples.iter_mut().zip([2, 3, 2]) {
            x.decided = Some(d);
        }
        let mut series = Series {
            policy: None,
            settings: None,
            title: None,
            target: 50,
            band_low: 35,
            shape: Some("const:100".into()),
            changes_s: Vec::new(),
            change_directions: Vec::new(),
            manual: Vec::new(),
            consumed: 0,
            lost: None,
            work: Some("sleep:20ms".into()),
            consumer_slots: Some(1),
            started_us: None,
            samples,
        };
        let with = svg(&series, "demand").unwrap();
        let names = texts(&with);
        for name in SERIES_NAMES.iter().chain(&DEMAND_NAMES) {
            assert!(
                names.iter().any(|t| t.starts_with(name)),
                "{name}: {names:?}"
            );
        }
        let doc = roxmltree::Document::parse(&with).unwrap();
        assert_eq!(doc.root_element().attribute("height"), Some("1150"));
        // The demand: one step line, flat (2 throughout), over the whole run: 5 points, one height.
        let demand = lines_in(&with, "#282828", 2);
        assert_eq!(demand.len(), 1, "{demand:?}");
        assert_eq!(demand[0].len(), 5, "{demand:?}");
        assert!(
            demand[0].iter().all(|p| p.1 == demand[0][0].1),
            "{demand:?}"
        );
        // Supply 1 → 3 → 2 is drawn in the consumers' colour on the consumers panel and on this one; the
        // demand panel's is the lower on the page. Its level at 0 s is below the demand's (1 < 2: under),
        // from 10 s above it (3 > 2: over).
        let supply = lines_in(&with, "#D62728", 2);
        assert_eq!(supply.len(), 2, "{supply:?}");
        let here = &supply[1];
        assert!(
            here[0].1 > demand[0][0].1,
            "1 consumer drawn below 2: {here:?}"
        );
        assert!(
            here[2].1 < demand[0][0].1,
            "3 consumers drawn above 2: {here:?}"
        );
        // One shaded gap each way ([0,10): one missing; [10,20): one idle).
        let shaded = |fill: &str| {
            doc.descendants()
                .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(fill))
                .filter(|n| n.attribute("opacity") == Some("0.2"))
                .count()
        };
        assert_eq!((shaded("#D62728"), shaded("#1F77B4")), (1, 1));
        // The decision drawn too.
        assert_eq!(lines_in(&with, "#8C564B", 2).len(), 1);
        // Without the work model there is no demand: four panels, no demand legend.
        series.work = None;
        let without = svg(&series, "no demand").unwrap();
        let names = texts(&without);
        assert!(
            !names.iter().any(|t| DEMAND_NAMES.contains(&t.as_str())),
            "{names:?}"
        );
        let doc = roxmltree::Document::parse(&without).unwrap();
        assert_eq!(doc.root_element().attribute("height"), Some("920"));
    }
}

//! The SVG chart of a run: depth against the target band, consumers (and remainders), and the producer's rate,
//! on one time axis in three stacked panels (their units differ too much for one axis).
//!
//! Drawn with `plotters`' SVG backend only: text is written as SVG `<text>` and laid out by the viewer, so no
//! font library (fontconfig, freetype) is needed to build or run it.

use plotters::prelude::*;

use super::series::{Sample, Series};

/// The names of the series as they appear in the chart's legends (a test looks for each).
pub const SERIES_NAMES: [&str; 5] = [
    "depth",
    "target band",
    "consumers",
    "remainders",
    "producer rate",
];

const DEPTH: RGBColor = RGBColor(31, 119, 180);
const BAND: RGBColor = RGBColor(44, 160, 44);
const CONSUMERS: RGBColor = RGBColor(214, 39, 40);
const REMAINDERS: RGBColor = RGBColor(148, 103, 189);
const RATE: RGBColor = RGBColor(255, 127, 14);

/// Errors drawing the chart: plotters' own, as text (its error type is generic over the backend).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// Renders the chart as an SVG document, `title` on top.
///
/// # Errors
/// When plotters fails to lay the chart out (it should not with finite data).
pub fn svg(series: &Series, title: &str) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
        let panels = root.split_evenly((3, 1));
        let s = &series.samples;
        let t_end = s.last().map_or(1.0, |x| x.t).max(1.0);
        let depth_max = s
            .iter()
            .filter_map(|x| x.depth)
            .max()
            .unwrap_or(0)
            .max(series.target) as f64
            * 1.1
            + 1.0;
        let consumers_max = s
            .iter()
            .map(|x| x.consumers.max(x.remainders))
            .max()
            .unwrap_or(0) as f64
            + 1.0;
        let rate_max = s.iter().map(|x| x.produce_rate).fold(0.0, f64::max) * 1.1 + 1.0;

        // Depth and the band.
        let mut c = ChartBuilder::on(&panels[0])
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..t_end, 0.0..depth_max)
            .map_err(err)?;
        c.configure_mesh()
            .y_desc("messages")
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        let (lo, hi) = (series.band_low as f64, series.target as f64);
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, lo), (t_end, hi)],
            BAND.mix(0.25).filled(),
        )))
        .map_err(err)?
        .label(format!("target band ({lo}..{hi})"))
        .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], BAND.mix(0.5).filled()));
        c.draw_series(LineSeries::new(
            s.iter().filter_map(|x| Some((x.t, x.depth? as f64))),
            DEPTH.stroke_width(2),
        ))
        .map_err(err)?
        .label("depth")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], DEPTH.stroke_width(2)));
        legend(&mut c)?;

        // Consumers and remainders: steps, since counts change at instants.
        let mut c = ChartBuilder::on(&panels[1])
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..t_end, 0.0..consumers_max)
            .map_err(err)?;
        c.configure_mesh()
            .y_desc("processes")
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        for (name, colour, pick) in [
            (
                "consumers",
                CONSUMERS,
                (|x: &Sample| x.consumers) as fn(&Sample) -> usize,
            ),
            ("remainders", REMAINDERS, |x| x.remainders),
        ] {
            let mut pts = Vec::with_capacity(s.len() * 2);
            for w in s.windows(2) {
                pts.push((w[0].t, pick(&w[0]) as f64));
                pts.push((w[1].t, pick(&w[0]) as f64));
            }
            if let Some(l) = s.last() {
                pts.push((l.t, pick(l) as f64));
            }
            c.draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        legend(&mut c)?;

        // The producer's rate.
        let mut c = ChartBuilder::on(&panels[2])
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..t_end, 0.0..rate_max)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("time (s)")
            .y_desc("msgs/s")
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            s.iter().map(|x| (x.t, x.produce_rate)),
            RATE.stroke_width(2),
        ))
        .map_err(err)?
        .label("producer rate")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RATE.stroke_width(2)));
        legend(&mut c)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

fn legend<'a, DB: DrawingBackend + 'a>(
    c: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Result<(), ChartError> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

//! The run's time series, kept for the scorecard: one sample per autoscaler decision (or per second when the
//! consumers follow a manual schedule), and every consumer count set by hand (a key, a schedule step), so that
//! the grading never credits the engine with them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use workload::shape::Shape;

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
    /// Appends a sample, unless one was taken in the same millisecond: a phase change samples at once (the
    /// demo's `enter`), which can fall in the millisecond of the periodic sample, and the series' times must
    /// strictly increase (the elasticity metrics refuse a run otherwise; CI saw `3.301, 3.301`). The first
    /// stays, so that a manual event placed after it still follows every sample before the change.
    pub fn sample(&mut self, sample: Sample) {
        if self.samples.last().is_some_and(|last| sample.t <= last.t) {
            return;
        }
        self.samples.push(sample);
    }

    /// Notes a consumer count set by hand at `t` seconds on the samples' clock.
    ///
    /// The recorder is called in order, so a sample already taken shows the count before this change, even
    /// one taken in the same millisecond (a schedule step is applied just after that second's sample). The
    /// event is put at least 1 ms after the last sample: the grading looks for a manual event after the
    /// sample before a change, and one at that sample's very time would leave the change credited to the
    /// engine.
    pub fn manual(&mut self, t: f64, consumers: usize, source: &str) {
        let after_last = self
            .samples
            .last()
            .map_or(f64::MIN, |s| round_ms(s.t + 0.001));
        self.manual.push(ManualEvent {
            t: round_ms(t).max(after_last),
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
    // A constant rate is the shape const:RATE, so that the run gets its demand (and elasticity figures) too;
    // only --rate 0 (as fast as the queue takes) has no shape.
    let shape = config
        .shape
        .clone()
        .or_else(|| (config.rate > 0.0).then(|| Shape::constant(config.rate)));
    let (changes_s, change_directions) = match &shape {
        Some(shape) => changes_of(shape),
        // --rate 0 (as fast as the queue takes) starts at 0 and never changes.
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
        shape: shape.as_ref().map(ToString::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorecard::series::Direction;

    fn sample(t: f64, consumers: usize) -> Sample {
        Sample {
            t,
            depth: Some(100),
            consumers,
            decided: None,
            remainders: 0,
            produce_rate: 100.0,
            busy_s: None,
        }
    }

    #[test]
    fn a_second_sample_in_the_same_millisecond_is_not_recorded_and_the_run_keeps_its_elasticity() {
        let mut r = Recorder::default();
        for (t, consumers) in [(1.301, 1), (2.302, 2), (3.301, 2), (3.301, 3), (4.302, 2)] {
            r.sample(sample(t, consumers));
        }
        let times: Vec<f64> = r.samples.iter().map(|s| s.t).collect();
        assert_eq!(times, [1.301, 2.302, 3.301, 4.302]);
        assert_eq!(r.samples[2].consumers, 2, "the first of the two stays");
        let series = Series {
            title: None,
            policy: None,
            settings: None,
            target: 50,
            band_low: 35,
            shape: Some("const:100".into()),
            changes_s: Vec::new(),
            change_directions: Vec::new(),
            manual: Vec::new(),
            consumed: 300,
            lost: Some(0),
            work: Some("sleep:25ms".into()),
            consumer_slots: Some(1),
            started_us: None,
            samples: r.samples,
        };
        assert!(scorecard::score(&series).elasticity.is_some());
    }

    /// A schedule step applied in the millisecond of the sample just before it (what the demo's step does)
    /// is not the engine's: the change it makes is graded as no reaction and no flap.
    #[test]
    fn a_manual_change_in_the_millisecond_of_the_sample_before_it_is_not_the_engines() {
        let mut r = Recorder::default();
        r.samples.push(sample(1.0, 3));
        r.samples.push(sample(8.357, 3));
        r.manual(8.357, 1, "schedule");
        r.samples.push(sample(9.385, 1));
        r.samples.push(sample(14.341, 1));
        r.manual(14.341, 4, "schedule");
        r.samples.push(sample(15.341, 4));
        r.samples.push(sample(16.341, 4));
        assert_eq!(r.manual[0].t, 8.358);
        assert_eq!(r.manual[1].t, 14.342);
        // One a while after the last sample keeps its own time.
        let mut later = Recorder::default();
        later.samples.push(sample(1.0, 3));
        later.manual(1.5, 4, "key");
        assert_eq!(later.manual[0].t, 1.5);

        let series = Series {
            title: None,
            policy: None,
            settings: None,
            target: 50,
            band_low: 35,
            shape: None,
            changes_s: vec![0.0],
            change_directions: vec![Direction::Up],
            manual: r.manual,
            consumed: 2000,
            lost: Some(0),
            work: None,
            consumer_slots: None,
            started_us: None,
            samples: r.samples,
        };
        let card = scorecard::score(&series);
        assert_eq!(card.manual_changes, 2);
        assert_eq!(card.direction_changes, 0);
        assert_eq!(card.worst_scale_out_s, None);
    }
}

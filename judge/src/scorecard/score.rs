//! The grading: a pure function from a recorded [`Series`] to a [`Scorecard`], so that anyone holding the
//! series file can recompute every figure.
//!
//! Conventions, the same for every figure:
//! - A sample holds from its own time until the next sample's (sample-and-hold); the last sample only closes
//!   the run. Samples whose depth could not be read count for no depth figure.
//! - "In band" means the depth is at or under the target: the Microscaling engine's own "meeting the target"
//!   test. The band's lower edge (70 % of the target) is where it starts removing consumers; a queue below it
//!   is not a failure, so it counts as in band.
//! - A scale-out is a sample with more consumers than the one before it, a scale-in one with fewer; either is
//!   the engine's only when no manual event (a key, a schedule step) falls between the two samples.
//! - A load increase is graded by its scale-out; a decrease by the scale-in that should follow it (time to the
//!   first removal, time to settle), never by a scale-out.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::elasticity::Elasticity;
use super::series::{Direction, ManualEvent, Sample, Series};

fn up() -> Direction {
    Direction::Up
}

/// How the engine answered one load change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// When the load changed (s from the start).
    pub change_s: f64,
    /// Which way the load moved.
    #[serde(default = "up")]
    pub direction: Direction,
    /// For an increase: seconds from the change to the engine's first scale-out before the next change;
    /// `None` when there was none, and always for a decrease (a scale-out there is not an answer to it).
    pub scale_out_after_s: Option<f64>,
    /// For a decrease: seconds from the change to the engine's first scale-in before the next change.
    #[serde(default)]
    pub scale_in_after_s: Option<f64>,
    /// For a decrease: seconds from the change to the engine's last scale-in before the next change, when
    /// no scale-out followed it (the count then held); `None` when it never scaled in, or went back out.
    #[serde(default)]
    pub settled_after_s: Option<f64>,
    /// Whether the depth went above the target after this change (and before the next).
    pub left_band: bool,
    /// Seconds from the change until the depth was back at or under the target, when it had left the band;
    /// `None` when it never left, or never came back before the next change.
    pub back_in_band_after_s: Option<f64>,
}

/// Every figure of the scorecard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// The scaling policy that ran and its settings, from the series (absent when it does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
    /// Seconds from the first sample to the last.
    pub duration_s: f64,
    pub target: u64,
    pub band_low: u64,
    pub reactions: Vec<Reaction>,
    /// The slowest first scale-out over the changes that had one.
    pub worst_scale_out_s: Option<f64>,
    /// The slowest first scale-in over the decreases that had one.
    #[serde(default)]
    pub worst_scale_in_s: Option<f64>,
    /// The slowest return into the band over the changes that left it and came back.
    pub worst_back_in_band_s: Option<f64>,
    /// Load changes after which the depth left the band and was not back in it by the next change (or the end
    /// of the run): worse than any time back, which [`Scorecard::worst_back_in_band_s`] cannot show.
    #[serde(default)]
    pub never_back_in_band: u64,
    /// The most messages above the target at any sample (0 when it never went above).
    pub peak_overshoot: u64,
    /// ∫|depth − target| dt, in message-seconds.
    pub depth_error_integral: f64,
    /// Share of the time (0..1) the depth was at or under the target.
    pub in_band_share: f64,
    /// Changes of scaling direction (out after in, in after out).
    pub direction_changes: usize,
    /// Direction changes per minute of run.
    pub flaps_per_min: f64,
    /// ∫ consumers dt.
    pub consumer_seconds: f64,
    /// Consumer-seconds spent per 1,000 messages consumed; `None` when nothing was consumed.
    pub consumer_seconds_per_1000: Option<f64>,
    /// Busy slot-seconds ÷ consumer-seconds (0..1 with one slot per consumer); `None` without busy figures.
    pub utilisation: Option<f64>,
    pub max_consumers: usize,
    /// Consumer counts set by hand during the run: their changes are not graded as the engine's.
    #[serde(default)]
    pub manual_changes: usize,
    pub lost: Option<u64>,
    /// Supply against the known demand (SPEC RG's elasticity metrics, [`super::elasticity`]); `None` when the
    /// series lacks the shape, the work model or the consumer's slots.
    #[serde(default)]
    pub elasticity: Option<Elasticity>,
    /// The same figures for the engine's decision (its desired replicas, [`Sample::decided`]) in place of
    /// the consumers running, when the series records it: the engine's own speed, without the platform's
    /// lag in starting and stopping consumers. Its depth figures are the run's; its utilisation is left out
    /// (busy time belongs to consumers that ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Box<Scorecard>>,
}

/// Which way the load moved at each change: as recorded, or, for a series that predates the record (or was
/// watched), worked out from its shape when the shape's changes are the series' changes. Otherwise every
/// change counts as an increase, the only reading the old files supported.
pub(super) fn directions(series: &Series) -> Vec<Direction> {
    if !series.change_directions.is_empty() {
        return series.change_directions.clone();
    }
    series
        .shape
        .as_deref()
        .and_then(|spec| workload::shape::Shape::parse(spec).ok())
        .map(|shape| super::series::changes_of(&shape))
        .filter(|(changes, _)| *changes == series.changes_s)
        .map(|(_, d)| d)
        .unwrap_or_default()
}

/// The demand at each sample of `series` ([`super::demand`]), when it records its shape, work model and
/// consumer slots.
pub fn demand_of(series: &Series) -> Option<Vec<u64>> {
    let shape = workload::shape::Shape::parse(series.shape.as_deref()?).ok()?;
    let work: workload::work::WorkSpec = series.work.as_deref()?.parse().ok()?;
    Some(super::demand::series_demand(
        series,
        &shape,
        &work,
        series.consumer_slots?,
    ))
}

/// The elasticity metrics of `series`, when it says enough to work out its demand.
fn elasticity_of(series: &Series) -> Option<Elasticity> {
    super::elasticity::of_series(series, &demand_of(series)?).ok()
}

/// How the engine moved the consumer count from sample `i - 1` to sample `i`: `Equal` when it did not, or
/// when a manual event in between did it.
fn engine_step(s: &[Sample], manual: &[ManualEvent], i: usize) -> Ordering {
    let by_hand = manual.iter().any(|m| m.t > s[i - 1].t && m.t <= s[i].t);
    if by_hand {
        Ordering::Equal
    } else {
        s[i].consumers.cmp(&s[i - 1].consumers)
    }
}

/// Grades a run. Pure: the same series always gives the same scorecard.
pub fn score(series: &Series) -> Scorecard {
    let s = &series.samples;
    let target = series.target;
    let duration_s = match (s.first(), s.last()) {
        (Some(a), Some(b)) => (b.t - a.t).max(0.0),
        _ => 0.0,
    };
    let mut depth_error_integral = 0.0;
    let mut in_band_time = 0.0;
    let mut depth_time = 0.0;
    let mut consumer_seconds = 0.0;
    for w in s.windows(2) {
        let dt = (w[1].t - w[0].t).max(0.0);
        consumer_seconds += w[0].consumers as f64 * dt;
        if let Some(d) = w[0].depth {
            depth_time += dt;
            depth_error_integral += (d as f64 - target as f64).abs() * dt;
            if d <= target {
                in_band_time += dt;
            }
        }
    }
    let peak_overshoot = s
        .iter()
        .filter_map(|x| x.depth)
        .map(|d| d.saturating_sub(target))
        .max()
        .unwrap_or(0);
    let mut direction_changes = 0;
    let mut last_dir = 0i8;
    for i in 1..s.len() {
        let dir = match engine_step(s, &series.manual, i) {
            Ordering::Greater => 1,
            Ordering::Less => -1,
            Ordering::Equal => continue,
        };
        if last_dir != 0 && dir != last_dir {
            direction_changes += 1;
        }
        last_dir = dir;
    }
    let directions = directions(series);
    let reactions: Vec<Reaction> = series
        .changes_s
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let until = series
                .changes_s
                .get(i + 1)
                .copied()
                .unwrap_or(f64::INFINITY);
            let direction = directions.get(i).copied().unwrap_or(Direction::Up);
            reaction(s, &series.manual, target, (c, direction), until)
        })
        .collect();
    let busy = s.last().and_then(|x| x.busy_s);
    let worst = |f: fn(&Reaction) -> Option<f64>| reactions.iter().filter_map(f).reduce(f64::max);
    Scorecard {
        policy: series.policy.clone(),
        settings: series.settings.clone(),
        duration_s,
        target,
        band_low: series.band_low,
        worst_scale_out_s: worst(|r| r.scale_out_after_s),
        worst_scale_in_s: worst(|r| r.scale_in_after_s),
        worst_back_in_band_s: worst(|r| r.back_in_band_after_s),
        never_back_in_band: reactions
            .iter()
            .filter(|r| r.left_band && r.back_in_band_after_s.is_none())
            .count() as u64,
        reactions,
        peak_overshoot,
        depth_error_integral,
        in_band_share: if depth_time > 0.0 {
            in_band_time / depth_time
        } else {
            0.0
        },
        direction_changes,
        flaps_per_min: if duration_s > 0.0 {
            direction_changes as f64 * 60.0 / duration_s
        } else {
            0.0
        },
        consumer_seconds,
        consumer_seconds_per_1000: (series.consumed > 0)
            .then(|| consumer_seconds * 1000.0 / series.consumed as f64),
        utilisation: busy
            .filter(|_| consumer_seconds > 0.0)
            .map(|b| b / consumer_seconds),
        max_consumers: s.iter().map(|x| x.consumers).max().unwrap_or(0),
        manual_changes: series.manual.len(),
        lost: series.lost,
        elasticity: elasticity_of(series),
        decided: series.as_decided().map(|d| Box::new(score(&d))),
    }
}

/// Rounded to the millisecond, the samples' own resolution (so 10.388 − 10.0 reads 0.388, not 0.38799…).
fn ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// The engine's answer to the change at `change` (which way the load moved), looking only at samples before
/// `until` (the next change).
fn reaction(
    s: &[Sample],
    manual: &[ManualEvent],
    target: u64,
    (change, direction): (f64, Direction),
    until: f64,
) -> Reaction {
    let window = |i: &usize| s[*i].t >= change && s[*i].t < until;
    let steps: Vec<(usize, Ordering)> = (1..s.len())
        .filter(window)
        .map(|i| (i, engine_step(s, manual, i)))
        .filter(|(_, o)| *o != Ordering::Equal)
        .collect();
    let after = |i: usize| ms(s[i].t - change);
    let first = |want: Ordering| {
        steps
            .iter()
            .find(|(_, o)| *o == want)
            .map(|&(i, _)| after(i))
    };
    let (scale_out_after_s, scale_in_after_s, settled_after_s) = match direction {
        Direction::Up => (first(Ordering::Greater), None, None),
        Direction::Down => (
            None,
            first(Ordering::Less),
            steps
                .last()
                .filter(|(_, o)| *o == Ordering::Less)
                .map(|&(i, _)| after(i)),
        ),
    };
    let left = (0..s.len())
        .filter(window)
        .find(|&i| s[i].depth.is_some_and(|d| d > target));
    let back_in_band_after_s = left.and_then(|l| {
        (l + 1..s.len())
            .filter(window)
            .find(|&i| s[i].depth.is_some_and(|d| d <= target))
            .map(|i| ms(s[i].t - change))
    });
    Reaction {
        change_s: change,
        direction,
        scale_out_after_s,
        scale_in_after_s,
        settled_after_s,
        left_band: left.is_some(),
        back_in_band_after_s,
    }
}

#[cfg(test)]
mod tests;

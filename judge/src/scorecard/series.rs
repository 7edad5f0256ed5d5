//! The recorded time series of a run: what the scaling engine saw (queue depth) and did (consumers), with the
//! load it faced. The demo writes one as `series.json`; `scorecard --watch` records one from the outside. The
//! scoring reads nothing else, so a figure can always be recomputed from the file.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workload::shape::Shape;

/// One observation, taken once per interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds from the start of the run (the load shape's zero).
    pub t: f64,
    /// Messages in the queue (ready and in flight), as `Queue::depth` reports it; `None` when it could not be
    /// read this time (the sample then counts for neither the depth figures nor their denominators).
    pub depth: Option<u64>,
    /// Consumer processes running (not counting those draining after SIGTERM): the supply.
    pub consumers: usize,
    /// What the engine decided at that moment (its desired replicas), when recorded apart from the consumers
    /// running (`scorecard watch --decided`); the two differ by the platform's start-up and shut-down lag.
    /// `None` when not recorded, or not read yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<usize>,
    /// Remainder processes running (the spare slots), 0 where there are none.
    #[serde(default)]
    pub remainders: usize,
    /// Messages per second the producers sent over the last interval.
    #[serde(default)]
    pub produce_rate: f64,
    /// Cumulative busy slot-seconds over every consumer so far (the consumers' `busy_s`), when they report it.
    #[serde(default)]
    pub busy_s: Option<f64>,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// What ran, for the chart's title: the scenario and the engine (`burst: local autoscaler target=50,…`).
    #[serde(default)]
    pub title: Option<String>,
    /// The scaling policy that ran (`microscaling`, `keda`), when the run says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its every setting, as `demo --autoscale` takes them (`policy=keda,target=50,…,polling=30s,…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
    /// The depth the engine aims for: above it, it adds a consumer.
    pub target: u64,
    /// The depth below which it removes one (Microscaling's 70 % of the target). Shown as the lower edge of
    /// the target band on the chart.
    pub band_low: u64,
    /// The load shape's spec, for the record.
    #[serde(default)]
    pub shape: Option<String>,
    /// Offsets (s) where the load changes: the moments the engine must react to (`Shape::changes`).
    #[serde(default)]
    pub changes_s: Vec<f64>,
    /// Whether the load went up or down at each of `changes_s` (same order). A decrease is graded by the
    /// scale-in that should follow it, an increase by the scale-out. Missing (older files): all count as up.
    #[serde(default)]
    pub change_directions: Vec<Direction>,
    /// Consumer counts set by hand (the demo's `+` and `-` keys, or a manual schedule's steps): these changes
    /// are not the engine's, so the grading never credits it with them, and the chart marks them.
    #[serde(default)]
    pub manual: Vec<ManualEvent>,
    /// Messages consumed in the run (the audit's count, or the shape's integral when watched from outside).
    #[serde(default)]
    pub consumed: u64,
    /// Messages lost, from the audit; `None` when the run was not audited.
    #[serde(default)]
    pub lost: Option<u64>,
    /// The work model per message (`--work`), for the demand the elasticity metrics grade against; `None`
    /// when unknown (a watched run, or an older file): no elasticity figures then.
    #[serde(default)]
    pub work: Option<String>,
    /// Messages one consumer works on at once (its `--max-in-flight`), for the demand likewise.
    #[serde(default)]
    pub consumer_slots: Option<usize>,
    /// When the recording started (the samples' zero), µs since the epoch: to line the run up with other
    /// records of it (logs, the engine's events). Recorded by `scorecard watch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_us: Option<u64>,
    pub samples: Vec<Sample>,
}

impl Series {
    /// The series with the engine's decision as its consumer count, from the first sample that recorded one
    /// (each later sample without one holds the last decision read); `None` when no sample recorded one.
    pub fn as_decided(&self) -> Option<Series> {
        let first = self.samples.iter().position(|s| s.decided.is_some())?;
        let mut out = self.clone();
        let mut last = 0;
        out.samples = self.samples[first..]
            .iter()
            .map(|s| {
                last = s.decided.unwrap_or(last);
                Sample {
                    consumers: last,
                    busy_s: None,
                    decided: None,
                    ..s.clone()
                }
            })
            .collect();
        Some(out)
    }
}

/// Which way the load moved at a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// A consumer count set by hand rather than by the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManualEvent {
    /// Seconds from the start of the run, on the samples' clock.
    pub t: f64,
    /// The consumer count asked for.
    pub consumers: usize,
    /// What did it, for the chart and the record: `key +`, `key -`, `schedule`.
    pub source: String,
}

/// The moments a shape's load changes and which way it moves at each: the load over the second after the
/// change (bursts included, as the messages they add) against the rate just before it.
pub fn changes_of(shape: &Shape) -> (Vec<f64>, Vec<Direction>) {
    let changes: Vec<f64> = shape.changes().iter().map(Duration::as_secs_f64).collect();
    let directions = changes
        .iter()
        .map(|&c| {
            // Just before the change; nothing before the run's start.
            let before = if c > 0.0 {
                shape.rate_at_secs(c - 1e-3)
            } else {
                0.0
            };
            let after = shape.sent_by_secs(c + 1.0) - shape.sent_by_secs((c - 1e-6).max(0.0));
            if after < before {
                Direction::Down
            } else {
                Direction::Up
            }
        })
        .collect();
    (changes, directions)
}

/// The Microscaling engine's scale-in threshold: 70 % of the target depth (its
/// `queueLengthExceedingPercent`), rounded down.
pub fn band_low(target: u64) -> u64 {
    target * 7 / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_down_is_a_decrease_and_a_burst_an_increase() {
        let shape = Shape::parse("step:50,200@10s,40@20s").unwrap();
        assert_eq!(
            changes_of(&shape),
            (vec![10.0, 20.0], vec![Direction::Up, Direction::Down])
        );
        let shape = Shape::parse("const:20+burst:2000@10s").unwrap();
        assert_eq!(changes_of(&shape).1.last(), Some(&Direction::Up));
    }
}

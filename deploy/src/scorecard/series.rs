//! The recorded time series of a run: what the scaling engine saw (queue depth) and did (consumers), with the
//! load it faced. The demo writes one as `series.json`; `scorecard --watch` records one from the outside. The
//! scoring reads nothing else, so a figure can always be recomputed from the file.

use serde::{Deserialize, Serialize};

/// One observation, taken once per interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds from the start of the run (the load shape's zero).
    pub t: f64,
    /// Messages in the queue (ready and in flight), as `Queue::depth` reports it; `None` when it could not be
    /// read this time (the sample then counts for neither the depth figures nor their denominators).
    pub depth: Option<u64>,
    /// Consumer processes running (not counting those draining after SIGTERM).
    pub consumers: usize,
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
    /// Messages consumed in the run (the audit's count, or the shape's integral when watched from outside).
    #[serde(default)]
    pub consumed: u64,
    /// Messages lost, from the audit; `None` when the run was not audited.
    #[serde(default)]
    pub lost: Option<u64>,
    pub samples: Vec<Sample>,
}

/// The Microscaling engine's scale-in threshold: 70 % of the target depth (its
/// `queueLengthExceedingPercent`), rounded down.
pub fn band_low(target: u64) -> u64 {
    target * 7 / 10
}

//! What the demo measures: the figures of a progress tick, the time series for the scorecard (manual changes
//! included), the producer's stdout kept for `audit`, and the final summary.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use workload::contract::{self, Stats};

use super::{Demo, PRODUCER_OUT};
use crate::audit::{self, Audit};
use crate::demo::child::{ChildProc, Role};
use crate::demo::console::Figures;
use crate::demo::record::round_ms;
use crate::demo::report::{E2e, Files, Summary};
use crate::scorecard::Sample;

impl Demo<'_> {
    /// The figures of a progress tick, from the children's latest interval lines.
    pub(super) fn figures(&self) -> Figures {
        let live = |c: &&ChildProc| !c.has_exited();
        let producer = |c: &ChildProc| c.latest.as_ref().and_then(Stats::producer).cloned();
        let consumer = |c: &ChildProc| c.latest.as_ref().and_then(Stats::consumer).cloned();
        let remainder = |c: &ChildProc| c.latest.as_ref().and_then(Stats::remainder).cloned();
        let consumers = || {
            self.children
                .iter()
                .filter(live)
                .filter(|c| matches!(c.role, Role::Consumer(_)))
        };
        let of_role = |role: Role| self.children.iter().filter(live).find(|c| c.role == role);
        Figures {
            elapsed: self.started.elapsed(),
            phase: self.phase,
            depth: self.depth,
            produce_rate: of_role(Role::Producer)
                .and_then(producer)
                .map_or(0.0, |p| p.rate),
            // A fold from 0.0, not sum(): the sum of no f64 is -0.0, which would print as "-0".
            consume_rate: (consumers()
                .map(|c| consumer(c).map_or(0.0, |l| l.rate))
                .fold(0.0, |a, b| a + b)
                * 10.0)
                .round()
                / 10.0,
            consumers: consumers().filter(|c| c.is_running()).count(),
            // A consumer that acked nothing in its last interval reports 0: no figure, not a 0 µs latency.
            e2e_p99_us: consumers()
                .filter_map(|c| consumer(c).map(|l| l.e2e_p99_us))
                .filter(|&us| us > 0)
                .max(),
            remainder_units_per_s: self.config.remainder_threads.map(|_| {
                self.children
                    .iter()
                    .filter(live)
                    .filter(|c| matches!(c.role, Role::Remainder(_)))
                    .map(|c| remainder(c).map_or(0.0, |l| l.units_per_s))
                    .fold(0.0, |a, b| a + b)
            }),
        }
    }

    /// Appends one sample of the time series: the depth just read, the processes running now, the producer's
    /// and the consumers' latest figures.
    pub(super) fn record(&mut self, f: &Figures) {
        let running = |want: fn(&Role) -> bool| {
            self.children
                .iter()
                .filter(|c| want(&c.role) && c.is_running())
                .count()
        };
        let consumers = running(|r| matches!(r, Role::Consumer(_)));
        let remainders = running(|r| matches!(r, Role::Remainder(_)));
        // Every consumer's busy time so far, the finished ones' included (their summary has the final figure).
        let busy: Vec<f64> = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Consumer(_)))
            .filter_map(|c| c.summary.as_ref().or(c.latest.as_ref()))
            .filter_map(|s| s.consumer().map(|l| l.busy_s))
            .collect();
        let t = self.series_t();
        self.recorder.sample(Sample {
            t,
            depth: f.depth.map(|d| d.total()),
            consumers,
            remainders,
            produce_rate: f.produce_rate,
            busy_s: (!busy.is_empty()).then(|| busy.iter().sum()),
            // The demo's own autoscaler starts its consumers at once: what runs is what it decided.
            decided: None,
        });
    }

    /// Phase 5: the audit and the figures of the report.
    pub(super) async fn summarise(&mut self, stop_reason: String) -> anyhow::Result<Summary> {
        self.refresh_depth().await;
        let producer = self
            .children
            .iter()
            .find(|c| c.role == Role::Producer)
            .context("the demo has no producer")?;
        let lines = [&producer.latest, &producer.summary]
            .into_iter()
            .flatten()
            .map(Stats::to_json);
        let (records, warnings) = audit::records_from_lines("producer", lines)
            .context("cannot audit: the producer reported nothing")?;
        let mut audit = Audit::new(records);
        for c in &self.children {
            // A consumer killed before it opened its ledger acked nothing: no file is right.
            if let Some(ledger) = c.ledger.as_deref().filter(|p| Path::exists(p)) {
                audit.add_ledger(ledger)?;
            }
        }
        let mut report = audit.report();
        report.warnings.splice(0..0, warnings);
        let consumers: Vec<&ChildProc> = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Consumer(_)))
            .collect();
        // Over every remainder: units add up; units per second are per remainder, so they add up too only
        // while they ran together — the total over the run's length is the honest figure.
        let summaries: Vec<&contract::Remainder> = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Remainder(_)))
            .filter_map(|c| c.summary.as_ref().and_then(Stats::remainder))
            .collect();
        let remainder = match summaries.as_slice() {
            [] => None,
            [one] => Some((one.units, one.units_per_s)),
            many => {
                let units: u64 = many.iter().map(|s| s.units).sum();
                Some((
                    units,
                    units as f64 / self.started.elapsed().as_secs_f64().max(1e-3),
                ))
            }
        };
        Ok(Summary {
            audit: report,
            e2e: E2e::merge(
                consumers
                    .iter()
                    .filter_map(|c| c.summary.as_ref().and_then(Stats::consumer)),
            ),
            consumers_without_summary: consumers.iter().filter(|c| c.summary.is_none()).count(),
            duration: self.launched.elapsed(),
            consumers_max: self.consumers_max,
            left_in_queue: self.depth.map(|d| d.total()),
            stopped_early: self.shutdown.is_requested(),
            undrained: self.undrained,
            stop_reason,
            remainder,
            files: Files::Removed,
            warnings: std::mem::take(&mut self.warnings),
            json_failed: None,
        })
    }

    /// Seconds since the producer started: the series' clock.
    pub(super) fn series_t(&self) -> f64 {
        round_ms(self.producer_started.elapsed().as_secs_f64())
    }

    /// Appends a producer stats line to the demo directory's copy of its stdout.
    pub(super) fn copy_producer_line(&mut self, line: &str) {
        let Some(f) = self.producer_out.as_mut() else {
            return;
        };
        if let Err(e) = writeln!(f, "{line}") {
            self.producer_out = None;
            self.warn(format!(
                "cannot write {PRODUCER_OUT} ({e}): a kept directory will not re-audit"
            ));
        }
    }

    /// Records a consumer count set by a key: not the engine's doing. Under the autoscaler it says so on the
    /// screen, since the autoscaler carries on from the new count.
    pub(super) fn by_hand(&mut self, source: &str) {
        self.recorder.manual(self.series_t(), self.target, source);
        if self.config.autoscale.is_some() {
            let msg = format!(
                "{source}: consumers set by hand to {} (recorded as manual, not graded)",
                self.target
            );
            self.console.note(&msg);
        }
    }
}

//! The demo's result: the audit of the run, the end-to-end latency over every consumer, and how it is shown
//! (one `summary` JSON line on stdout, a short report on stderr).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::stats::{Kind, Line};
use serde_json::Value;

use super::console::format_us;
use crate::audit;

/// End-to-end latency over all consumers, merged from their summary lines.
///
/// A consumer reports only its own p50/p99/max, not its histogram, so the fleet's percentiles cannot be
/// computed exactly. The merge takes the highest of the consumers' figures, which is a true upper bound: if no
/// consumer has more than 1 % of its messages above X, the fleet has no more than 1 % above X either. A
/// weighted average of percentiles would look more precise but is not a percentile of anything and can hide a
/// slow consumer. With one consumer the figures are exact; `max` is always exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E2e {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Consumers whose summary was merged.
    pub merged: usize,
}

impl E2e {
    /// Merges consumers' summary lines; consumers that acked nothing have no latency and are skipped.
    pub fn merge<'a>(summaries: impl IntoIterator<Item = &'a Value>) -> E2e {
        let mut e = E2e::default();
        for s in summaries {
            if s["acked"].as_u64().unwrap_or(0) == 0 {
                continue;
            }
            let f = |name: &str| s[name].as_u64().unwrap_or(0);
            e.p50_us = e.p50_us.max(f("e2e_p50_us"));
            e.p99_us = e.p99_us.max(f("e2e_p99_us"));
            e.max_us = e.max_us.max(f("e2e_max_us"));
            e.merged += 1;
        }
        e
    }
}

/// Where the demo's files went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Files {
    Kept(PathBuf),
    Removed,
}

/// Everything the demo reports at the end.
#[derive(Clone, Debug)]
pub struct Summary {
    pub audit: audit::Report,
    pub e2e: E2e,
    /// Consumers that ran but left no summary (killed): their latency is missing from `e2e`.
    pub consumers_without_summary: usize,
    pub duration: Duration,
    pub consumers_max: usize,
    /// Messages still in the queue at the end (a drain cut short), when the queue could be read.
    pub left_in_queue: Option<u64>,
    /// Why the demo stopped, for people: "after 20s", "on request".
    pub stop_reason: String,
    /// The remainder's total units and units per second, when it ran and reported.
    pub remainder: Option<(u64, f64)>,
    pub files: Files,
    /// What went wrong along the way without failing the demo (a child that had to be killed, ...), already
    /// shown live when it happened.
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn lost(&self) -> u64 {
        self.audit.totals.lost
    }

    /// Writes the `summary` JSON line on stdout.
    pub fn emit(&self, started: Instant) {
        let t = &self.audit.totals;
        Line::new("demo", Kind::Summary, started)
            .field("produced", t.produced)
            .field("consumed", t.consumed)
            .field("lost", t.lost)
            .field("duplicates", t.duplicates)
            .field("poison", t.poison)
            .field("e2e_p50_us", self.e2e.p50_us)
            .field("e2e_p99_us", self.e2e.p99_us)
            .field("e2e_max_us", self.e2e.max_us)
            .field(
                "duration_s",
                (self.duration.as_secs_f64() * 1000.0).round() / 1000.0,
            )
            .field("consumers_max", self.consumers_max)
            .field("unexpected", t.unexpected)
            .field("left_in_queue", self.left_in_queue)
            .emit();
    }

    /// Writes the report for people.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn write_report(&self, out: &mut impl Write) -> io::Result<()> {
        let t = &self.audit.totals;
        let secs = self.duration.as_secs_f64();
        writeln!(
            out,
            "demo finished {} ({secs:.1}s in all)",
            self.stop_reason
        )?;
        writeln!(out, "  produced   {} messages", t.produced)?;
        writeln!(
            out,
            "  consumed   {} (lost {}, duplicates {})",
            t.consumed, t.lost, t.duplicates
        )?;
        if t.poison > 0 {
            writeln!(
                out,
                "  poison     {} (set aside after --max-deliveries: in the ledgers, not lost)",
                t.poison
            )?;
        }
        if self.e2e.merged > 0 {
            let bound = if self.e2e.merged > 1 { "≤ " } else { "" };
            writeln!(
                out,
                "  latency    end to end p50 {bound}{}, p99 {bound}{}, max {}{}",
                format_us(self.e2e.p50_us),
                format_us(self.e2e.p99_us),
                format_us(self.e2e.max_us),
                if self.e2e.merged > 1 {
                    " (p50/p99: the highest of the consumers' own)"
                } else {
                    ""
                }
            )?;
        }
        let remainder = match self.remainder {
            Some((units, per_s)) => format!("; remainder did {units} units ({per_s:.0}/s)"),
            None => String::new(),
        };
        writeln!(
            out,
            "  consumers  {} at most{remainder}",
            self.consumers_max
        )?;
        match &self.files {
            Files::Kept(dir) => writeln!(
                out,
                "  files      {} (queue.db, ledgers/, logs/)",
                dir.display()
            )?,
            Files::Removed => writeln!(out, "  files      removed (--keep keeps them)")?,
        }
        // The demo's own warnings were shown as they happened, just above; the audit's are news.
        for w in &self.audit.warnings {
            writeln!(out, "warning: {w}")?;
        }
        if self.consumers_without_summary > 0 {
            writeln!(
                out,
                "warning: {} consumer(s) left no summary; their latency is not included",
                self.consumers_without_summary
            )?;
        }
        if t.lost == 0 {
            writeln!(out, "OK: every message the queue confirmed was consumed")?;
        } else {
            let left = match self.left_in_queue {
                Some(n) if n > 0 => {
                    format!(" ({n} were still in the queue: the drain was cut short)")
                }
                _ => String::new(),
            };
            writeln!(out, "LOST {} message(s){left}; the audit:", t.lost)?;
            self.audit.write_table(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn latency_merges_to_the_highest_of_consumers_that_acked() {
        let a = json!({"acked": 10, "e2e_p50_us": 100, "e2e_p99_us": 900, "e2e_max_us": 1000});
        let b = json!({"acked": 5, "e2e_p50_us": 300, "e2e_p99_us": 400, "e2e_max_us": 5000});
        let idle = json!({"acked": 0, "e2e_p50_us": 0, "e2e_p99_us": 0, "e2e_max_us": 0});
        assert_eq!(
            E2e::merge([&a, &b, &idle]),
            E2e {
                p50_us: 300,
                p99_us: 900,
                max_us: 5000,
                merged: 2
            }
        );
        assert_eq!(E2e::merge([]), E2e::default());
    }
}

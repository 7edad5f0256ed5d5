//! The demo's result: the audit of the run, the end-to-end latency over every consumer, and how it is shown
//! (one `summary` JSON line on stdout, a short report on stderr).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use workload::contract::{self, Head, Kind};

use super::Config;
use super::console::format_us;
use super::supervisor::PRODUCER_OUT;
use crate::audit;

/// The first line the demo prints: what runs, as the children are actually told (the work the producer
/// stamps wins over the consumers' own; under the autoscaler, remainders fill the spare slots).
pub fn header(config: &Config, dir: &Path) -> String {
    let load = match &config.shape {
        Some(shape) => format!("shape {shape}"),
        // The producer's --rate 0: no pacing at all.
        None if config.rate <= 0.0 => "as fast as the queue accepts".to_string(),
        None => format!("{} msgs/s", config.rate),
    };
    let consumers = match &config.autoscale {
        Some(a) => format!("autoscaled ({a})"),
        None => config.consumers.to_string(),
    };
    let work = match &config.stamp_work {
        Some(w) => format!("{} (stamped by the producer)", compact_spec(w)),
        None => compact_spec(&config.work.to_string()),
    };
    let remainder = match (config.remainder_threads, &config.autoscale) {
        (None, _) => "no remainder".to_string(),
        (Some(_), Some(a)) => format!(
            "remainders in the spare slots ({} slots - consumers, up to {})",
            a.slots,
            a.remainders(a.min)
        ),
        (Some(n), None) => format!("remainder with {n} thread(s)"),
    };
    let queue = match &config.queue {
        Some(q) => format!("; queue {}", q.shown),
        None => String::new(),
    };
    format!(
        "demo: producer at {load} for {}; consumers {consumers}; work {work}; {remainder}; files in {}{queue}",
        humantime::format_duration(config.duration),
        dir.display()
    )
}

/// A work spec with every duration in it written compactly: `sleep:exp(20ms,max=82.4ms)` rather than
/// `sleep:exp(20ms,max=82ms 436us 64ns)`. For people only: the children are given the exact spec.
pub fn compact_spec(spec: &str) -> String {
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match workload::cli::parse_duration(token.trim()) {
            Ok(d) if token.chars().any(|c| c.is_ascii_alphabetic()) => {
                out.push_str(&compact_duration(d))
            }
            _ => out.push_str(token),
        }
        token.clear();
    };
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        // `..` separates uniform's bounds; a single `.` is a decimal point.
        let range = c == '.' && chars.peek() == Some(&'.');
        if matches!(c, '(' | ')' | ',' | '=' | ':') || range {
            flush(&mut token, &mut out);
            out.push(c);
            if range {
                out.push('.');
                chars.next();
            }
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// A duration in at most three significant figures and one unit: `82.4ms`, `20ms`, `1.5s`, `850µs`.
pub fn compact_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let text = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

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
    pub fn merge<'a>(summaries: impl IntoIterator<Item = &'a contract::Consumer>) -> E2e {
        let mut e = E2e::default();
        for s in summaries {
            if s.acked == 0 {
                continue;
            }
            e.p50_us = e.p50_us.max(s.e2e_p50_us);
            e.p99_us = e.p99_us.max(s.e2e_p99_us);
            e.max_us = e.max_us.max(s.e2e_max_us);
            e.merged += 1;
        }
        e
    }
}

/// What a kept directory holds, as found there: e.g. `ledgers/, logs/, producer.jsonl, queue.db` (the queue's
/// own files appear when the queue is local; the demo does not name them, its backend does).
fn contents(dir: &Path) -> String {
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    present.sort();
    if present.is_empty() {
        "empty".into()
    } else {
        present.join(", ")
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
    /// Whether the user (a key or a signal) stopped the demo before its end: what is left in the queue then
    /// is not a failure.
    pub stopped_early: bool,
    /// The drain ran out of `--drain-timeout`.
    pub undrained: bool,
    /// Why the demo stopped, for people: "after 20s", "on request".
    pub stop_reason: String,
    /// The remainder's total units and units per second, when it ran and reported.
    pub remainder: Option<(u64, f64)>,
    pub files: Files,
    /// What went wrong along the way without failing the demo (a child that had to be killed, ...), already
    /// shown live when it happened.
    pub warnings: Vec<String>,
    /// Why the JSON lines (stdout or `--json`) could not all be written, when they could not.
    pub json_failed: Option<String>,
}

/// What an unexpected ledger entry is, in the report's words (its line and the verdict).
const UNEXPECTED: &str = "for messages the producer never confirmed sending";

impl Summary {
    /// Messages really lost: the audit's unconsumed messages, less those still in the queue (they are not
    /// lost: they wait in the queue). Without a depth reading, every unconsumed message counts as lost.
    pub fn lost(&self) -> u64 {
        self.audit
            .totals
            .lost
            .saturating_sub(self.left_in_queue.unwrap_or(0))
    }

    /// Messages left in the queue at the end, 0 when it could not be read.
    pub fn left(&self) -> u64 {
        self.left_in_queue.unwrap_or(0).min(self.audit.totals.lost)
    }

    /// Whether the demo did what it promised: nothing lost, and the queue drained unless the user stopped it
    /// early. Unexpected ledger entries do not fail it, as they do not fail `audit` (exit 0 unless messages
    /// were lost): the report says them instead.
    pub fn succeeded(&self) -> bool {
        self.lost() == 0
            && self.json_failed.is_none()
            && (self.stopped_early || (self.left() == 0 && !self.drain_unknown()))
    }

    /// What an OK verdict adds when the ledgers hold unexpected entries, so that such a run does not read as
    /// clean. It stays OK (exit 0) as the `audit` binary's verdict does: they are not lost messages, but
    /// someone else's, or sends the producer never saw confirmed.
    fn unexpected_verdict(&self) -> String {
        match self.audit.totals.unexpected {
            0 => String::new(),
            n => format!(", but {n} ledger entr(ies) are UNEXPECTED: {UNEXPECTED}"),
        }
    }

    /// The drain ran out of time and the queue could not be read at the end: whether anything is left is
    /// unknown, which is not a success (a broker that cannot be reached looks like this).
    fn drain_unknown(&self) -> bool {
        self.undrained && !self.stopped_early && self.left_in_queue.is_none()
    }

    /// The `summary` JSON line.
    pub fn line(&self, started: Instant) -> contract::DemoSummary {
        let t = &self.audit.totals;
        contract::DemoSummary {
            head: Head::new("demo", Kind::Summary, started),
            produced: t.produced,
            consumed: t.consumed,
            lost: self.lost(),
            duplicates: t.duplicates,
            poison: t.poison,
            e2e_p50_us: self.e2e.p50_us,
            e2e_p99_us: self.e2e.p99_us,
            e2e_max_us: self.e2e.max_us,
            duration_s: contract::round3(self.duration.as_secs_f64()),
            consumers_max: self.consumers_max as u64,
            unexpected: t.unexpected,
            left_in_queue: self.left_in_queue,
        }
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
        // Unexpected entries only when there are any: a demo's own run has none unless something else wrote
        // to its queue, and a zero would only lengthen the line.
        let unexpected = if t.unexpected > 0 {
            format!(", unexpected {}", t.unexpected)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  consumed   {} (lost {}, duplicates {}{unexpected})",
            t.consumed,
            self.lost(),
            t.duplicates
        )?;
        if self.left() > 0 {
            writeln!(
                out,
                "  left       {} in the queue ({})",
                self.left(),
                if self.stopped_early {
                    "stopped early on request: not lost"
                } else {
                    "the drain timed out"
                }
            )?;
        }
        if t.poison > 0 {
            writeln!(
                out,
                "  poison     {} (set aside after --max-deliveries: in the ledgers, not lost)",
                t.poison
            )?;
        }
        if t.unexpected > 0 {
            writeln!(
                out,
                "  unexpected {} ledger entr(ies) {UNEXPECTED} (another run's messages in the queue, or sends \
                 never confirmed): not counted as consumed",
                t.unexpected
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
            Files::Kept(dir) => {
                writeln!(out, "  files      {} ({})", dir.display(), contents(dir))?;
                writeln!(
                    out,
                    "  re-audit   {} --producer {} --ledger {}",
                    audit_command(),
                    dir.join(PRODUCER_OUT).display(),
                    dir.join("ledgers").display()
                )?;
                // The audit sees only what was sent and what was consumed: it cannot tell a message waiting in
                // the queue from a lost one, so its `lost` includes them. Say so before a user reads it as loss.
                if self.left() > 0 {
                    writeln!(
                        out,
                        "             (its lost count includes the {} message(s) still in the queue: never consumed, not lost)",
                        self.left(),
                    )?;
                }
            }
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
        if self.lost() > 0 {
            writeln!(out, "LOST {} message(s); the audit:", self.lost())?;
            self.audit.write_table(out)?;
        } else if let Some(why) = &self.json_failed {
            writeln!(
                out,
                "FAILED: nothing lost, but the report is incomplete: {why}"
            )?;
        } else if self.drain_unknown() {
            writeln!(
                out,
                "FAILED: the queue did not drain within --drain-timeout and its depth could not be read (the warnings above say why)"
            )?;
        } else if self.left() == 0 {
            writeln!(
                out,
                "OK: every message the queue confirmed was consumed{}",
                self.unexpected_verdict()
            )?;
        } else if self.stopped_early {
            writeln!(
                out,
                "OK: nothing lost; {} message(s) left in the queue when you stopped the demo early{}",
                self.left(),
                self.unexpected_verdict()
            )?;
        } else {
            writeln!(
                out,
                "FAILED: {} message(s) left in the queue: it did not drain within --drain-timeout",
                self.left()
            )?;
        }
        Ok(())
    }
}

/// The audit as a command that runs as shown: the `audit` beside this demo (`target/release/audit` after the
/// README's build, which puts nothing on PATH), or plain `audit` when it is not there.
fn audit_command() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("audit")))
        .filter(|audit| audit.is_file())
        .map_or_else(|| "audit".to_string(), |audit| audit.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_specs_and_durations_print_compactly() {
        assert_eq!(
            compact_spec("sleep:exp(20ms,max=82ms 436us 64ns)"),
            "sleep:exp(20ms,max=82.4ms)"
        );
        assert_eq!(
            compact_spec("cpu:lognormal(5ms,1.0,max=1s 500ms)"),
            "cpu:lognormal(5ms,1.0,max=1.5s)"
        );
        assert_eq!(
            compact_spec("sleep:uniform(100ms..500ms,max=500ms)"),
            "sleep:uniform(100ms..500ms,max=500ms)"
        );
        assert_eq!(compact_spec("sleep:25ms"), "sleep:25ms");
        assert_eq!(compact_spec("none"), "none");
        assert_eq!(compact_duration(Duration::from_micros(850)), "850µs");
    }

    #[test]
    fn the_header_says_an_unpaced_producer_is_unpaced() {
        use clap::Parser;
        let config = |args: &[&str]| {
            let args = [&["demo"], args].concat();
            crate::demo::Config::from_args(crate::demo::Args::parse_from(args)).unwrap()
        };
        let dir = Path::new("/tmp/d");
        let h = header(&config(&["--rate", "0"]), dir);
        assert!(
            h.starts_with("demo: producer at as fast as the queue accepts for "),
            "{h}"
        );
        let h = header(&config(&["--rate", "20"]), dir);
        assert!(h.starts_with("demo: producer at 20 msgs/s for "), "{h}");
    }

    /// A finished run's summary with these audit totals: drained, nothing left, files removed.
    fn summary(totals: audit::Totals) -> Summary {
        Summary {
            audit: audit::Report {
                producers: Vec::new(),
                totals,
                warnings: Vec::new(),
            },
            e2e: E2e::default(),
            consumers_without_summary: 0,
            duration: Duration::from_secs(5),
            consumers_max: 2,
            left_in_queue: Some(0),
            stopped_early: false,
            undrained: false,
            stop_reason: "after its 5s run".into(),
            remainder: None,
            files: Files::Removed,
            warnings: Vec::new(),
            json_failed: None,
        }
    }

    fn report(s: &Summary) -> String {
        let mut out = Vec::new();
        s.write_report(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn unexpected_ledger_entries_are_reported_and_keep_the_audits_exit_status() {
        let totals = audit::Totals {
            produced: 100,
            consumed: 100,
            ledger_entries: 107,
            unexpected: 7,
            ..audit::Totals::default()
        };
        let s = summary(totals);
        let text = report(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"  consumed   100 (lost 0, duplicates 0, unexpected 7)"),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(
                "  unexpected 7 ledger entr(ies) for messages the producer never confirmed sending"
            )),
            "{text}"
        );
        assert_eq!(
            lines.last(),
            Some(
                &"OK: every message the queue confirmed was consumed, but 7 ledger entr(ies) are UNEXPECTED: \
                  for messages the producer never confirmed sending"
            ),
            "{text}"
        );
        // `audit` exits 0 when nothing is lost, unexpected entries or not: so does the demo.
        assert!(s.succeeded());

        // Stopped early with messages left: the verdict says both.
        let mut early = summary(totals);
        early.stopped_early = true;
        early.left_in_queue = Some(3);
        early.audit.totals.consumed = 97;
        early.audit.totals.lost = 3;
        let text = report(&early);
        assert!(
            text.ends_with(
                "OK: nothing lost; 3 message(s) left in the queue when you stopped the demo early, but 7 ledger \
                 entr(ies) are UNEXPECTED: for messages the producer never confirmed sending\n"
            ),
            "{text}"
        );
        assert!(early.succeeded());

        // None: the report reads as before, nothing about unexpected entries.
        let clean = summary(audit::Totals {
            unexpected: 0,
            ledger_entries: 100,
            ..totals
        });
        let text = report(&clean);
        assert!(
            text.contains("  consumed   100 (lost 0, duplicates 0)\n"),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("unexpected"), "{text}");
        assert!(
            text.ends_with("OK: every message the queue confirmed was consumed\n"),
            "{text}"
        );
    }

    #[test]
    fn latency_merges_to_the_highest_of_consumers_that_acked() {
        let line = |acked, e2e_p50_us, e2e_p99_us, e2e_max_us| contract::Consumer {
            acked,
            e2e_p50_us,
            e2e_p99_us,
            e2e_max_us,
            ..contract::Consumer::default()
        };
        let (a, b, idle) = (
            line(10, 100, 900, 1000),
            line(5, 300, 400, 5000),
            line(0, 0, 0, 0),
        );
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

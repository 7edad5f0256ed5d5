//! The audit's result: the counts per producer and in total, its JSON summary line and the table for people.

use std::fmt;
use std::io::{self, Write};
use std::ops::Range;
use std::time::Instant;

use workload::contract::{self, Head, Kind};
use workload::envelope::format_run_id;
use workload::stats;

/// The counts of one (run, producer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerReport {
    pub run_id: u64,
    pub producer_id: u32,
    pub produced: u64,
    pub consumed: u64,
    /// Confirmed messages set aside as poison and never consumed (accounted for: not lost).
    pub poison: u64,
    /// Confirmed messages consumed and also set aside as poison later (they count as consumed).
    pub poison_after_consumed: u64,
    /// Poison ledger lines within this producer's range.
    pub poison_entries: u64,
    pub lost: u64,
    /// Messages the producer gave up unconfirmed at a stop.
    pub unconfirmed: u64,
    /// How many of those a consumer still got.
    pub unconfirmed_consumed: u64,
    pub duplicates: u64,
    pub from_summary: bool,
    /// The first few ranges of lost sequence numbers.
    pub missing: Vec<Range<u64>>,
    /// How many ranges of lost sequence numbers there are in all.
    pub missing_ranges: u64,
}

/// The counts over every producer and ledger; see the module docs for their definitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub produced: u64,
    pub consumed: u64,
    pub poison: u64,
    pub poison_after_consumed: u64,
    pub poison_entries: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub unconfirmed: u64,
    pub unconfirmed_consumed: u64,
    pub malformed_ledger_lines: u64,
    pub ledger_entries: u64,
}

/// The audit's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub producers: Vec<ProducerReport>,
    pub totals: Totals,
    pub warnings: Vec<String>,
}

impl Report {
    /// Writes the audit's JSON summary line on stdout.
    pub fn emit(&self, started: Instant) {
        let t = &self.totals;
        stats::emit(&contract::Audit {
            head: Head::new("audit", Kind::Summary, started),
            produced: t.produced,
            consumed: t.consumed,
            poison: t.poison,
            lost: t.lost,
            duplicates: t.duplicates,
            unexpected: t.unexpected,
            unconfirmed: t.unconfirmed,
            unconfirmed_consumed: t.unconfirmed_consumed,
            malformed_ledger_lines: t.malformed_ledger_lines,
            poison_entries: t.poison_entries,
            poison_after_consumed: t.poison_after_consumed,
        });
    }

    /// Writes the human table: one row per producer, then the totals and what the numbers mean when not zero.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<16}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}  {:>10}",
            "run", "producer", "produced", "consumed", "poison", "lost", "duplicates"
        )?;
        for p in &self.producers {
            let mark = if p.from_summary { "" } else { " (no summary)" };
            writeln!(
                out,
                "{:<16}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}  {:>10}{mark}",
                format_run_id(p.run_id),
                p.producer_id,
                p.produced,
                p.consumed,
                p.poison,
                p.lost,
                p.duplicates
            )?;
            if p.lost > 0 {
                let more = p.missing_ranges.saturating_sub(p.missing.len() as u64);
                let more = if more > 0 {
                    format!(" and {more} more range(s)")
                } else {
                    String::new()
                };
                writeln!(out, "    lost seqs: {}{more}", Ranges(&p.missing))?;
            }
        }
        let t = &self.totals;
        writeln!(
            out,
            "{:<16}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}  {:>10}",
            "total", "", t.produced, t.consumed, t.poison, t.lost, t.duplicates
        )?;
        if t.poison > 0 {
            writeln!(
                out,
                "poison: {} message(s) were set aside after too many deliveries (acked and recorded, not lost, \
                 never consumed: see the consumers' logs and --max-deliveries)",
                t.poison
            )?;
        }
        if t.poison_after_consumed > 0 {
            writeln!(
                out,
                "poison after consumed: {} message(s) were consumed, then delivered again and set aside (the ack \
                 was lost); they count as consumed",
                t.poison_after_consumed
            )?;
        }
        if t.unexpected > 0 {
            writeln!(
                out,
                "unexpected: {} ledger entries match no producer's confirmed sends (another run, a producer file \
                 left out, or sends never confirmed)",
                t.unexpected
            )?;
        }
        if t.unconfirmed > 0 {
            writeln!(
                out,
                "unconfirmed: {} message(s) were still failing to send when a producer stopped; {} of them \
                 reached a consumer (neither lost nor unexpected)",
                t.unconfirmed, t.unconfirmed_consumed
            )?;
        }
        if t.malformed_ledger_lines > 0 {
            writeln!(out, "malformed ledger lines: {}", t.malformed_ledger_lines)?;
        }
        for w in &self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Displays ranges as `3, 10-12, 40`.
struct Ranges<'a>(&'a [Range<u64>]);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if r.end - r.start == 1 {
                write!(f, "{}", r.start)?;
            } else {
                write!(f, "{}-{}", r.start, r.end - 1)?;
            }
        }
        Ok(())
    }
}

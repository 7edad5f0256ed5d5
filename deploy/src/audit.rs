//! The audit: did every message a producer sent get consumed, and how many were consumed twice?
//!
//! Inputs are what the binaries already write: each producer's stats lines and each consumer's ledger (one
//! `RUN PRODUCER SEQ` line per acked message, see [`common::ledger`]). A producer's summary says which
//! sequence numbers the queue confirmed: `0..seq_end` except its `unconfirmed_ranges` (batches still failing
//! when it was stopped, which may or may not have reached the queue); `sent` counts them. Lines from before
//! `seq_end` existed mean `0..sent`.
//!
//! Per (run, producer) a bitset over `0..seq_end` marks the sequence numbers seen in any ledger. From it:
//! - `produced`: the sum of `sent`;
//! - `consumed`: distinct ledger entries among some producer's confirmed sequence numbers;
//! - `unconfirmed_consumed`: distinct entries among unconfirmed ones (they did reach the queue: not lost, and
//!   not unexpected either);
//! - `poison`: confirmed messages a consumer set aside after too many deliveries (a `… poison N` ledger line,
//!   see [`common::ledger`]) and that no consumer consumed: accounted for, so not lost, but not consumed;
//! - `lost = produced − consumed − poison`: confirmed sends no ledger has;
//! - `duplicates = consumed entries − distinct consumed entries`: at-least-once deliveries processed again;
//! - `unexpected`: distinct entries outside every producer's range (another run, a producer file that was left
//!   out, or a send the producer never saw confirmed), whatever their outcome;
//! - `poison_entries`: poison lines within some producer's range (confirmed or not);
//! - `poison_after_consumed`: confirmed messages with both a consumed and a poison line;
//! - `malformed_ledger_lines`: lines that are not `RUN PRODUCER SEQ[ poison N]` (a consumer killed mid-write).
//!
//! So `produced = consumed + poison + lost` and
//! `ledger entries = consumed + unconfirmed_consumed + unexpected + duplicates + poison_entries`, whatever the
//! input.
//!
//! A message acked once and poisoned once (its lease ran out, or its consumer died, after the ledger write and
//! before the ack was confirmed, and later deliveries failed until it was set aside) counts as consumed, not
//! as poison and not as a duplicate: a duplicate is work done twice, and poison means no work succeeded, so
//! the work was done exactly once. Such messages are counted in `poison_after_consumed` so the oddity stays
//! visible. Likewise a message poisoned twice (the first poison ack was lost) is one poison message.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::envelope::{format_run_id, parse_run_id};
use common::ledger::{self, Entry, LedgerError, Outcome};
use common::stats::{Kind, Line};
use serde_json::Value;
use thiserror::Error;

/// How many missing ranges per producer the report keeps, so one huge loss does not flood the terminal.
const MISSING_RANGES_SHOWN: usize = 5;

/// What one producer confirmed, from its stats lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    pub run_id: u64,
    pub producer_id: u32,
    /// How many messages the queue confirmed.
    pub sent: u64,
    /// Sequence numbers handed out: `0..seq_end` (equal to `sent` when nothing was left unconfirmed).
    pub seq_end: u64,
    /// Batches the producer gave up at a stop, still unconfirmed.
    pub unconfirmed: Vec<Range<u64>>,
    /// False when the producer wrote no summary (it was killed) and its last interval line stood in.
    pub from_summary: bool,
    /// Where the record came from, for messages (a file name, or "producer" in the demo).
    pub source: String,
}

/// Why the audit could not run.
#[derive(Debug, Error)]
pub enum AuditError {
    #[error("cannot read producer stats {path}: {source}")]
    ReadProducer { path: PathBuf, source: io::Error },
    #[error(
        "{source_name}: no producer stats lines in it (expected the JSON lines a producer writes on stdout)"
    )]
    NoProducerLines { source_name: String },
    #[error("{source_name} line {line}: producer stats line without a valid {field}")]
    BadProducerLine {
        source_name: String,
        line: usize,
        field: &'static str,
    },
    #[error("cannot list ledger directory {path}: {source}")]
    ListLedgers { path: PathBuf, source: io::Error },
    #[error("no *.ledger files in directory {path}")]
    NoLedgers { path: PathBuf },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Reads the producer records of a stats file (a producer's stdout). See [`records_from_lines`].
///
/// # Errors
/// When the file cannot be read, or holds no usable producer line.
pub fn read_producer_file(path: &Path) -> Result<(Vec<ProducerRecord>, Vec<String>), AuditError> {
    let read_err = |source| AuditError::ReadProducer {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let lines = BufReader::new(file)
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    records_from_lines(&path.display().to_string(), lines)
}

/// Turns a producer's stats lines into one record per (run, producer) found in them: from its `summary` line,
/// or, when there is none (the producer was killed), from its last `interval` line, with a warning.
///
/// Lines of other roles are skipped, so a file holding every binary's output works too; lines that are not
/// JSON are skipped with a warning. Returns the records and the warnings.
///
/// # Errors
/// When no producer line is found, or a producer line lacks `run_id`, `producer_id` or `sent`.
pub fn records_from_lines(
    source_name: &str,
    lines: impl IntoIterator<Item = String>,
) -> Result<(Vec<ProducerRecord>, Vec<String>), AuditError> {
    // Keyed by (run, producer): the summary if seen, else the latest interval.
    let mut found: BTreeMap<(u64, u32), ProducerRecord> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut not_json = 0usize;
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            not_json += 1;
            continue;
        };
        if v["role"] != "producer" {
            continue;
        }
        let from_summary = match v["kind"].as_str() {
            Some("summary") => true,
            Some("interval") => false,
            _ => continue,
        };
        let bad = |field| AuditError::BadProducerLine {
            source_name: source_name.to_string(),
            line: i + 1,
            field,
        };
        let run_id = v["run_id"]
            .as_str()
            .and_then(parse_run_id)
            .ok_or_else(|| bad("run_id"))?;
        let producer_id = v["producer_id"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("producer_id"))?;
        let sent = v["sent"].as_u64().ok_or_else(|| bad("sent"))?;
        let seq_end = match &v["seq_end"] {
            Value::Null => sent,
            other => other
                .as_u64()
                .filter(|e| *e >= sent)
                .ok_or_else(|| bad("seq_end"))?,
        };
        let mut unconfirmed = Vec::new();
        if let Some(ranges) = v["unconfirmed_ranges"].as_array() {
            for r in ranges {
                let (first, n) = (r[0].as_u64(), r[1].as_u64());
                let (Some(first), Some(n)) = (first, n) else {
                    return Err(bad("unconfirmed_ranges"));
                };
                let end = first.checked_add(n).filter(|end| *end <= seq_end);
                unconfirmed.push(first..end.ok_or_else(|| bad("unconfirmed_ranges"))?);
            }
        }
        let record = ProducerRecord {
            run_id,
            producer_id,
            sent,
            seq_end,
            unconfirmed,
            from_summary,
            source: source_name.to_string(),
        };
        let slot = found.entry((run_id, producer_id)).or_insert(record.clone());
        // A summary is final; an interval only replaces another interval (lines are in time order).
        if from_summary || !slot.from_summary {
            *slot = record;
        }
    }
    if not_json > 0 {
        warnings.push(format!(
            "{source_name}: skipped {not_json} line(s) that are not JSON"
        ));
    }
    if found.is_empty() {
        return Err(AuditError::NoProducerLines {
            source_name: source_name.to_string(),
        });
    }
    for r in found.values().filter(|r| !r.from_summary) {
        warnings.push(format!(
            "{source_name}: producer {} of run {} wrote no summary (killed?): using its last interval line \
             (sent={}); sends confirmed after it count as unexpected, not consumed",
            r.producer_id,
            format_run_id(r.run_id),
            r.sent
        ));
    }
    Ok((found.into_values().collect(), warnings))
}

/// The ledger files an argument names: the file itself, or every `*.ledger` in a directory (sorted, not
/// recursive).
///
/// # Errors
/// When a directory cannot be listed or holds no ledger.
pub fn ledger_files(path: &Path) -> Result<Vec<PathBuf>, AuditError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let list_err = |source| AuditError::ListLedgers {
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(list_err)? {
        let p = entry.map_err(list_err)?.path();
        if p.extension().is_some_and(|e| e == "ledger") && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(AuditError::NoLedgers {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

/// Audits producer stats files against ledger files (or directories of them): the whole audit in one call.
///
/// # Errors
/// When an input cannot be read or holds no usable data; see [`AuditError`].
pub fn audit_files(producers: &[PathBuf], ledgers: &[PathBuf]) -> Result<Report, AuditError> {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for path in producers {
        let (r, w) = read_producer_file(path)?;
        records.extend(r);
        warnings.extend(w);
    }
    // List every ledger before reading any, so a bad argument fails fast.
    let mut files = Vec::new();
    for path in ledgers {
        files.extend(ledger_files(path)?);
    }
    let mut audit = Audit::new(records);
    audit.warnings.splice(0..0, warnings);
    for file in &files {
        audit.add_ledger(file)?;
    }
    Ok(audit.report())
}

/// The sequence numbers seen of one producer. The bitset grows with the highest seq seen rather than being
/// sized from `sent` up front, so a corrupt `sent` cannot make the audit allocate gigabytes.
struct Tally {
    record: ProducerRecord,
    /// Sequence numbers consumed.
    seen: Vec<u64>,
    /// Sequence numbers set aside as poison (whether or not also consumed).
    poisoned: Vec<u64>,
    distinct: u64,
    unconfirmed_consumed: u64,
    duplicates: u64,
    poison_entries: u64,
}

/// Sets bit `seq` of a bitset grown on demand; returns whether it was new.
fn set_bit(bits: &mut Vec<u64>, seq: u64) -> bool {
    let word = (seq / 64) as usize;
    if word >= bits.len() {
        bits.resize(word + 1, 0);
    }
    let bit = 1u64 << (seq % 64);
    let new = bits[word] & bit == 0;
    bits[word] |= bit;
    new
}

/// Whether bit `seq` is set.
fn bit(bits: &[u64], seq: u64) -> bool {
    bits.get((seq / 64) as usize)
        .is_some_and(|w| w & (1 << (seq % 64)) != 0)
}

impl Tally {
    /// Marks `seq` (which must be below `seq_end`) consumed; returns whether it was new.
    fn mark(&mut self, seq: u64) -> bool {
        set_bit(&mut self.seen, seq)
    }

    /// Confirmed messages poisoned and never consumed, and those poisoned after being consumed.
    fn poison_counts(&self) -> (u64, u64) {
        let (mut only, mut after) = (0u64, 0u64);
        for (w, &bits) in self.poisoned.iter().enumerate() {
            if bits == 0 {
                continue;
            }
            let consumed = self.seen.get(w).copied().unwrap_or(0);
            for b in 0..64 {
                let seq = w as u64 * 64 + b;
                if bits & (1 << b) == 0 || self.is_unconfirmed(seq) {
                    continue;
                }
                if consumed & (1 << b) != 0 {
                    after += 1;
                } else {
                    only += 1;
                }
            }
        }
        (only, after)
    }

    fn is_unconfirmed(&self, seq: u64) -> bool {
        self.record.unconfirmed.iter().any(|r| r.contains(&seq))
    }

    /// Neither seen nor poisoned nor excused: a confirmed send no ledger has.
    fn is_lost(&self, seq: u64) -> bool {
        !self.is_seen(seq) && !bit(&self.poisoned, seq) && !self.is_unconfirmed(seq)
    }

    fn is_seen(&self, seq: u64) -> bool {
        bit(&self.seen, seq)
    }

    /// The first few ranges of confirmed sequence numbers no ledger had, and how many ranges there are in all.
    fn missing(&self) -> (Vec<Range<u64>>, u64) {
        let mut shown = Vec::new();
        let mut total = 0u64;
        let mut seq = 0u64;
        let end = self.record.seq_end;
        while seq < end {
            // Skip whole words that are full, so a clean run of millions costs little.
            let word = (seq / 64) as usize;
            let accounted = self.seen.get(word).copied().unwrap_or(0)
                | self.poisoned.get(word).copied().unwrap_or(0);
            if seq.is_multiple_of(64) && accounted == u64::MAX {
                seq += 64;
                continue;
            }
            if !self.is_lost(seq) {
                seq += 1;
                continue;
            }
            let start = seq;
            while seq < end && self.is_lost(seq) {
                // Past both bitsets' ends nothing was seen: jump to the next unconfirmed range or the end.
                if (seq / 64) as usize >= self.seen.len().max(self.poisoned.len())
                    && self.record.unconfirmed.is_empty()
                {
                    seq = end;
                    break;
                }
                seq += 1;
            }
            total += 1;
            if shown.len() < MISSING_RANGES_SHOWN {
                shown.push(start..seq);
            }
        }
        (shown, total)
    }
}

/// An audit in progress: built from the producer records, then fed ledger entries.
pub struct Audit {
    producers: BTreeMap<(u64, u32), Tally>,
    /// Entries outside every range, kept as a set so that repeats of them count as duplicates, not twice as
    /// unexpected.
    unexpected: HashSet<Entry>,
    unexpected_repeats: u64,
    entries: u64,
    malformed: u64,
    warnings: Vec<String>,
}

impl Audit {
    /// Starts an audit over these producers. Every producer must be known before the first entry arrives, or
    /// its entries would be counted as unexpected: taking them all here makes that impossible to get wrong.
    pub fn new(records: impl IntoIterator<Item = ProducerRecord>) -> Audit {
        let mut producers: BTreeMap<(u64, u32), Tally> = BTreeMap::new();
        let mut warnings = Vec::new();
        for record in records {
            let key = (record.run_id, record.producer_id);
            match producers.get_mut(&key) {
                // The same producer twice (the same file given twice, or a restart with the same id): its
                // sequence numbers overlap, so count the larger range once rather than summing.
                Some(t) => {
                    warnings.push(format!(
                        "producer {} of run {} appears in both {} and {}: counting its larger range once",
                        record.producer_id,
                        format_run_id(record.run_id),
                        t.record.source,
                        record.source
                    ));
                    if record.sent > t.record.sent
                        || (record.sent == t.record.sent && record.from_summary)
                    {
                        t.record = record;
                    }
                }
                None => {
                    producers.insert(
                        key,
                        Tally {
                            record,
                            seen: Vec::new(),
                            poisoned: Vec::new(),
                            distinct: 0,
                            unconfirmed_consumed: 0,
                            duplicates: 0,
                            poison_entries: 0,
                        },
                    );
                }
            }
        }
        Audit {
            producers,
            unexpected: HashSet::new(),
            unexpected_repeats: 0,
            entries: 0,
            malformed: 0,
            warnings,
        }
    }

    /// Counts one ledger entry of a consumed message.
    pub fn add_entry(&mut self, e: Entry) {
        self.add_outcome(e, Outcome::Consumed);
    }

    /// Counts one ledger entry with its outcome.
    pub fn add_outcome(&mut self, e: Entry, outcome: Outcome) {
        self.entries += 1;
        match self.producers.get_mut(&(e.run_id, e.producer_id)) {
            Some(t) if e.seq < t.record.seq_end && matches!(outcome, Outcome::Poison { .. }) => {
                t.poison_entries += 1;
                set_bit(&mut t.poisoned, e.seq);
            }
            Some(t) if e.seq < t.record.seq_end => {
                if !t.mark(e.seq) {
                    t.duplicates += 1;
                } else if t.is_unconfirmed(e.seq) {
                    t.unconfirmed_consumed += 1;
                } else {
                    t.distinct += 1;
                }
            }
            _ => {
                if !self.unexpected.insert(e) {
                    self.unexpected_repeats += 1;
                }
            }
        }
    }
    /// Counts malformed ledger lines found by the caller.
    pub fn add_malformed(&mut self, n: u64) {
        self.malformed += n;
    }

    /// Reads one ledger file into the audit.
    ///
    /// # Errors
    /// When the file cannot be opened or read (malformed lines are counted, not errors).
    pub fn add_ledger(&mut self, path: &Path) -> Result<(), AuditError> {
        let report = ledger::read_outcomes(path, |e, outcome| self.add_outcome(e, outcome))?;
        if report.malformed > 0 {
            self.warnings.push(format!(
                "{}: {} malformed line(s) (a consumer killed mid-write leaves one)",
                path.display(),
                report.malformed
            ));
        }
        self.add_malformed(report.malformed);
        Ok(())
    }

    /// The result so far.
    pub fn report(&self) -> Report {
        let mut producers = Vec::with_capacity(self.producers.len());
        let mut totals = Totals {
            ledger_entries: self.entries,
            unexpected: self.unexpected.len() as u64,
            duplicates: self.unexpected_repeats,
            malformed_ledger_lines: self.malformed,
            ..Totals::default()
        };
        for t in self.producers.values() {
            let (missing, missing_ranges) = t.missing();
            let (poison, poison_after_consumed) = t.poison_counts();
            let p = ProducerReport {
                run_id: t.record.run_id,
                producer_id: t.record.producer_id,
                produced: t.record.sent,
                consumed: t.distinct,
                poison,
                poison_after_consumed,
                poison_entries: t.poison_entries,
                lost: t.record.sent.saturating_sub(t.distinct + poison),
                unconfirmed: t.record.unconfirmed.iter().map(|r| r.end - r.start).sum(),
                unconfirmed_consumed: t.unconfirmed_consumed,
                duplicates: t.duplicates,
                from_summary: t.record.from_summary,
                missing,
                missing_ranges,
            };
            totals.produced += p.produced;
            totals.consumed += p.consumed;
            totals.poison += p.poison;
            totals.poison_after_consumed += p.poison_after_consumed;
            totals.poison_entries += p.poison_entries;
            totals.lost += p.lost;
            totals.duplicates += p.duplicates;
            totals.unconfirmed += p.unconfirmed;
            totals.unconfirmed_consumed += p.unconfirmed_consumed;
            producers.push(p);
        }
        Report {
            producers,
            totals,
            warnings: self.warnings.clone(),
        }
    }
}

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
        Line::new("audit", Kind::Summary, started)
            .field("produced", t.produced)
            .field("consumed", t.consumed)
            .field("poison", t.poison)
            .field("lost", t.lost)
            .field("duplicates", t.duplicates)
            .field("unexpected", t.unexpected)
            .field("unconfirmed", t.unconfirmed)
            .field("unconfirmed_consumed", t.unconfirmed_consumed)
            .field("malformed_ledger_lines", t.malformed_ledger_lines)
            .field("poison_entries", t.poison_entries)
            .field("poison_after_consumed", t.poison_after_consumed)
            .emit();
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

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: u64 = 0x9f3a_0c2e_4b1d_7a65;

    fn record(producer_id: u32, sent: u64) -> ProducerRecord {
        ProducerRecord {
            run_id: RUN,
            producer_id,
            sent,
            seq_end: sent,
            unconfirmed: Vec::new(),
            from_summary: true,
            source: "test".into(),
        }
    }

    fn entry(producer_id: u32, seq: u64) -> Entry {
        Entry {
            run_id: RUN,
            producer_id,
            seq,
        }
    }

    fn totals(audit: &Audit) -> Totals {
        audit.report().totals
    }

    #[test]
    fn a_clean_run_loses_nothing() {
        let mut a = Audit::new([record(1, 1000), record(2, 3)]);
        for seq in (0..1000).rev() {
            a.add_entry(entry(1, seq));
        }
        for seq in 0..3 {
            a.add_entry(entry(2, seq));
        }
        let r = a.report();
        assert_eq!(
            r.totals,
            Totals {
                produced: 1003,
                consumed: 1003,
                ledger_entries: 1003,
                ..Totals::default()
            }
        );
        assert!(r.producers.iter().all(|p| p.missing.is_empty()));
    }

    #[test]
    fn loss_is_counted_and_located() {
        let mut a = Audit::new([record(1, 200)]);
        for seq in (0..200).filter(|s| ![3, 64, 65, 66].contains(s) && *s < 150) {
            a.add_entry(entry(1, seq));
        }
        let r = a.report();
        assert_eq!(r.totals.lost, 4 + 50);
        assert_eq!(r.totals.consumed, 200 - 54);
        assert_eq!(r.producers[0].missing, vec![3..4, 64..67, 150..200]);
        assert_eq!(r.producers[0].missing_ranges, 3);
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("lost seqs: 3, 64-66, 150-199"), "{table}");
    }

    #[test]
    fn nothing_consumed_is_all_lost_and_many_ranges_are_summarised() {
        let a = Audit::new([record(1, 10)]);
        assert_eq!(a.report().producers[0].missing, vec![0..10]);
        let mut a = Audit::new([record(1, 100)]);
        for seq in (0..100).step_by(2) {
            a.add_entry(entry(1, seq));
        }
        let p = &a.report().producers[0];
        assert_eq!(p.missing_ranges, 50);
        assert_eq!(p.missing.len(), MISSING_RANGES_SHOWN);
    }

    #[test]
    fn duplicates_count_repeats_and_are_not_consumption() {
        let mut a = Audit::new([record(1, 3)]);
        for seq in [0, 1, 1, 1, 2, 0] {
            a.add_entry(entry(1, seq));
        }
        let t = totals(&a);
        assert_eq!((t.consumed, t.lost, t.duplicates), (3, 0, 3));
        assert_eq!(t.ledger_entries, t.consumed + t.unexpected + t.duplicates);
    }

    fn poison(producer_id: u32, seq: u64) -> (Entry, Outcome) {
        (entry(producer_id, seq), Outcome::Poison { deliveries: 3 })
    }

    #[test]
    fn poison_is_accounted_for_but_not_consumed() {
        let mut a = Audit::new([record(1, 10)]);
        for seq in 0..6 {
            a.add_entry(entry(1, seq));
        }
        for seq in [6, 7, 7] {
            let (e, o) = poison(1, seq);
            a.add_outcome(e, o);
        }
        let r = a.report();
        let t = r.totals;
        assert_eq!(
            (t.consumed, t.poison, t.lost, t.duplicates, t.poison_entries),
            (6, 2, 2, 0, 3),
            "poisoned twice is one poison message and no duplicate"
        );
        assert_eq!(t.produced, t.consumed + t.poison + t.lost);
        assert_eq!(
            t.ledger_entries,
            t.consumed + t.unconfirmed_consumed + t.unexpected + t.duplicates + t.poison_entries
        );
        assert_eq!(r.producers[0].missing, vec![8..10], "poison is not missing");
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("poison: 2 message(s)"), "{table}");
    }

    #[test]
    fn consumed_then_poisoned_is_consumed_once_not_a_duplicate() {
        // At-least-once: consumer A recorded seq 0 and its ack was lost; later deliveries failed until B set it
        // aside. The work succeeded exactly once.
        let mut a = Audit::new([record(1, 2)]);
        a.add_entry(entry(1, 0));
        let (e, o) = poison(1, 0);
        a.add_outcome(e, o);
        a.add_entry(entry(1, 1));
        let t = totals(&a);
        assert_eq!(
            (
                t.consumed,
                t.poison,
                t.poison_after_consumed,
                t.lost,
                t.duplicates
            ),
            (2, 0, 1, 0, 0)
        );
        assert_eq!(t.produced, t.consumed + t.poison + t.lost);
        // Poisoned first, consumed later (a slow consumer whose ack was refused but whose entry counts): the
        // same answer, whatever the order the ledgers are read in.
        let mut b = Audit::new([record(1, 2)]);
        b.add_outcome(e, o);
        b.add_entry(entry(1, 0));
        b.add_entry(entry(1, 1));
        assert_eq!(totals(&b), t);
    }

    #[test]
    fn poison_lines_are_read_from_ledgers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.ledger");
        let mut w = ledger::LedgerWriter::open(&path).unwrap();
        w.push(entry(1, 0));
        w.push_outcome(entry(1, 1), Outcome::Poison { deliveries: 4 });
        w.flush().unwrap();
        let mut a = Audit::new([record(1, 3)]);
        a.add_ledger(&path).unwrap();
        let t = totals(&a);
        assert_eq!(
            (t.consumed, t.poison, t.lost, t.malformed_ledger_lines),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn entries_outside_every_range_are_unexpected() {
        let mut a = Audit::new([record(1, 5)]);
        a.add_entry(entry(1, 4)); // in range
        a.add_entry(entry(1, 5)); // past what was confirmed
        a.add_entry(entry(9, 0)); // a producer not given
        a.add_entry(Entry {
            run_id: 1,
            producer_id: 1,
            seq: 0,
        }); // another run
        a.add_entry(entry(9, 0)); // a repeat of an unexpected one is a duplicate
        let t = totals(&a);
        assert_eq!(
            (t.consumed, t.lost, t.unexpected, t.duplicates),
            (1, 4, 3, 1)
        );
        assert_eq!(t.ledger_entries, t.consumed + t.unexpected + t.duplicates);
    }

    #[test]
    fn unconfirmed_batches_are_neither_lost_nor_unexpected() {
        // seq_end 10, batch 4..6 given up: 8 confirmed. Seqs 4 (unconfirmed, arrived anyway) and 0..4, 6..9
        // consumed; 9 lost.
        let r = ProducerRecord {
            sent: 8,
            seq_end: 10,
            unconfirmed: std::iter::once(4..6).collect(),
            ..record(1, 8)
        };
        let mut audit = Audit::new([r]);
        for seq in [0, 1, 2, 3, 4, 6, 7, 8] {
            audit.add_entry(entry(1, seq));
        }
        let report = audit.report();
        let t = report.totals;
        assert_eq!((t.produced, t.consumed, t.lost, t.unexpected), (8, 7, 1, 0));
        assert_eq!((t.unconfirmed, t.unconfirmed_consumed), (2, 1));
        assert_eq!(report.producers[0].missing, vec![9..10]);
    }

    #[test]
    fn unconfirmed_ranges_are_read_from_the_summary() {
        let line = format!(
            r#"{{"role":"producer","kind":"summary","run_id":"{}","producer_id":3,"sent":8,"seq_end":10,"unconfirmed_ranges":[[4,2]]}}"#,
            format_run_id(RUN)
        );
        let (records, _) = records_from_lines("p", [line]).unwrap();
        assert_eq!(
            (records[0].seq_end, records[0].unconfirmed.clone()),
            (10, std::iter::once(4..6).collect::<Vec<_>>())
        );
        let bad = format!(
            r#"{{"role":"producer","kind":"summary","run_id":"{}","producer_id":3,"sent":8,"seq_end":10,"unconfirmed_ranges":[[9,5]]}}"#,
            format_run_id(RUN)
        );
        assert!(
            records_from_lines("p", [bad]).is_err(),
            "a range past seq_end is refused"
        );
    }

    #[test]
    fn the_same_producer_twice_is_counted_once() {
        let mut a = Audit::new([record(1, 5), record(1, 7)]);
        for seq in 0..7 {
            a.add_entry(entry(1, seq));
        }
        let r = a.report();
        assert_eq!((r.totals.produced, r.totals.lost), (7, 0));
        assert_eq!(r.warnings.len(), 1);
    }

    fn line(kind: &str, producer_id: u32, sent: u64) -> String {
        format!(
            r#"{{"role":"producer","kind":"{kind}","run_id":"{}","producer_id":{producer_id},"sent":{sent}}}"#,
            format_run_id(RUN)
        )
    }

    #[test]
    fn records_prefer_the_summary_and_fall_back_to_the_last_interval() {
        let lines = vec![
            line("interval", 1, 10),
            line("interval", 2, 10),
            r#"{"role":"consumer","kind":"summary","acked":3}"#.to_string(),
            "not json".to_string(),
            line("interval", 1, 20),
            line("summary", 1, 25),
            line("interval", 2, 30),
        ];
        let (records, warnings) = records_from_lines("p.jsonl", lines).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[0].sent, records[0].from_summary),
            (25, true),
            "summary wins"
        );
        assert_eq!(
            (records[1].sent, records[1].from_summary),
            (30, false),
            "last interval"
        );
        assert!(warnings.iter().any(|w| w.contains("not JSON")));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("producer 2") && w.contains("no summary"))
        );
    }

    #[test]
    fn a_killed_producer_audits_from_its_last_interval() {
        // Killed after its last interval said 10 sent; it had confirmed 12 by then.
        let (records, _) = records_from_lines("p", vec![line("interval", 1, 10)]).unwrap();
        let mut a = Audit::new(records);
        for seq in 0..12 {
            a.add_entry(entry(1, seq));
        }
        let t = totals(&a);
        assert_eq!(
            (t.produced, t.consumed, t.lost, t.unexpected),
            (10, 10, 0, 2)
        );
    }

    #[test]
    fn producer_files_without_producer_lines_or_with_bad_fields_are_errors() {
        let e = records_from_lines("x.jsonl", vec![r#"{"role":"consumer"}"#.to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.jsonl") && e.contains("no producer stats"),
            "{e}"
        );
        let bad = r#"{"role":"producer","kind":"summary","run_id":"zz","producer_id":1,"sent":1}"#;
        let e = records_from_lines("y", vec![bad.to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("y line 1") && e.contains("run_id"), "{e}");
    }

    #[test]
    fn ledgers_are_read_from_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.ledger"),
            format!(
                "{} 1 0\n{} 1 1\ntorn",
                format_run_id(RUN),
                format_run_id(RUN)
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let files = ledger_files(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join("a.ledger")]);
        let mut a = Audit::new([record(1, 2)]);
        for f in &files {
            a.add_ledger(f).unwrap();
        }
        let t = totals(&a);
        assert_eq!((t.consumed, t.lost, t.malformed_ledger_lines), (2, 0, 1));
        let empty = tempfile::tempdir().unwrap();
        let e = ledger_files(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no *.ledger files"), "{e}");
        let e = Audit::new([])
            .add_ledger(&dir.path().join("missing.ledger"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.ledger"), "{e}");
    }
}

//! The tally: every ledger entry marked against the producers' confirmed ranges.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;

use workload::envelope::format_run_id;
use workload::ledger::{self, Entry, Outcome};

use super::{AuditError, ProducerRecord, ProducerReport, Report, Totals};

/// How many missing ranges per producer the report keeps, so one huge loss does not flood the terminal.
pub(super) const MISSING_RANGES_SHOWN: usize = 5;

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
    pub(super) warnings: Vec<String>,
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

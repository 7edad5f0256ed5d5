//! The audit's inputs: producer records from stats lines, and the ledger files an argument names.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};

use workload::contract::{self, Kind, Stats};
use workload::envelope::{format_run_id, parse_run_id};

use super::AuditError;

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
    let mut skipped = contract::Skipped::default();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| AuditError::BadProducerLine {
            source_name: source_name.to_string(),
            line: i + 1,
            reason,
        };
        let p = match contract::parse(&line) {
            Ok(Stats::Producer(p)) => p,
            // Other roles (a file holding every binary's output) and kinds a newer writer added.
            Ok(_) => continue,
            // A producer line the audit cannot read would under-count what was sent: no audit then.
            Err(e @ contract::ParseError::Invalid { .. }) if e.role() == Some("producer") => {
                return Err(bad(e.to_string()));
            }
            Err(e) => {
                skipped.add(i + 1, &e);
                continue;
            }
        };
        let from_summary = p.head.kind == Kind::Summary;
        let run_id = parse_run_id(&p.run_id)
            .ok_or_else(|| bad(format!("run_id {:?} is not 16 hex digits", p.run_id)))?;
        let (producer_id, sent) = (p.producer_id, p.sent);
        // Writers before seq_end had no gaps: everything handed out was sent.
        let seq_end = match p.seq_end {
            None => sent,
            Some(end) if end >= sent => end,
            Some(end) => return Err(bad(format!("seq_end {end} is below sent {sent}"))),
        };
        let mut unconfirmed = Vec::new();
        for [first, n] in p.unconfirmed_ranges.unwrap_or_default() {
            let end = first.checked_add(n).filter(|end| *end <= seq_end);
            let end = end.ok_or_else(|| {
                bad(format!(
                    "unconfirmed_ranges [{first}, {n}] goes past seq_end {seq_end}"
                ))
            })?;
            unconfirmed.push(first..end);
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
    warnings.extend(skipped.message(source_name));
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

//! The audit: did every message a producer sent get consumed, and how many were consumed twice?
//!
//! Inputs are what the binaries already write: each producer's stats lines and each consumer's ledger (one
//! `RUN PRODUCER SEQ` line per acked message, see [`workload::ledger`]). A producer's summary says which
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
//!   see [`workload::ledger`]) and that no consumer consumed: accounted for, so not lost, but not consumed;
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
//!
//! The module is split by stage: [`input`] reads the producers' stats lines and lists the ledgers, `tally`
//! marks every ledger entry against them, and [`report`] holds the result, its JSON line and its table.

use std::io;
use std::path::PathBuf;

use thiserror::Error;
use workload::ledger::LedgerError;

pub mod channel;
mod input;
mod report;
mod tally;
#[cfg(test)]
mod tests;

pub use input::{ProducerRecord, ledger_files, read_producer_file, records_from_lines};
pub use report::{ProducerReport, Report, Totals};
pub use tally::Audit;

/// Why the audit could not run.
#[derive(Debug, Error)]
pub enum AuditError {
    #[error("cannot read producer stats {path}: {source}")]
    ReadProducer { path: PathBuf, source: io::Error },
    #[error(
        "{source_name}: no producer stats lines in it (expected the JSON lines a producer writes on stdout)"
    )]
    NoProducerLines { source_name: String },
    #[error("{source_name} line {line}: bad producer stats line: {reason}")]
    BadProducerLine {
        source_name: String,
        line: usize,
        reason: String,
    },
    #[error("cannot list ledger directory {path}: {source}")]
    ListLedgers { path: PathBuf, source: io::Error },
    #[error("no *.ledger files in directory {path}")]
    NoLedgers { path: PathBuf },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
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

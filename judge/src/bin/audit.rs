//! `audit`: counts lost and duplicated messages from producers' stats and consumers' ledgers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

/// Count lost and duplicated messages of a run from the producers' stats and the consumers' ledgers.
///
/// A producer's summary line says how many messages the queue confirmed (sequence numbers 0..sent); every
/// consumer started with --ledger FILE appends one line per message it acked. The audit checks each confirmed
/// message against the ledgers and prints one JSON line on stdout ("role":"audit", with produced, consumed,
/// poison, lost, duplicates, unexpected, malformed_ledger_lines) and a table per producer on stderr.
///
/// A message a consumer set aside as poison (--max-deliveries) is accounted for, not lost; one that was also
/// consumed counts as consumed, not as a duplicate.
///
/// A producer killed before its summary is audited from its last interval line, with a warning.
///
/// Exit status: 0 when nothing was lost, 1 when messages were lost, 2 when the audit could not run (bad
/// usage, or an input file missing or unusable).
#[derive(Parser, Debug)]
#[command(name = "audit", version)]
struct Args {
    /// A producer's stats output (its stdout, JSON lines); give one per producer.
    ///
    /// Lines of other roles are ignored, so one file holding several binaries' output works too.
    #[arg(long = "producer", value_name = "FILE", required = true, num_args = 1..)]
    producers: Vec<PathBuf>,

    /// A consumer's ledger file, or a directory: every *.ledger file in it.
    #[arg(long = "ledger", value_name = "FILE|DIR", required = true, num_args = 1..)]
    ledgers: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    workload::cli::exit((|| {
        // Every audit error is about the input files named on the command line: bad usage (exit 2).
        let report = judge::audit::audit_files(&args.producers, &args.ledgers)
            .map_err(workload::cli::usage)?;
        report.emit(started);
        // The table is for a person; a closed stderr must not turn a clean audit into a failure.
        let _ = report.write_table(&mut std::io::stderr().lock());
        anyhow::Ok(if report.totals.lost == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }
}

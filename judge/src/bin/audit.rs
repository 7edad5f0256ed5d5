//! `audit`: counts lost and duplicated messages from producers' stats and consumers' ledgers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
/// With --queue URL instead, the records come off the run's telemetry channel (producers and consumers run
/// with --telemetry on): the audit drains the channel into --save DIR (ledger files and producer lines, in the
/// formats above), then audits DIR exactly as it audits files. Reading the channel takes the records off it,
/// so keep DIR: a later `audit --queue URL --save DIR` audits it again (with anything new), and so does
/// `audit --producer DIR/RUN/producers.jsonl --ledger DIR/RUN`.
///
/// Exit status: 0 when nothing was lost, 1 when messages were lost, 2 when the audit could not run (bad
/// usage, an input file missing or unusable, or a telemetry channel that cannot be read).
#[derive(Parser, Debug)]
#[command(name = "audit", version)]
struct Args {
    /// A producer's stats output (its stdout, JSON lines); give one per producer.
    ///
    /// Lines of other roles are ignored, so one file holding several binaries' output works too.
    #[arg(long = "producer", value_name = "FILE", required_unless_present = "queue", num_args = 1..)]
    producers: Vec<PathBuf>,

    /// A consumer's ledger file, or a directory: every *.ledger file in it.
    #[arg(long = "ledger", value_name = "FILE|DIR", required_unless_present = "queue", num_args = 1..)]
    ledgers: Vec<PathBuf>,

    /// Read the run's records off the telemetry channel of this work queue (the URL the producers and
    /// consumers were given) instead of files.
    #[arg(long, value_name = "URL", env = "QUEUE_URL", hide_env_values = true, conflicts_with_all = ["producers", "ledgers"])]
    queue: Option<String>,

    /// With --queue: audit only this run: 1 to 16 hex digits, as the producers' --run-id takes it (their lines'
    /// run_id has all 16). Records of other runs are saved too, never dropped.
    #[arg(long, value_name = "ID", requires = "queue", value_parser = parse_run, allow_hyphen_values = true)]
    run: Option<u64>,

    /// With --queue: where the records taken off the channel are kept (DIR/RUN/CONSUMER.ledger and
    /// DIR/RUN/producers.jsonl, appended to), and what is audited [default: audit-telemetry].
    #[arg(long, value_name = "DIR", requires = "queue")]
    save: Option<PathBuf>,
}

/// Where `audit --queue` keeps what it took off the channel when --save is not given.
const SAVE_DEFAULT: &str = "audit-telemetry";

/// The producer's --run-id form (1 to 16 hex digits), which is also how its lines write it (16 digits).
fn parse_run(s: &str) -> Result<u64, String> {
    workload::envelope::parse_run_id_arg(s)
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::try_parse().unwrap_or_else(|e| {
        // Clap would list only the file flags: the audit's other form, the telemetry channel, is as good.
        if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
            workload::note!(
                "error: the audit reads the run's files, --producer FILE… and --ledger FILE|DIR…, or its \
                 telemetry channel, --queue URL (see --help)"
            );
            std::process::exit(2);
        }
        workload::cli::exit_on_clap_error::<Args>(e)
    });
    // Clap's `requires` let these through beside the file flags (seen: `--run abc --save foo` audited every
    // run and saved nothing), so the rule is kept here.
    if args.queue.is_none() && (args.run.is_some() || args.save.is_some()) {
        workload::note!(
            "error: --run and --save go with --queue (the telemetry channel); the file audit reads every run \
             in the files it is given (see --help)"
        );
        std::process::exit(2);
    }
    if let Some(queue) = args.queue.clone() {
        workload::cli::init_logging(&queues::registry::quiet_log_targets());
        return workload::cli::run_async(from_channel(queue, args, started));
    }
    workload::cli::exit((|| {
        // Every audit error is about the input files named on the command line: bad usage (exit 2).
        let report = judge::audit::audit_files(&args.producers, &args.ledgers)
            .map_err(workload::cli::usage)?;
        check_ledgers_hold_something(&report, &args.ledgers)?;
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

/// Refuses ledgers that hold no line at all when the producers confirmed messages: an empty file is what a
/// consumer that acked nothing leaves, but when every ledger given is empty, the likelier story is the wrong
/// file (or consumers run without --ledger), and "all lost" would mislead. Bad usage (exit 2).
fn check_ledgers_hold_something(
    report: &judge::audit::Report,
    ledgers: &[PathBuf],
) -> Result<(), workload::cli::UsageError> {
    let t = &report.totals;
    if t.produced == 0 || t.ledger_entries > 0 || t.malformed_ledger_lines > 0 {
        return Ok(());
    }
    let named: Vec<String> = ledgers.iter().map(|p| p.display().to_string()).collect();
    Err(workload::cli::UsageError::new(format!(
        "no ledger lines in {}: empty, and the producers confirmed {} message(s) (expected `RUN PRODUCER SEQ` \
         lines, one per message a consumer acked: were the consumers run with --ledger, and is this where they \
         wrote?)",
        named.join(", "),
        t.produced
    )))
}

/// `audit --queue`: drain the channel into --save, then audit what is there.
async fn from_channel(queue: String, args: Args, started: Instant) -> anyhow::Result<ExitCode> {
    let save = args.save.unwrap_or_else(|| PathBuf::from(SAVE_DEFAULT));
    use judge::audit::channel::{ChannelError, audit_queue};
    let url = queues::QueueUrl::parse(&queue).map_err(workload::cli::usage)?;
    // Any failure here means the audit could not run (exit 2): a channel that cannot be read, saved files that
    // cannot be written or read. Exit 1 says messages were lost, and an unreachable queue is not that.
    let (drained, report) = audit_queue(&url, args.run, &save)
        .await
        .map_err(|e: ChannelError| workload::cli::UsageError::new(workload::cli::one_line(&e)))?;
    workload::cli::note(format_args!(
        "audit: took {} ledger entries and {} producer line(s) off the telemetry channel{} into {} (runs: {})",
        drained.ledger_records,
        drained.producer_lines,
        if drained.unreadable > 0 {
            format!(", skipped {} unreadable", drained.unreadable)
        } else {
            String::new()
        },
        save.display(),
        if drained.runs.is_empty() {
            "none new".to_string()
        } else {
            drained.runs.join(", ")
        }
    ));
    report.emit(started);
    let _ = report.write_table(&mut std::io::stderr().lock());
    if report.totals.lost == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    note_still_queued(&url).await;
    Ok(ExitCode::FAILURE)
}

/// Messages still in the work queue have no ledger record yet, so the audit counts them as lost: those a
/// killed consumer held (they come back when its lease runs out) and those no consumer took yet. When the
/// queue holds any, says so, so that an audit run before the queue drained is not taken for a loss. Best
/// effort: a queue that cannot be read in a few seconds adds nothing.
async fn note_still_queued(url: &queues::QueueUrl) {
    let read = async { url.open_existing().await?.depth().await };
    let Ok(Ok(depth)) = tokio::time::timeout(Duration::from_secs(10), read).await else {
        return;
    };
    if depth.total() == 0 {
        return;
    }
    let in_flight = depth
        .in_flight
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    workload::cli::note(format_args!(
        "audit: the work queue still holds {} message(s) ({} waiting, {in_flight} in flight), counted as lost until \
         a consumer acks them (a killed consumer's lease runs out first): drain the queue, then audit again",
        depth.total(),
        depth.visible,
    ));
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

//! `audit --queue`: the run's records read off the telemetry channel (see [`workload::telemetry`]) and saved
//! as the files the audit already reads, then audited by the same code.
//!
//! Reading a queue is destructive on most backends, so every record is saved before its message is acked:
//! `DIR/RUN/CONSUMER.ledger` (the file ledger's format, one file per consumer) and `DIR/RUN/producers.jsonl`
//! (the producers' stats lines as they wrote them). The audit of `DIR` is then the file audit, so it reports
//! exactly what file ledgers would, and a second `audit --queue URL --save DIR` (or `audit --producer
//! DIR/RUN/producers.jsonl --ledger DIR/RUN`) re-reads what the first one took. Appending is safe: a record
//! read twice (the audit killed between saving and acking) is a duplicate line, which the audit reports as a
//! duplicate rather than hide a loss.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use queues::{ErrorKind, QueueUrl};
use workload::envelope::{format_run_id, parse_run_id};
use workload::ledger::{Entry, LedgerWriter, Outcome};
use workload::telemetry::{self, Record, file_safe};

use super::{AuditError, Report, audit_files};

/// Messages taken per receive.
const BATCH: usize = 100;
/// Long enough to save a batch; an audit killed mid-batch leaves the rest to come back after it.
const LEASE: Duration = Duration::from_secs(60);
/// The channel is drained when a receive this long finds nothing, twice in a row.
const IDLE_WAIT: Duration = Duration::from_secs(1);
const IDLE_ROUNDS: u32 = 2;
/// Failed receives in a row before the audit gives up.
const MAX_FAILURES: u32 = 10;

/// What a drain took off the channel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub ledger_records: u64,
    pub producer_lines: u64,
    /// Messages that were no record this version reads (counted, acked, not saved).
    pub unreadable: u64,
    /// Heartbeats found on the records queue (they belong on the heartbeat queue; skipped).
    pub heartbeats: u64,
    /// Runs seen in this drain.
    pub runs: Vec<String>,
}

/// Why `audit --queue` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Queue(#[from] queues::QueueError),
    #[error("cannot write {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no records of run {run} in {dir}: nothing on the channel, and nothing saved by an earlier audit"
    )]
    NoRun { run: String, dir: PathBuf },
    #[error(
        "no telemetry channel {channel}: no producer or consumer of this queue ran with --telemetry on (check the URL; to re-audit what an earlier audit saved: audit --producer {dir}/RUN/producers.jsonl --ledger {dir}/RUN)",
        dir = dir.display()
    )]
    NoChannel { channel: String, dir: PathBuf },
    #[error("no records in {dir}: nothing on the channel, and nothing saved by an earlier audit")]
    Empty { dir: PathBuf },
    #[error(transparent)]
    Ledger(#[from] workload::ledger::LedgerError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Drains the telemetry channel of `queue` (the work queue's URL) into `save`, then audits `save` (only
/// `run`'s records, when given).
///
/// # Errors
/// When the channel cannot be read, `save` cannot be written, or the saved files cannot be audited.
pub async fn audit_queue(
    queue: &QueueUrl,
    run: Option<u64>,
    save: &Path,
) -> Result<(Drained, Report), ChannelError> {
    let drained = drain(queue, save).await?;
    let report = audit_saved(save, run)?;
    Ok((drained, report))
}

/// Takes every record off the channel into `save`, each saved (written to the kernel) before it is acked.
///
/// # Errors
/// When the channel cannot be read for [`MAX_FAILURES`] attempts, or a file cannot be written.
pub async fn drain(queue: &QueueUrl, save: &Path) -> Result<Drained, ChannelError> {
    let url = queue.sibling(telemetry::RECORDS_SUFFIX)?;
    let channel = match url.open_existing().await {
        Ok(q) => q,
        // Nothing of this queue ever published: most likely a mistyped URL. Auditing what the save directory
        // holds would report another queue's run as this one's, so say so instead.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ChannelError::NoChannel {
                channel: url.to_string(),
                dir: save.to_path_buf(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut drained = Drained::default();
    let (mut idle, mut failures) = (0, 0);
    while idle < IDLE_ROUNDS {
        let got = match channel.receive(BATCH, LEASE, IDLE_WAIT).await {
            Ok(got) => {
                failures = 0;
                got
            }
            Err(e) if failures + 1 < MAX_FAILURES => {
                failures += 1;
                tracing::warn!(error = %e, "reading the telemetry channel failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 << failures.min(4))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if got.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        let mut batch = SaveBatch::default();
        let mut receipts = Vec::with_capacity(got.len());
        for d in got {
            batch.add(&d.body, &mut drained);
            receipts.push(d.receipt);
        }
        batch.write(save, &mut drained)?;
        // Saved: now it may leave the channel. A failed ack brings the batch back later, as duplicates of
        // lines saved now, never as a loss.
        if let Err(e) = channel.ack(receipts).await {
            tracing::warn!(error = %e, "could not ack saved telemetry records; they will be read again (duplicates)");
        }
    }
    Ok(drained)
}

/// One receive's records, grouped by the file they go to.
#[derive(Default)]
struct SaveBatch {
    ledgers: BTreeMap<(u64, String), Vec<(Entry, Outcome)>>,
    producers: BTreeMap<u64, Vec<(u64, String)>>,
}

impl SaveBatch {
    fn add(&mut self, body: &[u8], drained: &mut Drained) {
        match Record::decode(body) {
            Ok(Record::Ledger(batch)) => {
                let consumer = file_safe(&batch.consumer);
                batch.for_each_entry(|r| match r {
                    Ok((e, o)) => {
                        drained.ledger_records += 1;
                        self.ledgers
                            .entry((e.run_id, consumer.clone()))
                            .or_default()
                            .push((e, o));
                    }
                    Err(bad) => {
                        drained.unreadable += 1;
                        tracing::warn!("{bad}: skipped");
                    }
                });
            }
            Ok(Record::Producer(p)) => match parse_run_id(&p.line.run_id) {
                Some(run) => {
                    drained.producer_lines += 1;
                    let ts = p.line.head.ts_us;
                    let text = serde_json::to_string(&p.line).unwrap_or_default();
                    self.producers.entry(run).or_default().push((ts, text));
                }
                None => {
                    drained.unreadable += 1;
                    tracing::warn!(run = %p.line.run_id, "producer line with a bad run id: skipped");
                }
            },
            Ok(Record::Heartbeat(_)) => drained.heartbeats += 1,
            Err(e) => {
                drained.unreadable += 1;
                if drained.unreadable <= 5 {
                    tracing::warn!(error = %e, "unreadable message on the telemetry channel: skipped");
                }
            }
        }
    }

    fn write(self, save: &Path, drained: &mut Drained) -> Result<(), ChannelError> {
        let save_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ChannelError::Save { path, source }
        };
        let mut note_run = |run: u64| {
            let run = format_run_id(run);
            if !drained.runs.contains(&run) {
                drained.runs.push(run);
            }
        };
        for ((run, consumer), entries) in self.ledgers {
            note_run(run);
            let dir = save.join(format_run_id(run));
            std::fs::create_dir_all(&dir).map_err(save_err(&dir))?;
            let path = dir.join(format!("{consumer}.ledger"));
            let mut w = LedgerWriter::open(&path)?;
            for (e, o) in entries {
                w.push_outcome(e, o);
            }
            w.flush()?;
        }
        for (run, mut lines) in self.producers {
            note_run(run);
            let dir = save.join(format_run_id(run));
            std::fs::create_dir_all(&dir).map_err(save_err(&dir))?;
            let path = dir.join(PRODUCERS_FILE);
            // In time order, so that a killed producer's last interval line is the last one.
            lines.sort();
            let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(save_err(&path))?;
        }
        Ok(())
    }
}

/// The producers' lines of a run, in its directory.
pub const PRODUCERS_FILE: &str = "producers.jsonl";

/// Audits what [`drain`] saved in `save`: one run's directory, or every run's together.
///
/// # Errors
/// When there is nothing to audit, or the files cannot be read.
pub fn audit_saved(save: &Path, run: Option<u64>) -> Result<Report, ChannelError> {
    let dirs: Vec<PathBuf> = match run {
        Some(run) => {
            let dir = save.join(format_run_id(run));
            if !dir.join(PRODUCERS_FILE).is_file() {
                return Err(ChannelError::NoRun {
                    run: format_run_id(run),
                    dir: save.to_path_buf(),
                });
            }
            vec![dir]
        }
        None => {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(save)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(PRODUCERS_FILE).is_file())
                .collect();
            dirs.sort();
            if dirs.is_empty() {
                return Err(ChannelError::Empty {
                    dir: save.to_path_buf(),
                });
            }
            dirs
        }
    };
    let producers: Vec<PathBuf> = dirs.iter().map(|d| d.join(PRODUCERS_FILE)).collect();
    // A run whose consumers recorded nothing yet has no ledger: the audit of its directory reports it all lost.
    let ledgers: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| super::ledger_files(d).is_ok())
        .cloned()
        .collect();
    let ledger_list = if ledgers.is_empty() {
        // audit_files wants a ledger: an empty one in the first run's directory stands for "none".
        let empty = dirs[0].join("none.ledger");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&empty)
            .map_err(|source| ChannelError::Save {
                path: empty.clone(),
                source,
            })?;
        vec![empty]
    } else {
        ledgers
    };
    Ok(audit_files(&producers, &ledger_list)?)
}

//! The ledger: one line per message a consumer acked, so that loss and duplicates can be audited across any
//! number of consumer processes.
//!
//! Format: one line per message, `RUN PRODUCER SEQ\n` (run id as 16 hex digits, the others decimal), the same
//! fields as the [`envelope`](crate::envelope). Consumers append to their own file; the audit reads them all.
//!
//! A message the consumer *set aside* as poison (delivered more often than `--max-deliveries` allows) is acked
//! too, and recorded as `RUN PRODUCER SEQ poison DELIVERIES\n`, DELIVERIES being the backend's delivery count
//! when it was set aside. The audit counts it as accounted for (not lost) but not consumed: its work never
//! succeeded. Readers older than the poison marker count such a line as malformed, never as consumed.
//!
//! Ordering is what makes the ledger honest: a consumer writes an entry *before* it acks the message, and hands
//! the bytes to the kernel (`write`) before the ack is sent. A consumer killed between the two leaves an entry
//! for a message that will be delivered again: the audit then reports a duplicate, which is the truth
//! (at-least-once delivery did process it twice). The reverse order could report a processed message as lost.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::envelope::{parse_run_id, write_dec, write_hex16};

/// One acked message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub run_id: u64,
    pub producer_id: u32,
    pub seq: u64,
}

/// How a message left the queue: what a ledger line says beyond the message's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Worked on successfully, then acked.
    Consumed,
    /// Set aside without successful work after this many deliveries (the backend's count), then acked.
    Poison { deliveries: u32 },
}

/// Ledger file errors, with the path.
#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("cannot open ledger {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write ledger {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read ledger {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The file holds something no consumer wrote: auditing it would report every message lost.
    #[error(
        "{path} is not a ledger (line {line}: expected `RUN PRODUCER SEQ` lines such as \
         `00000000000000ab 3 17`, one per acked message; found {found})"
    )]
    NotALedger {
        path: PathBuf,
        line: u64,
        found: String,
    },
}

/// Appends entries to a ledger file. Entries are buffered by the caller's batch and written with one `write`.
pub struct LedgerWriter {
    path: PathBuf,
    /// Shared with [`PendingWrite`]s, which write a batch elsewhere (inside a queue's transaction).
    file: Arc<File>,
    buf: Vec<u8>,
}

/// A batch of entries taken out of a [`LedgerWriter`] to be written by someone else at the right moment:
/// the embedded queue writes it inside the transaction of its acks, before the commit.
pub struct PendingWrite {
    path: PathBuf,
    file: Arc<File>,
    bytes: Vec<u8>,
}

impl PendingWrite {
    /// Hands the batch to the kernel, as [`LedgerWriter::flush`] does.
    pub fn write(self) -> Result<(), LedgerError> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        (&*self.file)
            .write_all(&self.bytes)
            .map_err(|source| LedgerError::Write {
                path: self.path,
                source,
            })
    }
}

impl LedgerWriter {
    /// Opens (creating if needed) a ledger for appending.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LedgerError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(LedgerWriter {
            path: path.to_path_buf(),
            file: Arc::new(file),
            buf: Vec::with_capacity(8192),
        })
    }

    /// Adds an entry for a consumed message to the pending batch.
    pub fn push(&mut self, e: Entry) {
        self.push_outcome(e, Outcome::Consumed);
    }

    /// Adds an entry with its outcome to the pending batch.
    pub fn push_outcome(&mut self, e: Entry, outcome: Outcome) {
        // The envelope's digit writers, not `write!`: a consumer pushes every message it acks, and formatting
        // the run id into a String of its own cost an allocation per message.
        write_hex16(&mut self.buf, e.run_id);
        self.buf.push(b' ');
        write_dec(&mut self.buf, u64::from(e.producer_id));
        self.buf.push(b' ');
        write_dec(&mut self.buf, e.seq);
        if let Outcome::Poison { deliveries } = outcome {
            self.buf.extend_from_slice(b" poison ");
            write_dec(&mut self.buf, u64::from(deliveries));
        }
        self.buf.push(b'\n');
    }

    /// The pending batch, to be written by [`PendingWrite::write`] instead of [`LedgerWriter::flush`].
    pub fn take_pending(&mut self) -> PendingWrite {
        PendingWrite {
            path: self.path.clone(),
            file: self.file.clone(),
            bytes: std::mem::take(&mut self.buf),
        }
    }

    /// Hands the pending batch to the kernel. After this returns, the entries survive the process being killed.
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = (&*self.file).write_all(&self.buf);
        self.buf.clear();
        result.map_err(|source| LedgerError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// What reading a ledger found besides entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadReport {
    /// Lines of consumed messages.
    pub entries: u64,
    /// Lines of messages set aside as poison.
    pub poison: u64,
    /// Lines that are not `RUN PRODUCER SEQ` (for example a line cut short by a crash mid-write).
    pub malformed: u64,
}

/// Reads the entries of consumed messages in a ledger, calling `f` for each; poison lines are only counted
/// (in [`ReadReport::poison`]) and malformed lines are counted, not fatal.
pub fn read(path: &Path, mut f: impl FnMut(Entry)) -> Result<ReadReport, LedgerError> {
    read_outcomes(path, |e, outcome| {
        if outcome == Outcome::Consumed {
            f(e)
        }
    })
}

/// Reads every line of a ledger with its outcome, calling `f` for each; malformed lines are counted, not
/// fatal, once the file has shown it is a ledger.
///
/// # Errors
/// [`LedgerError::NotALedger`] when a line before the first entry holds a byte no ledger line has (a text or
/// binary file given by mistake); [`LedgerError::Read`] when the file cannot be read.
pub fn read_outcomes(
    path: &Path,
    mut f: impl FnMut(Entry, Outcome),
) -> Result<ReadReport, LedgerError> {
    let read_err = |source| LedgerError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut report = ReadReport::default();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(64);
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
            return Ok(report);
        }
        number += 1;
        let parsed = parse_line(&line);
        // Until the first entry, a line that cannot be a torn ledger line says the file is not a ledger at all.
        // A torn line (a consumer killed mid-write, then restarted on the same file) has only ledger bytes.
        if parsed.is_none()
            && report.entries + report.poison == 0
            && !line.iter().all(|b| is_ledger_byte(*b))
        {
            return Err(LedgerError::NotALedger {
                path: path.to_path_buf(),
                line: number,
                found: describe(&line),
            });
        }
        match parsed {
            Some((e, outcome)) => {
                match outcome {
                    Outcome::Consumed => report.entries += 1,
                    Outcome::Poison { .. } => report.poison += 1,
                }
                f(e, outcome)
            }
            None => report.malformed += 1,
        }
    }
}

/// Whether `b` can occur in a ledger line: hex digits, decimal digits, spaces, the letters of `poison`.
fn is_ledger_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || matches!(b, b' ' | b'\n' | b'p' | b'o' | b'i' | b's' | b'n')
}

/// What a line that is not a ledger line holds, short, for the error.
fn describe(line: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    match std::str::from_utf8(text) {
        Ok(t) if !t.chars().any(|c| c.is_control() && c != '\t') => {
            let short: String = t.chars().take(SHOWN).collect();
            let more = if t.chars().count() > SHOWN { "…" } else { "" };
            format!("{short:?}{more}")
        }
        // Not text: quoting it would print control bytes to the terminal.
        _ => "binary data".to_string(),
    }
}

fn parse_line(line: &[u8]) -> Option<(Entry, Outcome)> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
    let mut parts = line.split(' ');
    let run_id = parse_run_id(parts.next()?)?;
    let producer_id = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let outcome = match parts.next() {
        None => Outcome::Consumed,
        Some("poison") => Outcome::Poison {
            deliveries: parts.next()?.parse().ok()?,
        },
        Some(_) => return None,
    };
    parts.next().is_none().then_some((
        Entry {
            run_id,
            producer_id,
            seq,
        },
        outcome,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_written_are_read_back_and_torn_lines_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1.ledger");
        let mut w = LedgerWriter::open(&path).unwrap();
        let a = Entry {
            run_id: 0xabc,
            producer_id: 7,
            seq: 0,
        };
        let b = Entry {
            run_id: u64::MAX,
            producer_id: u32::MAX,
            seq: u64::MAX,
        };
        w.push(a);
        w.push(b);
        w.flush().unwrap();
        // A crash mid-write leaves a line without its newline.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"0000000000000abc 7 ")
            .unwrap();
        let mut got = vec![];
        let report = read(&path, |e| got.push(e)).unwrap();
        assert_eq!(got, vec![a, b]);
        assert_eq!(
            report,
            ReadReport {
                entries: 2,
                poison: 0,
                malformed: 1
            }
        );
    }

    #[test]
    fn poison_lines_carry_their_delivery_count_and_are_not_consumed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1.ledger");
        let mut w = LedgerWriter::open(&path).unwrap();
        let a = Entry {
            run_id: 1,
            producer_id: 2,
            seq: 3,
        };
        let b = Entry { seq: 4, ..a };
        w.push(a);
        w.push_outcome(b, Outcome::Poison { deliveries: 3 });
        w.flush().unwrap();
        // Lines a reader must refuse rather than guess at.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(
                b"0000000000000001 2 5 poison\n0000000000000001 2 6 poison x\n\
                  0000000000000001 2 7 retried 1\n0000000000000001 2 8 poison 1 2\n",
            )
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("0000000000000001 2 3\n0000000000000001 2 4 poison 3\n"));
        let mut all = vec![];
        let report = read_outcomes(&path, |e, o| all.push((e, o))).unwrap();
        assert_eq!(
            all,
            vec![
                (a, Outcome::Consumed),
                (b, Outcome::Poison { deliveries: 3 })
            ]
        );
        assert_eq!(
            report,
            ReadReport {
                entries: 1,
                poison: 1,
                malformed: 4
            }
        );
        let mut consumed = vec![];
        read(&path, |e| consumed.push(e)).unwrap();
        assert_eq!(consumed, vec![a], "read yields consumed messages only");
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&[u8], u64, &str)] = &[
            (
                b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1\n",
                1,
                "\"root:x:0:0",
            ),
            (b"\n# notes\n0000000000000001 2 3\n", 2, "\"# notes\""),
            (b"\x7fELF\x02\x01\x01\0\0\0", 1, "binary data"),
        ];
        for (i, (bytes, line, found)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.ledger"));
            std::fs::write(&path, bytes).unwrap();
            let e = read(&path, |_| {}).unwrap_err();
            assert!(
                matches!(e, LedgerError::NotALedger { line: l, .. } if l == *line),
                "{e}"
            );
            let text = e.to_string();
            assert!(
                text.contains("is not a ledger") && text.contains(found),
                "{text}"
            );
            assert!(text.contains("RUN PRODUCER SEQ"), "{text}");
        }
        // A first line torn by a kill, then a restarted consumer's entries: a ledger, one malformed line.
        let path = dir.path().join("torn.ledger");
        std::fs::write(
            &path,
            b"0000000000000001 2 0000000000000001 2 4\n0000000000000001 2 5\n",
        )
        .unwrap();
        let report = read(&path, |_| {}).unwrap();
        assert_eq!((report.entries, report.malformed), (1, 1));
        // An empty file is an empty ledger (a consumer that acked nothing): the audit judges it.
        let path = dir.path().join("empty.ledger");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read(&path, |_| {}).unwrap(), ReadReport::default());
    }
}

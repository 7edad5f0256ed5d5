//! The ledger: one line per message a consumer acked, so that loss and duplicates can be audited across any
//! number of consumer processes.
//!
//! Format: one line per message, `RUN PRODUCER SEQ\n` (run id as 16 hex digits, the others decimal), the same
//! fields as the [`envelope`](crate::envelope). Consumers append to their own file; the audit reads them all.
//!
//! Ordering is what makes the ledger honest: a consumer writes an entry *before* it acks the message, and hands
//! the bytes to the kernel (`write`) before the ack is sent. A consumer killed between the two leaves an entry
//! for a message that will be delivered again: the audit then reports a duplicate, which is the truth
//! (at-least-once delivery did process it twice). The reverse order could report a processed message as lost.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::envelope::{format_run_id, parse_run_id};

/// One acked message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub run_id: u64,
    pub producer_id: u32,
    pub seq: u64,
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
}

/// Appends entries to a ledger file. Entries are buffered by the caller's batch and written with one `write`.
pub struct LedgerWriter {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
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
            file,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Adds an entry to the pending batch.
    pub fn push(&mut self, e: Entry) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = writeln!(
            self.buf,
            "{} {} {}",
            format_run_id(e.run_id),
            e.producer_id,
            e.seq
        );
    }

    /// Hands the pending batch to the kernel. After this returns, the entries survive the process being killed.
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf);
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
    pub entries: u64,
    /// Lines that are not `RUN PRODUCER SEQ` (for example a line cut short by a crash mid-write).
    pub malformed: u64,
}

/// Reads every entry of a ledger, calling `f` for each; malformed lines are counted, not fatal.
pub fn read(path: &Path, mut f: impl FnMut(Entry)) -> Result<ReadReport, LedgerError> {
    let read_err = |source| LedgerError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut report = ReadReport::default();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(64);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
            return Ok(report);
        }
        match parse_line(&line) {
            Some(e) => {
                report.entries += 1;
                f(e)
            }
            None => report.malformed += 1,
        }
    }
}

fn parse_line(line: &[u8]) -> Option<Entry> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
    let mut parts = line.split(' ');
    let run_id = parse_run_id(parts.next()?)?;
    let producer_id = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Entry {
        run_id,
        producer_id,
        seq,
    })
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
                malformed: 1
            }
        );
    }
}

//! The telemetry channel's records: what producers and consumers publish, beside the work queue, so that a
//! run can be audited and its consumers counted where no disk is shared (pods that come and go).
//!
//! The channel is a sibling of the work queue on the same backend (`queues::QueueUrl::sibling`): the work
//! queue `work` has `work-telemetry` for ledger records and producers' lines, and `work-heartbeat` for
//! heartbeats. Two queues, because reading is destructive on most backends: `scorecard watch` takes the
//! heartbeats while it runs, and must never take the ledger records that `audit --queue` needs afterwards.
//!
//! Each message body is one JSON [`Record`], tagged by `"t"`:
//! - `ledger2` (`ledger` before ranges): a consumer's ledger entries for one ack batch, the same fields as a
//!   file ledger line ([`crate::ledger`]), consumed ones as ranges ([`LedgerBatch`]); published, and confirmed
//!   by the backend, **before** the batch is acked;
//! - `producer`: a producer's stats line (its confirmed `0..seq_end`, unconfirmed ranges, and the summary),
//!   exactly as it writes it on stdout ([`crate::contract::Producer`]), so the audit reads it with the same code;
//! - `heartbeat`: a consumer alive (every stats interval) with its slots and busy ones, or saying goodbye.
//!
//! Records are small and batched (one message per ack batch, split at [`LEDGER_ENTRIES_PER_MESSAGE`] so that a
//! message stays under every backend's size limit, Azure's 48 KiB of base64 being the smallest).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contract;
use crate::envelope::{format_run_id, parse_run_id};
use crate::ledger::{Entry, Outcome};

/// The suffix of the sibling queue that carries ledger records and producers' lines.
pub const RECORDS_SUFFIX: &str = "telemetry";
/// The suffix of the sibling queue that carries heartbeats.
pub const HEARTBEAT_SUFFIX: &str = "heartbeat";

/// How long a heartbeat lives on a backend that can expire messages: a watcher counts a consumer from beats at
/// most 2.5 intervals old, so anything past ten intervals (and a minute, for slow watchers and clock skew) only
/// piles up where no watcher runs: 8,640 beats a day per consumer at the default 10 s.
pub fn heartbeat_expiry(stats_interval: Duration) -> Duration {
    (stats_interval * 10).max(Duration::from_secs(60))
}

/// Ledger entries per message: about 60 bytes each as JSON, so under 30 KiB a message.
pub const LEDGER_ENTRIES_PER_MESSAGE: usize = 400;

/// One message on the telemetry channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// Tagged `ledger2` since consumed messages travel as ranges: an audit from before ranges counts such a
    /// record as unreadable and says so, where under the old tag it would have read the poison entries alone
    /// and reported every consumed message lost. Records tagged `ledger` (entries only) are still read.
    #[serde(rename = "ledger2", alias = "ledger")]
    Ledger(LedgerBatch),
    Producer(ProducerLine),
    Heartbeat(Heartbeat),
}

/// A consumer's ledger entries for one ack batch.
///
/// Consumed messages travel as runs of consecutive sequence numbers (`ranges`), since a consumer takes its
/// messages in order from a queue most of the time: a batch of 100 is one or two ranges, ~40 bytes, where 100
/// entries were ~5,500 bytes of JSON, a run-id string each, to make, send and store. Poison entries stay
/// one by one (`entries`), with their delivery counts. A message consumed twice in one batch is two ranges,
/// never one: a range covers each sequence number once, so duplicates stay visible to the audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBatch {
    /// The consumer that wrote them ([`consumer_id`]): the audit keeps one ledger file per consumer.
    pub consumer: String,
    /// Consumed messages: `[run, producer, first seq, last seq]`, both ends included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<SeqRange>,
    /// Entries one by one: messages set aside as poison (and consumed ones, from writers before ranges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<LedgerRecord>,
}

/// Consumed messages `first..=last` of one producer of one run, as a JSON array `[run, producer, first, last]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange(pub String, pub u32, pub u64, pub u64);

/// The longest range a reader expands: far above what a writer puts in one message
/// ([`LEDGER_ENTRIES_PER_MESSAGE`]), and low enough that a corrupt body cannot make the audit allocate without
/// bound.
pub const MAX_RANGE: u64 = 1 << 20;

/// A ledger record that cannot be read: its run id is not 16 hex digits, or its range is backwards or longer
/// than [`MAX_RANGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ledger record (run {run:?}, seq {first}..={last})")]
pub struct BadRecord {
    pub run: String,
    pub first: u64,
    pub last: u64,
}

impl LedgerBatch {
    /// Every entry of the batch, ranges expanded, or why a record could not be read; `f` sees them in no
    /// particular order.
    pub fn for_each_entry(&self, mut f: impl FnMut(Result<(Entry, Outcome), BadRecord>)) {
        for SeqRange(run, producer, first, last) in &self.ranges {
            let bad = || BadRecord {
                run: run.clone(),
                first: *first,
                last: *last,
            };
            match parse_run_id(run) {
                Some(run_id) if first <= last && last - first < MAX_RANGE => {
                    for seq in *first..=*last {
                        let e = Entry {
                            run_id,
                            producer_id: *producer,
                            seq,
                        };
                        f(Ok((e, Outcome::Consumed)));
                    }
                }
                _ => f(Err(bad())),
            }
        }
        for r in &self.entries {
            f(r.entry().ok_or_else(|| BadRecord {
                run: r.run.clone(),
                first: r.seq,
                last: r.seq,
            }));
        }
    }

    /// The batch for `entries`: consumed ones merged into ranges, poison ones listed.
    pub fn new(consumer: &str, entries: &[(Entry, Outcome)]) -> LedgerBatch {
        let mut consumed: Vec<Entry> = Vec::with_capacity(entries.len());
        let mut poison = Vec::new();
        for &(e, o) in entries {
            match o {
                Outcome::Consumed => consumed.push(e),
                Outcome::Poison { .. } => poison.push(LedgerRecord::new(e, o)),
            }
        }
        consumed.sort_unstable_by_key(|e| (e.run_id, e.producer_id, e.seq));
        let mut ranges: Vec<(u64, u32, u64, u64)> = Vec::new();
        for e in consumed {
            match ranges.last_mut() {
                // Only the next number extends a range: a repeated one starts a new range (a duplicate).
                Some((run, producer, _, last))
                    if *run == e.run_id
                        && *producer == e.producer_id
                        && last.checked_add(1) == Some(e.seq) =>
                {
                    *last = e.seq;
                }
                _ => ranges.push((e.run_id, e.producer_id, e.seq, e.seq)),
            }
        }
        LedgerBatch {
            consumer: consumer.to_string(),
            ranges: ranges
                .into_iter()
                .map(|(run, producer, first, last)| {
                    SeqRange(format_run_id(run), producer, first, last)
                })
                .collect(),
            entries: poison,
        }
    }
}

/// One ledger entry: the message's identity and, for one set aside, its delivery count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The run id, 16 hex digits as in the envelope and the file ledger.
    pub run: String,
    pub producer: u32,
    pub seq: u64,
    /// Set aside as poison after this many deliveries; absent for a consumed message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<u32>,
}

impl LedgerRecord {
    pub fn new(e: Entry, outcome: Outcome) -> LedgerRecord {
        LedgerRecord {
            run: format_run_id(e.run_id),
            producer: e.producer_id,
            seq: e.seq,
            poison: match outcome {
                Outcome::Consumed => None,
                Outcome::Poison { deliveries } => Some(deliveries),
            },
        }
    }

    /// The entry and outcome, or `None` when the run id is not 16 hex digits.
    pub fn entry(&self) -> Option<(Entry, Outcome)> {
        let entry = Entry {
            run_id: parse_run_id(&self.run)?,
            producer_id: self.producer,
            seq: self.seq,
        };
        let outcome = match self.poison {
            None => Outcome::Consumed,
            Some(deliveries) => Outcome::Poison { deliveries },
        };
        Some((entry, outcome))
    }
}

/// A producer's stats line, as it wrote it on stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProducerLine {
    pub line: contract::Producer,
}

/// A consumer's sign of life, every stats interval, and its last word on a graceful exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub consumer: String,
    /// When it was sent, µs since the epoch.
    pub at_us: u64,
    /// The sender's stats interval in ms: a consumer that misses two is gone.
    pub interval_ms: u64,
    /// False only in the goodbye.
    pub alive: bool,
    /// `--max-in-flight`.
    pub slots: u64,
    /// Messages held (being worked on or waiting for their ack).
    pub busy: u64,
    /// The last record of a graceful exit.
    #[serde(default)]
    pub goodbye: bool,
}

/// A body that is not a record this version reads.
#[derive(Debug, thiserror::Error)]
#[error("not a telemetry record: {0}")]
pub struct DecodeError(String);

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs of strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// # Errors
    /// When the body is not JSON, or not a record of a known type.
    pub fn decode(body: &[u8]) -> Result<Record, DecodeError> {
        serde_json::from_slice(body).map_err(|e| DecodeError(e.to_string()))
    }
}

/// The message bodies of one ack batch's ledger entries, split to stay small: at most
/// [`LEDGER_ENTRIES_PER_MESSAGE`] entries a message, however few ranges they make.
pub fn ledger_bodies(consumer: &str, entries: &[(Entry, Outcome)]) -> Vec<Vec<u8>> {
    entries
        .chunks(LEDGER_ENTRIES_PER_MESSAGE)
        .map(|chunk| Record::Ledger(LedgerBatch::new(consumer, chunk)).encode())
        .collect()
}

/// A consumer's id on the channel: the host name (a pod's name on Kubernetes, a container id in Docker), the
/// process id and a random part, since pids repeat across containers. Only `[A-Za-z0-9._-]`, so that the
/// audit can name a ledger file after it.
pub fn consumer_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let host = file_safe(&host);
    let host = if host.is_empty() { "consumer" } else { &host };
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// `s` with every character outside `[A-Za-z0-9._-]` replaced by `_`, at most 100 of them (a file name).
pub fn file_safe(s: &str) -> String {
    s.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_live_ten_intervals_and_at_least_a_minute() {
        let s = Duration::from_secs;
        assert_eq!(heartbeat_expiry(s(10)), s(100));
        assert_eq!(heartbeat_expiry(s(1)), s(60));
        assert_eq!(heartbeat_expiry(Duration::ZERO), s(60));
        assert_eq!(heartbeat_expiry(s(30)), s(300));
    }

    /// Every entry of the bodies, sorted, and the bad records.
    fn read_back(bodies: &[Vec<u8>]) -> (Vec<(Entry, Outcome)>, Vec<BadRecord>) {
        let (mut good, mut bad) = (vec![], vec![]);
        for b in bodies {
            let Record::Ledger(batch) = Record::decode(b).unwrap() else {
                panic!("a ledger record");
            };
            batch.for_each_entry(|r| match r {
                Ok(e) => good.push(e),
                Err(e) => bad.push(e),
            });
        }
        good.sort_by_key(|(e, o)| (e.run_id, e.producer_id, e.seq, format!("{o:?}")));
        (good, bad)
    }

    fn sorted(mut v: Vec<(Entry, Outcome)>) -> Vec<(Entry, Outcome)> {
        v.sort_by_key(|(e, o)| (e.run_id, e.producer_id, e.seq, format!("{o:?}")));
        v
    }

    #[test]
    fn ledger_records_round_trip_and_split_under_the_size_limit() {
        // The worst case for size: no two sequence numbers consecutive, the largest numbers.
        let entries: Vec<(Entry, Outcome)> = (0..1000u64)
            .map(|i| {
                let e = Entry {
                    run_id: u64::MAX,
                    producer_id: u32::MAX - (i % 3) as u32,
                    seq: u64::MAX - 2 * i,
                };
                let o = if i % 7 == 0 {
                    Outcome::Poison { deliveries: 65535 }
                } else {
                    Outcome::Consumed
                };
                (e, o)
            })
            .collect();
        let bodies = ledger_bodies(&"c".repeat(100), &entries);
        assert_eq!(bodies.len(), 3, "1000 entries at 400 a message");
        for b in &bodies {
            assert!(b.len() < 48 * 1024, "{} bytes", b.len());
        }
        let (back, bad) = read_back(&bodies);
        assert!(bad.is_empty());
        assert_eq!(back, sorted(entries));
    }

    #[test]
    fn consecutive_messages_are_one_range_and_a_repeat_stays_a_duplicate() {
        let e = |producer_id, seq| Entry {
            run_id: 0xab,
            producer_id,
            seq,
        };
        // 100 in order from producer 1, but shuffled; seq 50 twice; producer 2's 7 and 9; one poison.
        let mut entries: Vec<(Entry, Outcome)> = (0..100)
            .rev()
            .map(|s| (e(1, s), Outcome::Consumed))
            .collect();
        entries.push((e(1, 50), Outcome::Consumed));
        entries.push((e(2, 9), Outcome::Consumed));
        entries.push((e(2, 7), Outcome::Consumed));
        entries.push((e(2, 8), Outcome::Poison { deliveries: 4 }));
        let batch = LedgerBatch::new("c", &entries);
        let run = "00000000000000ab".to_string();
        assert_eq!(
            batch.ranges,
            vec![
                SeqRange(run.clone(), 1, 0, 50),
                SeqRange(run.clone(), 1, 50, 99),
                SeqRange(run.clone(), 2, 7, 7),
                SeqRange(run.clone(), 2, 9, 9),
            ]
        );
        assert_eq!(
            batch.entries,
            vec![LedgerRecord::new(
                e(2, 8),
                Outcome::Poison { deliveries: 4 }
            )]
        );
        let body = Record::Ledger(batch).encode();
        assert!(
            body.len() < 300,
            "{} bytes: {}",
            body.len(),
            String::from_utf8_lossy(&body)
        );
        assert!(body.starts_with(br#"{"t":"ledger2","consumer":"c","ranges":[["#));
        let (back, bad) = read_back(&[body]);
        assert!(bad.is_empty());
        assert_eq!(back.len(), 104, "seq 50 counted twice");
        assert_eq!(back, sorted(entries));
    }

    #[test]
    fn bad_ranges_are_reported_not_expanded_and_old_entries_still_read() {
        let line = r#"{"t":"ledger","consumer":"c","ranges":[["00000000000000ab",1,5,4],["xyz",1,0,0],["00000000000000ab",1,0,18446744073709551615],["00000000000000ab",2,3,4]],"entries":[{"run":"00000000000000ab","producer":1,"seq":2},{"run":"00000000000000ab","producer":1,"seq":3,"poison":3}]}"#;
        let (back, bad) = read_back(&[line.as_bytes().to_vec()]);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert_eq!((bad[0].first, bad[0].last), (5, 4));
        assert_eq!(bad[1].run, "xyz");
        assert_eq!(bad[2].last, u64::MAX);
        let e = |producer_id, seq| Entry {
            run_id: 0xab,
            producer_id,
            seq,
        };
        assert_eq!(
            back,
            vec![
                (e(1, 2), Outcome::Consumed),
                (e(1, 3), Outcome::Poison { deliveries: 3 }),
                (e(2, 3), Outcome::Consumed),
                (e(2, 4), Outcome::Consumed),
            ]
        );
    }

    #[test]
    fn records_are_tagged_json_and_bad_bodies_are_errors() {
        let hb = Record::Heartbeat(Heartbeat {
            consumer: "c1".into(),
            at_us: 5,
            interval_ms: 1000,
            alive: true,
            slots: 4,
            busy: 2,
            goodbye: false,
        });
        let text = String::from_utf8(hb.encode()).unwrap();
        assert!(
            text.starts_with(r#"{"t":"heartbeat","consumer":"c1""#),
            "{text}"
        );
        assert_eq!(Record::decode(text.as_bytes()).unwrap(), hb);
        let line = r#"{"t":"ledger","consumer":"c","entries":[{"run":"00000000000000ab","producer":1,"seq":2,"poison":3}]}"#;
        let Record::Ledger(b) = Record::decode(line.as_bytes()).unwrap() else {
            panic!("ledger");
        };
        assert_eq!(
            b.entries[0].entry().unwrap().1,
            Outcome::Poison { deliveries: 3 }
        );
        for bad in [&b"{}"[..], b"not json", br#"{"t":"gossip"}"#] {
            assert!(Record::decode(bad).is_err());
        }
        let bad_run = LedgerRecord {
            run: "xyz".into(),
            producer: 1,
            seq: 1,
            poison: None,
        };
        assert_eq!(bad_run.entry(), None);
    }

    #[test]
    fn ids_are_file_names() {
        assert_eq!(file_safe("../etc/pass wd"), "_etc_pass_wd");
        let id = consumer_id();
        assert_eq!(file_safe(&id), id);
    }
}

//! The telemetry channel's records: what producers and consumers publish, beside the work queue, so that a
//! run can be audited and its consumers counted where no disk is shared (pods that come and go).
//!
//! The channel is a sibling of the work queue on the same backend (`queues::QueueUrl::sibling`): the work
//! queue `work` has `work-telemetry` for ledger records and producers' lines, and `work-heartbeat` for
//! heartbeats. Two queues, because reading is destructive on most backends: `scorecard watch` takes the
//! heartbeats while it runs, and must never take the ledger records that `audit --queue` needs afterwards.
//!
//! Each message body is one JSON [`Record`], tagged by `"t"`:
//! - `ledger`: a consumer's ledger entries for one ack batch, the same fields as a file ledger line
//!   ([`crate::ledger`]); published, and confirmed by the backend, **before** the batch is acked;
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
    Ledger(LedgerBatch),
    Producer(ProducerLine),
    Heartbeat(Heartbeat),
}

/// A consumer's ledger entries for one ack batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBatch {
    /// The consumer that wrote them ([`consumer_id`]): the audit keeps one ledger file per consumer.
    pub consumer: String,
    pub entries: Vec<LedgerRecord>,
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

/// The message bodies of one ack batch's ledger entries, split to stay small.
pub fn ledger_bodies(consumer: &str, entries: &[(Entry, Outcome)]) -> Vec<Vec<u8>> {
    entries
        .chunks(LEDGER_ENTRIES_PER_MESSAGE)
        .map(|chunk| {
            Record::Ledger(LedgerBatch {
                consumer: consumer.to_string(),
                entries: chunk
                    .iter()
                    .map(|&(e, o)| LedgerRecord::new(e, o))
                    .collect(),
            })
            .encode()
        })
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

    #[test]
    fn ledger_records_round_trip_and_split_under_the_size_limit() {
        let entries: Vec<(Entry, Outcome)> = (0..1000u64)
            .map(|seq| {
                let e = Entry {
                    run_id: u64::MAX,
                    producer_id: u32::MAX,
                    seq: u64::MAX - seq,
                };
                let o = if seq % 7 == 0 {
                    Outcome::Poison { deliveries: 65535 }
                } else {
                    Outcome::Consumed
                };
                (e, o)
            })
            .collect();
        let bodies = ledger_bodies(&"c".repeat(100), &entries);
        assert_eq!(bodies.len(), 3, "1000 entries at 400 a message");
        let mut back = vec![];
        for b in &bodies {
            assert!(b.len() < 48 * 1024, "{} bytes", b.len());
            let Record::Ledger(batch) = Record::decode(b).unwrap() else {
                panic!("a ledger record");
            };
            back.extend(batch.entries.iter().map(|r| r.entry().unwrap()));
        }
        assert_eq!(back, entries);
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

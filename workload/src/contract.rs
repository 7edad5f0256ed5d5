//! The stdout contract, typed: one struct per line kind that a binary writes on stdout and another program
//! reads back (the README's "Stats: the stdout contract" documents the same fields).
//!
//! The writers (`producer`, `consumer`, `remainder`, `demo`, `audit`) fill these structs and
//! [`crate::stats::emit`] prints them; the readers (`audit`, `demo`, the tests) [`parse`] lines into them, so
//! that a renamed field breaks the build rather than a reader far away.
//!
//! Field order is declaration order (the JSON the binaries have always printed). Readers stay lenient, so that
//! lines from older and newer writers keep working: unknown fields are ignored (no `deny_unknown_fields`), and
//! a field an older writer did not have takes its default. Only what a reader cannot do without (a producer's
//! identity and `sent`) is required. Fields written in `summary` lines only are `Option`s skipped when `None`;
//! fields that may be `null` in a summary but are absent from intervals are `Option<Option<_>>`.

use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize};

/// Whether a line is a periodic one or the final one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Interval,
    Summary,
}

/// The fields every line starts with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub role: String,
    pub kind: Kind,
    /// Wall clock, µs since the Unix epoch.
    #[serde(default)]
    pub ts_us: u64,
    /// Seconds since the process started its work, rounded to the millisecond.
    #[serde(default)]
    pub elapsed_s: f64,
    /// Summary lines only: the peak resident set (`null` where /proc cannot tell).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub peak_rss_kib: Option<Option<u64>>,
}

impl Head {
    /// The head of a line written now by `role`, for a process that started its work at `started`.
    pub fn new(role: &str, kind: Kind, started: Instant) -> Head {
        Head {
            role: role.to_string(),
            kind,
            ts_us: crate::clock::unix_micros(),
            elapsed_s: round3(started.elapsed().as_secs_f64()),
            peak_rss_kib: (kind == Kind::Summary).then(crate::stats::peak_rss_kib),
        }
    }
}

/// A latency histogram's three figures, as the `{prefix}_p50_us`, `_p99_us` and `_max_us` fields carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &crate::stats::LatencyHistogram) -> Percentiles {
        Percentiles {
            p50_us: h.quantile(0.50),
            p99_us: h.quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// A producer's line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    #[serde(flatten)]
    pub head: Head,
    /// 16 hex digits.
    pub run_id: String,
    pub producer_id: u32,
    /// Confirmed by the queue.
    pub sent: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub throttled: u64,
    #[serde(default)]
    pub rate: f64,
    #[serde(default)]
    pub lateness_p50_us: u64,
    #[serde(default)]
    pub lateness_p99_us: u64,
    #[serde(default)]
    pub lateness_max_us: u64,
    #[serde(default)]
    pub first_sent_at_us: Option<u64>,
    /// Sequence numbers handed out; absent or `null` from old writers, which had no gaps (then `sent`).
    #[serde(default)]
    pub seq_end: Option<u64>,
    #[serde(default)]
    pub unconfirmed: u64,
    /// Summary only: `[first, count]` ranges given up unconfirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed_ranges: Option<Vec<[u64; 2]>>,
}

/// A consumer's line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Consumer {
    #[serde(flatten)]
    pub head: Head,
    pub pid: u32,
    pub received: u64,
    pub acked: u64,
    pub released: u64,
    pub foreign: u64,
    pub redelivered: u64,
    pub lease_lost: u64,
    pub errors: u64,
    pub throttled: u64,
    pub failed: u64,
    pub poison: u64,
    pub unreleased: u64,
    pub in_flight: u64,
    /// Busy slot-seconds ÷ `slots`, rounded to the µs.
    pub busy_s: f64,
    pub slots: u64,
    pub rate: f64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_max_us: u64,
    pub first_received_at_us: Option<u64>,
    pub last_acked_at_us: Option<u64>,
}

/// A remainder's line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remainder {
    #[serde(flatten)]
    pub head: Head,
    pub units: u64,
    pub units_per_s: f64,
    pub threads: u64,
    pub mode: String,
    /// Summary only: `sched_idle`, `nice19` or `normal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Summary only; `null` when the unit was not calibrated.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub unit_us: Option<Option<u64>>,
    /// Summary only; `null` when no unit was done.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub first_unit_at_us: Option<Option<u64>>,
}

/// The demo's `interval` line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoInterval {
    #[serde(flatten)]
    pub head: Head,
    pub phase: String,
    pub depth: Option<u64>,
    pub in_flight: Option<u64>,
    pub produce_rate: f64,
    pub consume_rate: f64,
    pub consumers: u64,
    /// 0 before anything was consumed.
    pub e2e_p99_us: u64,
    /// `null` without remainders.
    pub remainder_units_per_s: Option<f64>,
}

/// The demo's `summary` line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoSummary {
    #[serde(flatten)]
    pub head: Head,
    pub produced: u64,
    pub consumed: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub poison: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_max_us: u64,
    pub duration_s: f64,
    pub consumers_max: u64,
    pub unexpected: u64,
    /// `null` when the depth could not be read.
    pub left_in_queue: Option<u64>,
}

/// The audit's `summary` line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Audit {
    #[serde(flatten)]
    pub head: Head,
    pub produced: u64,
    pub consumed: u64,
    pub poison: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub unconfirmed: u64,
    pub unconfirmed_consumed: u64,
    pub malformed_ledger_lines: u64,
    pub poison_entries: u64,
    pub poison_after_consumed: u64,
}

/// One stdout line of any role, parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum Stats {
    Producer(Producer),
    Consumer(Consumer),
    Remainder(Remainder),
    DemoInterval(DemoInterval),
    DemoSummary(DemoSummary),
    Audit(Audit),
    /// A role (or a kind) this version does not know, from a newer writer: its head only.
    Other(Head),
}

impl Stats {
    pub fn head(&self) -> &Head {
        match self {
            Stats::Producer(l) => &l.head,
            Stats::Consumer(l) => &l.head,
            Stats::Remainder(l) => &l.head,
            Stats::DemoInterval(l) => &l.head,
            Stats::DemoSummary(l) => &l.head,
            Stats::Audit(l) => &l.head,
            Stats::Other(h) => h,
        }
    }

    pub fn kind(&self) -> Kind {
        self.head().kind
    }

    pub fn is_summary(&self) -> bool {
        self.kind() == Kind::Summary
    }

    pub fn producer(&self) -> Option<&Producer> {
        match self {
            Stats::Producer(l) => Some(l),
            _ => None,
        }
    }

    pub fn consumer(&self) -> Option<&Consumer> {
        match self {
            Stats::Consumer(l) => Some(l),
            _ => None,
        }
    }

    pub fn remainder(&self) -> Option<&Remainder> {
        match self {
            Stats::Remainder(l) => Some(l),
            _ => None,
        }
    }

    /// The line as JSON text (without a newline), as its writer printed it (less fields this version does not
    /// know).
    pub fn to_json(&self) -> String {
        let text = match self {
            Stats::Producer(l) => serde_json::to_string(l),
            Stats::Consumer(l) => serde_json::to_string(l),
            Stats::Remainder(l) => serde_json::to_string(l),
            Stats::DemoInterval(l) => serde_json::to_string(l),
            Stats::DemoSummary(l) => serde_json::to_string(l),
            Stats::Audit(l) => serde_json::to_string(l),
            Stats::Other(h) => serde_json::to_string(h),
        };
        // Plain structs of numbers and strings always serialise.
        text.unwrap_or_default()
    }
}

/// Why a stdout line is not a stats line.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not a valid {role} {kind} line: {source}")]
    Invalid {
        role: String,
        kind: &'static str,
        source: serde_json::Error,
    },
}

impl ParseError {
    /// The role the line claimed, when it had one.
    pub fn role(&self) -> Option<&str> {
        match self {
            ParseError::NotJson(_) => None,
            ParseError::Invalid { role, .. } => Some(role),
        }
    }
}

/// Parses one stdout line. A line of a role or kind this version does not know is [`Stats::Other`], not an
/// error: newer writers may add them.
///
/// # Errors
/// When the line is not a JSON object with `role` and `kind`, or its fields do not fit its role's struct.
pub fn parse(line: &str) -> Result<Stats, ParseError> {
    /// The two fields that say which struct to read, as plain text, so that an unknown kind is no error.
    #[derive(Deserialize)]
    struct Probe {
        role: String,
        kind: String,
    }
    let value: serde_json::Value = serde_json::from_str(line).map_err(ParseError::NotJson)?;
    let probe: Probe = serde_json::from_value(value.clone()).map_err(ParseError::NotJson)?;
    let kind = match probe.kind.as_str() {
        "interval" => "interval",
        "summary" => "summary",
        _ => {
            return Ok(Stats::Other(Head {
                role: probe.role,
                ..Head::default()
            }));
        }
    };
    let invalid = |source| ParseError::Invalid {
        role: probe.role.clone(),
        kind,
        source,
    };
    let stats = match (probe.role.as_str(), kind) {
        ("producer", _) => Stats::Producer(serde_json::from_value(value).map_err(invalid)?),
        ("consumer", _) => Stats::Consumer(serde_json::from_value(value).map_err(invalid)?),
        ("remainder", _) => Stats::Remainder(serde_json::from_value(value).map_err(invalid)?),
        ("demo", "interval") => {
            Stats::DemoInterval(serde_json::from_value(value).map_err(invalid)?)
        }
        ("demo", _) => Stats::DemoSummary(serde_json::from_value(value).map_err(invalid)?),
        ("audit", _) => Stats::Audit(serde_json::from_value(value).map_err(invalid)?),
        _ => Stats::Other(serde_json::from_value(value).map_err(invalid)?),
    };
    Ok(stats)
}

/// Lines that did not parse, counted, with the first reason kept for the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub count: usize,
    pub first: Option<String>,
}

impl Skipped {
    /// Counts line `line_no` (1-based), skipped for `why`.
    pub fn add(&mut self, line_no: usize, why: &ParseError) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("line {line_no}: {why}"));
        }
    }

    /// `"{source}: skipped N line(s) that are not stats lines (first: line 3: …)"`, or `None` when none was.
    pub fn message(&self, source: &str) -> Option<String> {
        (self.count > 0).then(|| {
            format!(
                "{source}: skipped {} line(s) that are not stats lines (first: {})",
                self.count,
                self.first.as_deref().unwrap_or("?")
            )
        })
    }
}

/// Reads a field that may be `null` as `Some(None)`, so that "present and null" differs from "absent" (which
/// `#[serde(default)]` makes `None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Rounds to the millisecond (three decimals), as `elapsed_s` and `duration_s` are written.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One populated line of every kind, every optional field set: what the README must document (its test
/// serialises these and compares the field names).
pub fn examples() -> Vec<(&'static str, Kind, serde_json::Value)> {
    let head = |role: &str, kind| Head {
        role: role.into(),
        kind,
        peak_rss_kib: (kind == Kind::Summary).then_some(Some(1)),
        ..Head::default()
    };
    let mut out = Vec::new();
    for kind in [Kind::Interval, Kind::Summary] {
        let summary = kind == Kind::Summary;
        let lines = [
            (
                "producer",
                serde_json::to_value(Producer {
                    head: head("producer", kind),
                    unconfirmed_ranges: summary.then(Vec::new),
                    ..Producer::default()
                }),
            ),
            (
                "consumer",
                serde_json::to_value(Consumer {
                    head: head("consumer", kind),
                    ..Consumer::default()
                }),
            ),
            (
                "remainder",
                serde_json::to_value(Remainder {
                    head: head("remainder", kind),
                    priority: summary.then(String::new),
                    unit_us: summary.then_some(None),
                    first_unit_at_us: summary.then_some(None),
                    ..Remainder::default()
                }),
            ),
            (
                "demo",
                if summary {
                    serde_json::to_value(DemoSummary {
                        head: head("demo", kind),
                        ..DemoSummary::default()
                    })
                } else {
                    serde_json::to_value(DemoInterval {
                        head: head("demo", kind),
                        ..DemoInterval::default()
                    })
                },
            ),
        ];
        for (role, v) in lines {
            out.push((role, kind, v.unwrap_or_default()));
        }
        if summary {
            let audit = Audit {
                head: head("audit", kind),
                ..Audit::default()
            };
            out.push((
                "audit",
                kind,
                serde_json::to_value(audit).unwrap_or_default(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_their_field_order() {
        let line = r#"{"role":"remainder","kind":"summary","ts_us":5,"elapsed_s":1.5,"peak_rss_kib":null,"units":3,"units_per_s":2.0,"threads":1,"mode":"sleep","priority":"normal","unit_us":null,"first_unit_at_us":7}"#;
        let parsed = parse(line).unwrap();
        assert_eq!(parsed.to_json(), line);
        let r = parsed.remainder().unwrap();
        assert_eq!((r.unit_us, r.first_unit_at_us), (Some(None), Some(Some(7))));
        assert_eq!(r.head.peak_rss_kib, Some(None));
        let interval = r#"{"role":"remainder","kind":"interval","ts_us":5,"elapsed_s":1.5,"units":3,"units_per_s":2.0,"threads":1,"mode":"sleep"}"#;
        assert_eq!(parse(interval).unwrap().to_json(), interval);
    }

    #[test]
    fn unknown_fields_roles_and_kinds_are_no_error_and_old_lines_parse() {
        let newer = r#"{"role":"consumer","kind":"interval","acked":4,"from_the_future":[1]}"#;
        assert_eq!(parse(newer).unwrap().consumer().unwrap().acked, 4);
        let role = parse(r#"{"role":"judge","kind":"summary","x":1}"#).unwrap();
        assert!(
            matches!(role, Stats::Other(ref h) if h.role == "judge" && h.kind == Kind::Summary)
        );
        let kind = parse(r#"{"role":"producer","kind":"heartbeat"}"#).unwrap();
        assert!(matches!(kind, Stats::Other(_)));
        // A producer line from before seq_end and unconfirmed existed.
        let old = r#"{"role":"producer","kind":"summary","run_id":"00000000000000ff","producer_id":0,"sent":9}"#;
        let p = parse(old).unwrap();
        let p = p.producer().unwrap();
        assert_eq!(
            (p.sent, p.seq_end, p.unconfirmed_ranges.as_ref()),
            (9, None, None)
        );
    }

    #[test]
    fn bad_lines_are_errors_that_say_why() {
        let e = parse("not json").unwrap_err();
        assert!(e.to_string().starts_with("not JSON: "), "{e}");
        let e =
            parse(r#"{"role":"producer","kind":"summary","producer_id":0,"sent":1}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `run_id`"), "{e}");
        let e = parse(r#"{"role":"consumer","kind":"interval","acked":-1}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not a valid consumer interval line"),
            "{e}"
        );
        let mut skipped = Skipped::default();
        assert_eq!(skipped.message("f"), None);
        skipped.add(3, &e);
        skipped.add(4, &e);
        let m = skipped.message("f").unwrap();
        assert!(
            m.starts_with(
                "f: skipped 2 line(s) that are not stats lines (first: line 3: not a valid"
            ),
            "{m}"
        );
    }
}

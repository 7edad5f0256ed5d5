//! The wire format of a message.
//!
//! Every message the producer sends is one line of printable ASCII, so that it is safe on any backend (NSQ
//! takes bytes, Azure Storage Queues take XML text) and readable in a queue browser:
//!
//! ```text
//! mw1 RUN PRODUCER SEQ INTENDED_US SENT_US WORK[ PADDING]
//! mw1 9f3a0c2e4b1d7a65 42 1007 1764064800123456 1764064800123789 s300000 ..........
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `mw1` | magic and version: "message workload", format 1. A later format changes the digit. |
//! | `RUN` | run id, 16 lowercase hex digits: ties the producers and consumers of one run together |
//! | `PRODUCER` | producer id, decimal `u32`, unique within a run |
//! | `SEQ` | sequence number, decimal, from 0, dense per producer: the audit finds gaps and repeats with it |
//! | `INTENDED_US` | when the rate schedule meant the message to be sent, µs since the Unix epoch (UTC) |
//! | `SENT_US` | when it was actually handed to the backend, same unit |
//! | `WORK` | `-` (the consumer decides), `sN` (sleep N µs) or `cN` (N µs of CPU) |
//! | `PADDING` | optional: a space and `.`s up to the requested message size; ignored by readers |
//!
//! A body that does not start with `mw` is [`DecodeError::Foreign`] (the original Ruby producer sent bare
//! UUIDs); one that starts with `mw` but is not a valid format-1 envelope is [`DecodeError::Malformed`] or
//! [`DecodeError::UnsupportedVersion`]. Decoding never panics, whatever the bytes.

use std::time::Duration;

use thiserror::Error;

use crate::work::Work;

/// The first bytes of every envelope: magic `mw`, format version `1`, separator.
pub const MAGIC: &[u8] = b"mw1 ";

/// The metadata one message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub run_id: u64,
    pub producer_id: u32,
    pub seq: u64,
    /// Scheduled send time, µs since the Unix epoch.
    pub intended_us: u64,
    /// Actual send time, µs since the Unix epoch.
    pub sent_us: u64,
    /// Work the consumer should do; [`Work::None`] here means "the consumer's own `--work` applies".
    pub work: Option<Work>,
}

/// Why a body is not an envelope.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not ours at all (no `mw` magic): counted as foreign, never retried.
    #[error("not an envelope (foreign body)")]
    Foreign,
    /// An envelope of a format this build does not know.
    #[error("envelope format {0:?} is not supported by this build")]
    UnsupportedVersion(String),
    /// Starts like an envelope but a field is missing or not a number.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
}

impl Envelope {
    /// Appends the encoded envelope to `out`, padded with `.` so that what it appends is at least `size` bytes.
    pub fn encode_into(&self, size: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        write_hex16(out, self.run_id);
        out.push(b' ');
        write_dec(out, self.producer_id as u64);
        out.push(b' ');
        write_dec(out, self.seq);
        out.push(b' ');
        write_dec(out, self.intended_us);
        out.push(b' ');
        write_dec(out, self.sent_us);
        out.push(b' ');
        match self.work {
            None => out.push(b'-'),
            Some(Work::None) => out.extend_from_slice(b"s0"),
            Some(Work::Sleep(d)) => {
                out.push(b's');
                write_dec(out, d.as_micros() as u64);
            }
            Some(Work::Cpu(d)) => {
                out.push(b'c');
                write_dec(out, d.as_micros() as u64);
            }
        }
        let written = out.len() - start;
        if size > written {
            out.push(b' ');
            out.resize(start + size.max(written + 1), b'.');
        }
    }

    /// Encodes into a new buffer of at least `size` bytes.
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(80));
        self.encode_into(size, &mut out);
        out
    }

    /// The length of this envelope with no padding: the smallest `size` that is honoured exactly.
    pub fn unpadded_len(&self) -> usize {
        self.encode(0).len()
    }

    /// Decodes a body. Never panics; see the module docs for what each error means.
    pub fn decode(body: &[u8]) -> Result<Envelope, DecodeError> {
        if !body.starts_with(b"mw") {
            return Err(DecodeError::Foreign);
        }
        if !body.starts_with(MAGIC) {
            let version = body.get(2..).unwrap_or_default();
            let end = version
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(version.len())
                .min(16);
            return Err(DecodeError::UnsupportedVersion(
                String::from_utf8_lossy(&version[..end]).into_owned(),
            ));
        }
        let mut fields = body[MAGIC.len()..].split(|&b| b == b' ');
        let mut next = |name: &'static str| {
            fields
                .next()
                .filter(|f| !f.is_empty())
                .ok_or(DecodeError::Malformed(name))
        };
        let run_id = parse_hex(next("missing run id")?)
            .ok_or(DecodeError::Malformed("run id is not 16 hex digits"))?;
        let producer_id = parse_dec(next("missing producer id")?)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(DecodeError::Malformed("producer id is not a u32"))?;
        let seq = parse_dec(next("missing sequence number")?)
            .ok_or(DecodeError::Malformed("bad sequence number"))?;
        let intended_us = parse_dec(next("missing intended time")?)
            .ok_or(DecodeError::Malformed("bad intended time"))?;
        let sent_us =
            parse_dec(next("missing sent time")?).ok_or(DecodeError::Malformed("bad sent time"))?;
        let work = parse_work(next("missing work spec")?)
            .ok_or(DecodeError::Malformed("bad work spec"))?;
        Ok(Envelope {
            run_id,
            producer_id,
            seq,
            intended_us,
            sent_us,
            work,
        })
    }
}

fn parse_work(field: &[u8]) -> Option<Option<Work>> {
    match field {
        b"-" => Some(None),
        [b's', digits @ ..] => Some(Some(Work::Sleep(Duration::from_micros(parse_dec(digits)?)))),
        [b'c', digits @ ..] => Some(Some(Work::Cpu(Duration::from_micros(parse_dec(digits)?)))),
        _ => None,
    }
}

pub(crate) fn write_dec(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn write_hex16(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

/// Formats a run id the way envelopes, ledgers and stats lines write it.
pub fn format_run_id(run_id: u64) -> String {
    format!("{run_id:016x}")
}

/// Parses a run id written by [`format_run_id`] (16 lowercase hex digits).
pub fn parse_run_id(s: &str) -> Option<u64> {
    parse_hex(s.as_bytes())
}

/// Parses a run id given on a command line (the producer's `--run-id`, `audit --run`): 1 to 16 hex digits,
/// either case, so that `--run-id 1f` and `--run 1f` name the same run, which lines write as
/// `000000000000001f`.
///
/// # Errors
/// A message saying the form expected.
pub fn parse_run_id_arg(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a run id: expected 1 to 16 hex digits"
        ));
    }
    u64::from_str_radix(t, 16)
        .map_err(|_| format!("{s:?} is not a run id: expected 1 to 16 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            run_id: 0x9f3a_0c2e_4b1d_7a65,
            producer_id: 42,
            seq: 1007,
            intended_us: 1_764_064_800_123_456,
            sent_us: 1_764_064_800_123_789,
            work: Some(Work::Sleep(Duration::from_millis(300))),
        }
    }

    #[test]
    fn round_trips_every_field() {
        for work in [
            None,
            Some(Work::Sleep(Duration::from_millis(300))),
            Some(Work::Cpu(Duration::from_micros(7))),
        ] {
            let env = Envelope { work, ..sample() };
            assert_eq!(Envelope::decode(&env.encode(0)), Ok(env));
            assert_eq!(Envelope::decode(&env.encode(500)), Ok(env));
        }
        let extremes = Envelope {
            run_id: u64::MAX,
            producer_id: u32::MAX,
            seq: u64::MAX,
            intended_us: 0,
            sent_us: u64::MAX,
            work: None,
        };
        assert_eq!(Envelope::decode(&extremes.encode(0)), Ok(extremes));
    }

    #[test]
    fn the_format_is_the_documented_one() {
        let text = String::from_utf8(sample().encode(0)).unwrap();
        assert_eq!(
            text,
            "mw1 9f3a0c2e4b1d7a65 42 1007 1764064800123456 1764064800123789 s300000"
        );
    }

    #[test]
    fn pads_to_exactly_the_requested_size_when_it_fits() {
        let env = sample();
        let bare = env.unpadded_len();
        for size in [bare + 1, bare + 2, 200, 4096] {
            let body = env.encode(size);
            assert_eq!(body.len(), size);
            assert!(
                body.iter().all(|b| b.is_ascii_graphic() || *b == b' '),
                "text-safe"
            );
        }
        assert_eq!(
            env.encode(10).len(),
            bare,
            "a size below the header is not an error: the header is kept whole"
        );
    }

    #[test]
    fn foreign_bodies_are_told_apart_from_broken_envelopes() {
        assert_eq!(
            Envelope::decode(b"6fa459ea-ee8a-3ca4-894e-db77e160355e"),
            Err(DecodeError::Foreign)
        );
        assert_eq!(Envelope::decode(b""), Err(DecodeError::Foreign));
        assert_eq!(
            Envelope::decode(&[0xff, 0x00, 0x13]),
            Err(DecodeError::Foreign)
        );
        assert_eq!(
            Envelope::decode(b"mw2 abc"),
            Err(DecodeError::UnsupportedVersion("2".into()))
        );
        assert!(matches!(
            Envelope::decode(b"mw1 "),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"mw1 9f3a0c2e4b1d7a65 42"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"mw1 9f3a0c2e4b1d7a65 99999999999 1 2 3 -"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"mw1 9F3A0C2E4B1D7A65 1 1 2 3 -"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"mw1 9f3a0c2e4b1d7a65 1 1 2 3 x9"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"mw1 9f3a0c2e4b1d7a65 1 99999999999999999999999 2 3 -"),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // A cheap deterministic fuzz: every prefix and many single-byte corruptions of a valid envelope.
        let good = sample().encode(120);
        for end in 0..=good.len() {
            let _ = Envelope::decode(&good[..end]);
        }
        for i in 0..good.len() {
            for b in [0u8, b' ', b'-', b'9', b'z', 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = Envelope::decode(&bad);
            }
        }
    }
}

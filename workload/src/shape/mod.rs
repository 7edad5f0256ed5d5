//! Load shapes: how many messages per second all the producers of a run send together, over time.
//!
//! A scaling engine is judged by how it reacts to changes in load, so the producer's rate is not one number
//! but a shape, written in a small grammar and given with `producer --shape SPEC`:
//!
//! ```text
//! SHAPE := TERM ( '+' TERM )*                 the terms' rates add up
//! TERM  := const:RATE                         RATE msgs/s for ever
//!        | step:RATE(,RATE@OFFSET)*           RATE from 0, then each RATE from its OFFSET on
//!        | ramp:FROM..TO/OVER[@START]         FROM until START (default 0s), linear to TO over OVER, then TO
//!        | sine:MEAN+-AMP/PERIOD              MEAN + AMP·sin(2πt/PERIOD); AMP must not exceed MEAN
//!        | burst:COUNT@OFFSET                 COUNT messages all due at OFFSET, on top of the rest
//!        | poisson:RATE                       a Poisson process of mean RATE (random gaps, seeded)
//!        | replay:FILE                        a recorded load, see below
//! ```
//!
//! RATE, FROM, TO, MEAN and AMP are msgs/s (decimals allowed, never negative); OFFSET, OVER, START and
//! PERIOD are durations with a unit (`500ms`, `30s`, `2m`, `1m30s`). Step offsets must increase. Examples:
//! `const:200`, `step:100,500@30s,100@60s`, `ramp:0..1000/60s`, `sine:500+-400/120s`, `burst:5000@10s`,
//! `poisson:200`, `const:100+burst:5000@10s`.
//!
//! A replay FILE is UTF-8 text, one record per line; blank lines and lines starting with `#` are skipped, as
//! is a first line that is a header (`offset_s,rate`). Either every record is `OFFSET_S,RATE` (seconds and
//! msgs/s; each rate holds from its offset to the next, zero before the first, and the last one's for ever,
//! so a recording usually ends with `T,0`), or every record is one `OFFSET_S` (one message due at that
//! offset). Offsets must not decrease. A bad record is reported with its line number. The FILE path runs to
//! the next `+` (which separates terms), so it cannot contain one.
//!
//! Where the shape ends: the last step, the end of a ramp, a burst's offset or a replay's last offset is the
//! shape's [natural duration](Shape::natural_duration), which the producer uses when `--duration` is not
//! given. `const`, `sine` and `poisson` go on for ever.
//!
//! Messages are due where the shape's integral reaches them: message `k` (counting from 0, over all producers
//! of the run) is due at the first moment `t` with [`Shape::sent_by`]`(t) ≥ k + 1`. So at `const:1000` message
//! 0 is due at 1 ms, and exactly `⌊sent_by(t)⌋` messages are due in `[0, t]`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

mod parse;

use self::parse::{parse_term, split_terms};

/// The grammar, quoted in every parse error so that the person who wrote the spec sees what is expected.
pub const GRAMMAR: &str = "expected TERM[+TERM…] where TERM is const:RATE, step:RATE,RATE@OFFSET…, \
ramp:FROM..TO/OVER[@START], sine:MEAN+-AMP/PERIOD, burst:COUNT@OFFSET, poisson:RATE or replay:FILE \
(rates in msgs/s, durations with a unit, e.g. step:100,500@30s,100@60s)";

/// A load shape: msgs/s over time, for all producers of a run together. Parse with [`Shape::parse`] (it may
/// read a replay file, hence not `FromStr`); `Display` gives the spec back.
#[derive(Clone, Debug)]
pub struct Shape {
    spec: String,
    terms: Vec<Term>,
}

/// One `+`-separated part of a shape.
#[derive(Clone, Debug)]
enum Term {
    Const(f64),
    /// Rate from each offset on (seconds), the first at 0 or later; sorted, strictly increasing.
    Step(Vec<(f64, f64)>),
    Ramp {
        from: f64,
        to: f64,
        start: f64,
        over: f64,
    },
    Sine {
        mean: f64,
        amp: f64,
        period: f64,
    },
    Burst {
        count: u64,
        at: f64,
    },
    Poisson(f64),
    /// Each message's due offset, sorted.
    Offsets(Vec<f64>),
}

/// A shape spec that cannot be used. Every message says what the grammar expects.
#[derive(Debug, Error)]
pub enum ShapeError {
    #[error("empty load shape: {GRAMMAR}")]
    Empty,
    #[error("invalid load shape term {term:?}: {reason}; {GRAMMAR}")]
    Term { term: String, reason: String },
    /// The I/O error is part of the message rather than a `source`, so that an error chain printed with
    /// `{:#}` does not say it twice.
    #[error("cannot read replay file {}: {error}", path.display())]
    ReplayIo {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "replay file {} has no records (expected OFFSET_S,RATE or OFFSET_S per line)",
        path.display()
    )]
    ReplayEmpty { path: PathBuf },
    #[error(
        "replay file {}, line {line}: {reason} (expected OFFSET_S,RATE or OFFSET_S per line, offsets in seconds not decreasing)",
        path.display()
    )]
    ReplayLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl Shape {
    /// Parses a spec (see the module documentation for the grammar). `replay:` terms read their file now.
    pub fn parse(spec: &str) -> Result<Shape, ShapeError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(ShapeError::Empty);
        }
        let terms = split_terms(spec)
            .into_iter()
            .map(parse_term)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Shape {
            spec: spec.to_string(),
            terms,
        })
    }

    /// Constant shape, what `--rate R` means. A negative or non-finite rate is taken as 0.
    pub fn constant(rate: f64) -> Shape {
        let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
        Shape {
            spec: format!("const:{rate}"),
            terms: vec![Term::Const(rate)],
        }
    }

    /// Rate (msgs/s) at offset `t` from the start, bursts excluded (they are instantaneous).
    pub fn rate_at(&self, t: Duration) -> f64 {
        self.rate_at_secs(t.as_secs_f64())
    }

    /// [`Shape::rate_at`] with `t` in seconds.
    pub fn rate_at_secs(&self, t: f64) -> f64 {
        self.terms.iter().map(|term| term.rate_at(t)).sum()
    }

    /// Messages the shape sends in [0, t] (its integral, bursts included; poisson: the expected count).
    pub fn sent_by(&self, t: Duration) -> f64 {
        self.sent_by_secs(t.as_secs_f64())
    }

    /// [`Shape::sent_by`] with `t` in seconds.
    pub fn sent_by_secs(&self, t: f64) -> f64 {
        self.terms.iter().map(|term| term.sent_by(t)).sum()
    }

    /// The part of [`Shape::sent_by`] that is scheduled exactly, i.e. without the `poisson:` terms, whose
    /// messages come at random times.
    pub fn scheduled_by_secs(&self, t: f64) -> f64 {
        self.terms
            .iter()
            .filter(|term| !matches!(term, Term::Poisson(_)))
            .map(|term| term.sent_by(t))
            .sum()
    }

    /// The summed rate of the `poisson:` terms (0 when there are none).
    pub fn poisson_rate(&self) -> f64 {
        self.terms
            .iter()
            .map(|term| match term {
                Term::Poisson(r) => *r,
                _ => 0.0,
            })
            .sum()
    }

    /// How many exactly scheduled messages the shape sends in all, when that is finite (every term ends with
    /// a rate of 0 and there is no `poisson:` term); `None` for a shape that goes on for ever.
    pub fn scheduled_total(&self) -> Option<f64> {
        let mut end = 0.0f64;
        for term in &self.terms {
            match term.end() {
                Some(e) if term.final_rate() == 0.0 => end = end.max(e),
                _ => return None,
            }
        }
        Some(self.scheduled_by_secs(end))
    }

    /// Offsets where the load changes by a step, a burst, or a ramp/sine start: the moments a scaling engine
    /// must react to. Sorted.
    pub fn changes(&self) -> Vec<Duration> {
        let mut secs: Vec<f64> = self.terms.iter().flat_map(Term::changes).collect();
        secs.sort_by(f64::total_cmp);
        secs.dedup();
        secs.into_iter().filter_map(secs_to_duration).collect()
    }

    /// The shape's natural length where it has one (end of the last step/ramp/burst/replay), else None.
    pub fn natural_duration(&self) -> Option<Duration> {
        self.terms
            .iter()
            .filter_map(Term::end)
            .max_by(f64::total_cmp)
            .and_then(secs_to_duration)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl Term {
    fn rate_at(&self, t: f64) -> f64 {
        match *self {
            Term::Const(r) | Term::Poisson(r) => r,
            Term::Step(ref steps) => steps
                .iter()
                .take_while(|(at, _)| *at <= t)
                .last()
                .map_or(0.0, |(_, r)| *r),
            Term::Ramp {
                from,
                to,
                start,
                over,
            } => {
                if t < start {
                    from
                } else if t >= start + over {
                    to
                } else {
                    from + (to - from) * (t - start) / over
                }
            }
            Term::Sine { mean, amp, period } => {
                (mean + amp * (std::f64::consts::TAU * t / period).sin()).max(0.0)
            }
            Term::Burst { .. } | Term::Offsets(_) => 0.0,
        }
    }

    fn sent_by(&self, t: f64) -> f64 {
        if t < 0.0 || t.is_nan() {
            return 0.0;
        }
        match *self {
            Term::Const(r) | Term::Poisson(r) => r * t,
            Term::Step(ref steps) => {
                let mut total = 0.0;
                for (i, &(at, r)) in steps.iter().enumerate() {
                    if at > t {
                        break;
                    }
                    let until = steps.get(i + 1).map_or(t, |&(next, _)| next.min(t));
                    total += r * (until - at);
                }
                total
            }
            Term::Ramp {
                from,
                to,
                start,
                over,
            } => {
                let before = from * t.min(start);
                let inside = (t - start).clamp(0.0, over);
                let ramp = from * inside + (to - from) * inside * inside / (2.0 * over);
                let after = to * (t - start - over).max(0.0);
                before + ramp + after
            }
            Term::Sine { mean, amp, period } => {
                let w = std::f64::consts::TAU / period;
                mean * t + amp * (1.0 - (w * t).cos()) / w
            }
            Term::Burst { count, at } => {
                if t >= at {
                    count as f64
                } else {
                    0.0
                }
            }
            Term::Offsets(ref offsets) => offsets.partition_point(|&o| o <= t) as f64,
        }
    }

    /// Where this term stops changing, if it ever does.
    fn end(&self) -> Option<f64> {
        match self {
            Term::Const(_) | Term::Poisson(_) | Term::Sine { .. } => None,
            Term::Step(steps) => steps.last().map(|(at, _)| *at),
            Term::Ramp { start, over, .. } => Some(start + over),
            Term::Burst { at, .. } => Some(*at),
            Term::Offsets(offsets) => Some(offsets.last().copied().unwrap_or(0.0)),
        }
    }

    /// The rate after [`Term::end`].
    fn final_rate(&self) -> f64 {
        match self {
            Term::Const(r) | Term::Poisson(r) => *r,
            Term::Step(steps) => steps.last().map_or(0.0, |(_, r)| *r),
            Term::Ramp { to, .. } => *to,
            Term::Sine { mean, .. } => *mean,
            Term::Burst { .. } | Term::Offsets(_) => 0.0,
        }
    }

    fn changes(&self) -> Vec<f64> {
        match self {
            Term::Const(_) | Term::Poisson(_) => Vec::new(),
            Term::Step(steps) => steps
                .iter()
                .skip(1)
                .map(|(at, _)| *at)
                .chain(steps.first().filter(|(at, _)| *at > 0.0).map(|(at, _)| *at))
                .collect(),
            Term::Ramp { start, .. } => vec![*start],
            Term::Sine { .. } => vec![0.0],
            Term::Burst { at, .. } => vec![*at],
            // A recording changes at every message; its start is the one moment worth naming.
            Term::Offsets(offsets) => offsets.first().copied().into_iter().collect(),
        }
    }
}

fn secs_to_duration(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok()
}

#[cfg(test)]
mod tests;

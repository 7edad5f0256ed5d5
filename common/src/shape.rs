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
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

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

/// Splits on `+`, except the `+` of a sine's `+-`.
fn split_terms(spec: &str) -> Vec<&str> {
    let bytes = spec.as_bytes();
    let mut terms = Vec::new();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'+' && bytes.get(i + 1) != Some(&b'-') {
            terms.push(spec[from..i].trim());
            from = i + 1;
        }
    }
    terms.push(spec[from..].trim());
    terms
}

fn parse_term(term: &str) -> Result<Term, ShapeError> {
    let err = |reason: String| ShapeError::Term {
        term: term.to_string(),
        reason,
    };
    let Some((kind, body)) = term.split_once(':') else {
        return Err(err("no ':' between the kind and its parameters".into()));
    };
    let body = body.trim();
    match kind.trim() {
        "const" => Ok(Term::Const(rate(body).map_err(err)?)),
        "poisson" => Ok(Term::Poisson(rate(body).map_err(err)?)),
        "step" => parse_step(body).map_err(err),
        "ramp" => parse_ramp(body).map_err(err),
        "sine" => parse_sine(body).map_err(err),
        "burst" => {
            let (count, at) = body
                .split_once('@')
                .ok_or_else(|| err("a burst is COUNT@OFFSET, e.g. burst:5000@10s".into()))?;
            let count = count.trim().parse::<u64>().map_err(|_| {
                err(format!(
                    "burst count {count:?} is not a whole number of messages"
                ))
            })?;
            Ok(Term::Burst {
                count,
                at: offset(at).map_err(err)?,
            })
        }
        "replay" => {
            if body.is_empty() {
                return Err(err("replay needs a FILE, e.g. replay:load.csv".into()));
            }
            parse_replay(Path::new(body))
        }
        other => Err(err(format!("unknown kind {other:?}"))),
    }
}

/// A rate: a finite decimal, 0 or more.
fn rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        Ok(_) => Err(format!(
            "rate {s:?} must be a finite number of msgs/s, 0 or more"
        )),
        Err(_) => Err(format!("rate {s:?} is not a number of msgs/s")),
    }
}

/// An offset or length: a human duration, in seconds.
fn offset(s: &str) -> Result<f64, String> {
    crate::cli::parse_duration(s).map(|d| d.as_secs_f64())
}

fn parse_step(body: &str) -> Result<Term, String> {
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for (i, item) in body.split(',').enumerate() {
        let (r, at) = match item.split_once('@') {
            Some((r, at)) => (rate(r)?, offset(at)?),
            None if i == 0 => (rate(item)?, 0.0),
            None => {
                return Err(format!(
                    "step {item:?} needs an offset, RATE@OFFSET (only the first step may leave it out)"
                ));
            }
        };
        if let Some(&(prev, _)) = steps.last()
            && at <= prev
        {
            return Err(format!(
                "step offsets must increase, but {item:?} does not come after {prev}s"
            ));
        }
        steps.push((at, r));
    }
    Ok(Term::Step(steps))
}

fn parse_ramp(body: &str) -> Result<Term, String> {
    let usage = "a ramp is FROM..TO/OVER[@START], e.g. ramp:0..1000/60s";
    let (rates, timing) = body.split_once('/').ok_or(usage)?;
    let (from, to) = rates.split_once("..").ok_or(usage)?;
    let (over, start) = match timing.split_once('@') {
        Some((over, start)) => (offset(over)?, offset(start)?),
        None => (offset(timing)?, 0.0),
    };
    if over <= 0.0 {
        return Err("a ramp's length OVER must be more than 0".into());
    }
    Ok(Term::Ramp {
        from: rate(from)?,
        to: rate(to)?,
        start,
        over,
    })
}

fn parse_sine(body: &str) -> Result<Term, String> {
    let usage = "a sine is MEAN+-AMP/PERIOD, e.g. sine:500+-400/120s";
    let (levels, period) = body.split_once('/').ok_or(usage)?;
    let (mean, amp) = levels.split_once("+-").ok_or(usage)?;
    let (mean, amp, period) = (rate(mean)?, rate(amp)?, offset(period)?);
    if period <= 0.0 {
        return Err("a sine's PERIOD must be more than 0".into());
    }
    if amp > mean {
        return Err(format!(
            "a sine's amplitude {amp} is larger than its mean {mean}, which would need a negative rate"
        ));
    }
    Ok(Term::Sine { mean, amp, period })
}

fn parse_replay(path: &Path) -> Result<Term, ShapeError> {
    let text = std::fs::read_to_string(path).map_err(|error| ShapeError::ReplayIo {
        path: path.to_path_buf(),
        error,
    })?;
    let bad = |line: usize, reason: String| ShapeError::ReplayLine {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut rates: Vec<(f64, f64)> = Vec::new();
    let mut offsets: Vec<f64> = Vec::new();
    let mut columns: Option<usize> = None;
    let mut last = 0.0f64;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let first_record = columns.is_none();
        let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
        if first_record && number(fields[0]).is_none() {
            // A header: the first non-comment line, when it does not start with a number.
            columns = Some(fields.len());
            continue;
        }
        let width = *columns.get_or_insert(fields.len());
        if fields.len() != width || !(1..=2).contains(&width) {
            return Err(bad(
                n,
                format!("{} fields where {width} were expected", fields.len()),
            ));
        }
        let at = match number(fields[0]) {
            Some(at) if at >= 0.0 => at,
            _ => {
                return Err(bad(
                    n,
                    format!(
                        "offset {:?} is not a number of seconds, 0 or more",
                        fields[0]
                    ),
                ));
            }
        };
        if at < last {
            return Err(bad(n, format!("offset {at} comes before {last}")));
        }
        last = at;
        if width == 1 {
            offsets.push(at);
        } else {
            let r = rate(fields[1]).map_err(|e| bad(n, e))?;
            match rates.last_mut() {
                // Two rows at one offset: the later one wins.
                Some(prev) if prev.0 == at => prev.1 = r,
                _ => rates.push((at, r)),
            }
        }
    }
    match columns {
        Some(2) if !rates.is_empty() => Ok(Term::Step(rates)),
        Some(1) if !offsets.is_empty() => Ok(Term::Offsets(offsets)),
        _ => Err(ShapeError::ReplayEmpty {
            path: path.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    fn parse(spec: &str) -> Shape {
        match Shape::parse(spec) {
            Ok(s) => s,
            Err(e) => panic!("{spec}: {e}"),
        }
    }

    fn err(spec: &str) -> String {
        match Shape::parse(spec) {
            Ok(s) => panic!("{spec} parsed as {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_documented_examples_parse_and_display_back() {
        for spec in [
            "const:200",
            "step:100,500@30s,100@60s",
            "ramp:0..1000/60s",
            "sine:500+-400/120s",
            "burst:5000@10s",
            "poisson:200",
            "const:100+burst:5000@10s",
            "ramp:100..1000/1m@30s+sine:50+-50/10s",
        ] {
            assert_eq!(parse(spec).to_string(), spec);
        }
        assert_eq!(Shape::constant(250.0).to_string(), "const:250");
    }

    #[test]
    fn const_and_step_integrate_piecewise() {
        let c = parse("const:200");
        assert!(close(c.sent_by(secs(10.0)), 2000.0));
        assert_eq!(c.rate_at(secs(3.0)), 200.0);
        assert_eq!(c.natural_duration(), None);
        assert!(c.changes().is_empty());

        let s = parse("step:100,500@30s,100@60s");
        assert_eq!(s.rate_at(secs(29.9)), 100.0);
        assert_eq!(s.rate_at(secs(30.0)), 500.0);
        assert_eq!(s.rate_at(secs(61.0)), 100.0);
        assert!(close(s.sent_by(secs(30.0)), 3000.0));
        assert!(close(s.sent_by(secs(45.0)), 3000.0 + 7500.0));
        assert!(close(s.sent_by(secs(70.0)), 3000.0 + 15000.0 + 1000.0));
        assert_eq!(s.changes(), vec![secs(30.0), secs(60.0)]);
        assert_eq!(s.natural_duration(), Some(secs(60.0)));
        assert_eq!(s.scheduled_total(), None, "the last step goes on at 100/s");
        assert_eq!(parse("step:100,0@2s").scheduled_total(), Some(200.0));
    }

    #[test]
    fn ramp_integrates_to_the_trapezoid() {
        let r = parse("ramp:0..1000/60s");
        assert!(close(r.rate_at(secs(30.0)), 500.0));
        assert!(close(r.sent_by(secs(60.0)), 30_000.0));
        assert!(close(r.sent_by(secs(30.0)), 7_500.0));
        assert!(close(r.sent_by(secs(70.0)), 40_000.0));
        assert_eq!(r.natural_duration(), Some(secs(60.0)));
        let late = parse("ramp:100..300/10s@5s");
        assert_eq!(late.rate_at(secs(2.0)), 100.0);
        assert!(close(late.sent_by(secs(5.0)), 500.0));
        assert!(close(late.sent_by(secs(15.0)), 500.0 + 2000.0));
        assert_eq!(late.changes(), vec![secs(5.0)]);
        assert_eq!(late.natural_duration(), Some(secs(15.0)));
    }

    #[test]
    fn sine_integrates_to_its_mean_over_whole_periods() {
        let s = parse("sine:500+-400/120s");
        assert!(close(s.rate_at(secs(30.0)), 900.0));
        assert!(close(s.rate_at(secs(90.0)), 100.0));
        assert!(close(s.sent_by(secs(120.0)), 60_000.0));
        // Half a period: mean·t plus 2·amp/ω.
        let half = 500.0 * 60.0 + 2.0 * 400.0 * 120.0 / std::f64::consts::TAU;
        assert!(close(s.sent_by(secs(60.0)), half));
        assert_eq!(s.changes(), vec![Duration::ZERO]);
        assert_eq!(s.natural_duration(), None);
    }

    #[test]
    fn bursts_are_instantaneous_and_add_to_the_rest() {
        let b = parse("const:100+burst:5000@10s");
        assert_eq!(b.rate_at(secs(10.0)), 100.0);
        assert!(close(b.sent_by(secs(9.999)), 999.9));
        assert!(close(b.sent_by(secs(10.0)), 6000.0));
        assert_eq!(b.changes(), vec![secs(10.0)]);
        assert_eq!(b.natural_duration(), Some(secs(10.0)));
        assert_eq!(parse("burst:5000@10s").scheduled_total(), Some(5000.0));
    }

    #[test]
    fn poisson_counts_its_expectation_and_is_kept_apart() {
        let p = parse("poisson:200+const:50");
        assert!(close(p.sent_by(secs(10.0)), 2500.0));
        assert!(close(p.scheduled_by_secs(10.0), 500.0));
        assert_eq!(p.poisson_rate(), 200.0);
        assert_eq!(p.scheduled_total(), None);
    }

    #[test]
    fn replay_reads_rates_or_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let rates = dir.path().join("rates.csv");
        std::fs::write(&rates, "offset_s,rate\n# warm up\n0,100\n\n10,300\n20,0\n").unwrap();
        let r = parse(&format!("replay:{}", rates.display()));
        assert!(close(r.sent_by(secs(15.0)), 1000.0 + 1500.0));
        assert!(close(r.sent_by(secs(30.0)), 4000.0));
        assert_eq!(r.natural_duration(), Some(secs(20.0)));
        assert_eq!(r.changes(), vec![secs(10.0), secs(20.0)]);
        assert_eq!(r.scheduled_total(), Some(4000.0));

        let offsets = dir.path().join("offsets.txt");
        std::fs::write(&offsets, "0.5\n0.5\n1.25\n3\n").unwrap();
        let o = parse(&format!("replay:{}", offsets.display()));
        assert_eq!(o.sent_by(secs(0.4)), 0.0);
        assert_eq!(o.sent_by(secs(0.5)), 2.0);
        assert_eq!(o.sent_by(secs(10.0)), 4.0);
        assert_eq!(o.natural_duration(), Some(secs(3.0)));
    }

    #[test]
    fn bad_specs_say_what_is_wrong_and_what_is_expected() {
        for (spec, says) in [
            ("", "empty load shape"),
            ("const", "no ':'"),
            ("const:-5", "0 or more"),
            ("const:NaN", "finite"),
            ("const:inf", "finite"),
            ("const:fast", "not a number"),
            ("wave:3", "unknown kind \"wave\""),
            ("step:100,500@30s,200@20s", "must increase"),
            ("step:100,500", "needs an offset"),
            ("step:100,500@-3s", "invalid duration"),
            ("ramp:0..1000", "FROM..TO/OVER"),
            ("ramp:0..1000/0s", "more than 0"),
            ("sine:500+-600/10s", "negative rate"),
            ("sine:500+-400/0s", "more than 0"),
            ("burst:5000", "COUNT@OFFSET"),
            ("burst:-1@3s", "whole number"),
            ("burst:1.5@3s", "whole number"),
            ("const:100+", "no ':'"),
            ("replay:", "needs a FILE"),
        ] {
            let e = err(spec);
            assert!(e.contains(says), "{spec}: {e}");
            assert!(
                spec.is_empty() || e.contains("expected TERM"),
                "{spec}: {e}"
            );
        }
    }

    #[test]
    fn bad_replay_files_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.csv");
        let e = err(&format!("replay:{}", missing.display()));
        assert!(
            e.contains("cannot read replay file") && e.contains("nope.csv"),
            "{e}"
        );
        for (text, line, says) in [
            ("0,100\n5,abc\n", 2, "not a number"),
            ("0,100\n5\n", 2, "1 fields where 2"),
            ("offset_s,rate\n0,100\n10,-1\n", 3, "0 or more"),
            ("0,100\n10,50\n5,10\n", 3, "comes before"),
            ("1\n2\nx\n", 3, "not a number of seconds"),
            ("0,1,2\n", 1, "3 fields"),
        ] {
            let f = dir.path().join("bad.csv");
            std::fs::write(&f, text).unwrap();
            let e = err(&format!("replay:{}", f.display()));
            assert!(
                e.contains(&format!("line {line}:")) && e.contains(says),
                "{text:?}: {e}"
            );
        }
        let f = dir.path().join("empty.csv");
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(err(&format!("replay:{}", f.display())).contains("no records"));
    }
}

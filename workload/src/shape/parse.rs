//! The shape grammar's parsers: a spec split into terms, each term (and a replay file) into a [`Term`].

use std::path::Path;

use super::{ShapeError, Term};

/// Splits on `+`, except the `+` of a sine's `+-`.
pub(super) fn split_terms(spec: &str) -> Vec<&str> {
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

pub(super) fn parse_term(term: &str) -> Result<Term, ShapeError> {
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

/// A rate: a finite decimal, 0 or more, at most [`crate::cli::MAX_RATE`].
fn rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > crate::cli::MAX_RATE => Err(format!(
            "rate {s:?} is above {} msgs/s, the most a rate may be",
            crate::cli::MAX_RATE
        )),
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

//! The simulated work a consumer does for each message.
//!
//! A work spec is written `none`, `sleep:DURATION` (wait without using CPU, like the original demo's
//! `MSS_CONSUMER_SLEEP_MS`) or `cpu:DURATION` (spin on one core until this thread has used that much CPU time).
//! `cpu:` counts the thread's own CPU time rather than wall time, so a message costs the same CPU whatever else
//! runs on the machine: a consumer that gets less CPU gets through fewer messages, which is exactly what a
//! scaling engine needs to see.
//!
//! A [`WorkSpec`] can also draw each message's work from a distribution, so that messages cost different
//! amounts as real ones do (a scaling engine that only ever sees identical messages learns little):
//!
//! ```text
//! WORK := none | KIND:DURATION | KIND:DIST
//! KIND := sleep | cpu
//! DIST := exp(MEAN[,max=CAP])                 exponential with this mean
//!       | lognormal(MEDIAN,SIGMA[,max=CAP])   log-normal: MEDIAN = e^μ, SIGMA = σ of ln(work)
//!       | uniform(LO..HI)                     uniform between LO and HI
//!       | normal(MEAN,SD[,max=CAP])           normal, cut at 0
//! ```
//!
//! e.g. `sleep:exp(200ms)`, `cpu:lognormal(5ms,1.0)`, `sleep:uniform(100ms..500ms)`,
//! `sleep:exp(200ms,max=2s)`. Every distribution has a cap, so no message takes for ever: a draw above it
//! is clamped to it (not redrawn). The default cap is 10 × the distribution's mean (lognormal's mean is
//! MEDIAN·e^(σ²/2)); uniform's is HI. A cap of 10 × the mean is touched by 1 exp(…) draw in 22,000.
//!
//! Draws come from a seeded generator ([`WorkSampler`]): the same seed gives the same works in the same order.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use thiserror::Error;

mod mean;
pub use mean::normal_cdf;

/// One unit of simulated work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Work {
    /// Ack at once.
    #[default]
    None,
    /// Wait this long without using the CPU.
    Sleep(Duration),
    /// Use this much CPU time on one core.
    Cpu(Duration),
}

/// A work spec that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid work spec {spec:?}: {reason} (expected none, sleep:DURATION or cpu:DURATION, e.g. sleep:300ms, \
or sleep|cpu with exp(MEAN), lognormal(MEDIAN,SIGMA), uniform(LO..HI) or normal(MEAN,SD), each with an \
optional ,max=CAP, e.g. sleep:exp(200ms,max=2s))"
)]
pub struct WorkParseError {
    spec: String,
    reason: String,
}

impl FromStr for Work {
    type Err = WorkParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| WorkParseError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec == "none" {
            return Ok(Work::None);
        }
        let (kind, duration) = spec
            .split_once(':')
            .ok_or_else(|| err("no ':' between kind and duration"))?;
        let duration = crate::cli::duration_or_problem(duration)
            .map_err(|problem| err(&format!("duration {duration:?}: {problem}")))?;
        match kind {
            "sleep" => Ok(Work::Sleep(duration)),
            "cpu" => Ok(Work::Cpu(duration)),
            other => Err(err(&format!("unknown kind {other:?}"))),
        }
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::None => f.write_str("none"),
            Work::Sleep(d) => write!(f, "sleep:{}", humantime::format_duration(*d)),
            Work::Cpu(d) => write!(f, "cpu:{}", humantime::format_duration(*d)),
        }
    }
}

impl Work {
    /// True when there is nothing to do, so the caller can ack without scheduling anything.
    pub fn is_none(&self) -> bool {
        match self {
            Work::None => true,
            Work::Sleep(d) | Work::Cpu(d) => d.is_zero(),
        }
    }

    /// Does the work. `cpu:` work blocks the calling thread, so async callers run it on a blocking thread.
    pub async fn perform(self) {
        match self {
            Work::None => {}
            Work::Sleep(d) => tokio::time::sleep(d).await,
            Work::Cpu(d) => {
                // A panic inside the closure cannot happen (spin only reads a clock); a JoinError would mean
                // the runtime is shutting down, and then the work no longer matters.
                let _ = tokio::task::spawn_blocking(move || spin_cpu(d)).await;
            }
        }
    }
}

/// A work spec: a fixed [`Work`], or a distribution that gives each message its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WorkSpec {
    /// The same work for every message.
    Fixed(Work),
    /// Work of this kind, its duration drawn per message and clamped to `cap`.
    Drawn {
        kind: WorkKind,
        dist: WorkDist,
        cap: Duration,
    },
}

/// How drawn work is done: waiting or spinning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    Sleep,
    Cpu,
}

/// The distribution of a drawn work's duration. Durations are in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WorkDist {
    /// Exponential with this mean.
    Exp { mean: f64 },
    /// Log-normal: the median is e^μ, `sigma` the standard deviation of the logarithm.
    LogNormal { median: f64, sigma: f64 },
    /// Uniform between `lo` and `hi`.
    Uniform { lo: f64, hi: f64 },
    /// Normal, draws below 0 taken as 0.
    Normal { mean: f64, sd: f64 },
}

impl WorkDist {
    /// The distribution's mean in seconds, before the cap.
    pub fn mean(&self) -> f64 {
        match *self {
            WorkDist::Exp { mean } | WorkDist::Normal { mean, .. } => mean,
            WorkDist::LogNormal { median, sigma } => median * (sigma * sigma / 2.0).exp(),
            WorkDist::Uniform { lo, hi } => (lo + hi) / 2.0,
        }
    }

    /// The cap when none is given: HI for uniform, else 10 × the mean.
    fn default_cap(&self) -> f64 {
        match *self {
            WorkDist::Uniform { hi, .. } => hi,
            _ => 10.0 * self.mean(),
        }
    }

    /// One draw in seconds; never negative, never NaN.
    fn draw(&self, rng: &mut StdRng) -> f64 {
        let x = match *self {
            // The parameters were checked at parse time, so the constructors cannot fail; a zero mean or
            // width gives a constant.
            WorkDist::Exp { mean } => Exp::new(1.0 / mean).map_or(mean, |d| d.sample(rng)),
            WorkDist::LogNormal { median, sigma } => {
                LogNormal::new(median.ln(), sigma).map_or(median, |d| d.sample(rng))
            }
            WorkDist::Uniform { lo, hi } => lo + (hi - lo) * rand::Rng::random::<f64>(rng),
            WorkDist::Normal { mean, sd } => Normal::new(mean, sd).map_or(mean, |d| d.sample(rng)),
        };
        if x.is_nan() { 0.0 } else { x.max(0.0) }
    }
}

impl WorkSpec {
    /// The work for one message: the fixed one, or a fresh draw clamped to the cap.
    pub fn sample(&self, rng: &mut StdRng) -> Work {
        match *self {
            WorkSpec::Fixed(w) => w,
            WorkSpec::Drawn { kind, dist, cap } => {
                let d = Duration::try_from_secs_f64(dist.draw(rng))
                    .unwrap_or(cap)
                    .min(cap);
                kind.with(d)
            }
        }
    }

    /// The longest work this spec can give (for sizing a message before anything is drawn).
    pub fn longest(&self) -> Work {
        match *self {
            WorkSpec::Fixed(w) => w,
            WorkSpec::Drawn { kind, cap, .. } => kind.with(cap),
        }
    }
}

impl WorkKind {
    fn with(self, d: Duration) -> Work {
        match self {
            WorkKind::Sleep => Work::Sleep(d),
            WorkKind::Cpu => Work::Cpu(d),
        }
    }
}

impl From<Work> for WorkSpec {
    fn from(w: Work) -> Self {
        WorkSpec::Fixed(w)
    }
}

impl FromStr for WorkSpec {
    type Err = WorkParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| WorkParseError {
            spec: spec.to_string(),
            reason,
        };
        let Some((kind, body)) = spec.split_once(':') else {
            return spec.parse::<Work>().map(WorkSpec::Fixed);
        };
        let Some((name, args)) = body.split_once('(') else {
            return spec.parse::<Work>().map(WorkSpec::Fixed);
        };
        let kind = match kind {
            "sleep" => WorkKind::Sleep,
            "cpu" => WorkKind::Cpu,
            other => return Err(err(format!("unknown kind {other:?}"))),
        };
        let args = args
            .strip_suffix(')')
            .ok_or_else(|| err("no ')' at the end of the distribution".into()))?;
        let mut params: Vec<&str> = args.split(',').map(str::trim).collect();
        let cap = match params.last().and_then(|p| p.strip_prefix("max=")) {
            Some(c) => {
                let c = parse_secs(c).map_err(&err)?;
                params.pop();
                Some(c)
            }
            None => None,
        };
        let want = |n: usize, form: &str| {
            if params.len() == n {
                Ok(())
            } else {
                Err(err(format!("{name} takes {form}")))
            }
        };
        let dist = match name.trim() {
            "exp" => {
                want(1, "(MEAN[,max=CAP])")?;
                WorkDist::Exp {
                    mean: parse_secs(params[0]).map_err(&err)?,
                }
            }
            "lognormal" => {
                want(2, "(MEDIAN,SIGMA[,max=CAP])")?;
                let sigma = params[1]
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 10.0)
                    .ok_or_else(|| {
                        err(format!(
                            "SIGMA {:?} is not a number from 0 to 10",
                            params[1]
                        ))
                    })?;
                let median = parse_secs(params[0]).map_err(&err)?;
                if median <= 0.0 {
                    return Err(err("lognormal's MEDIAN must be more than 0".into()));
                }
                WorkDist::LogNormal { median, sigma }
            }
            "uniform" => {
                want(1, "(LO..HI[,max=CAP])")?;
                let (lo, hi) = params[0].split_once("..").ok_or_else(|| {
                    err("uniform takes (LO..HI), e.g. uniform(100ms..500ms)".into())
                })?;
                let (lo, hi) = (parse_secs(lo).map_err(&err)?, parse_secs(hi).map_err(&err)?);
                if lo > hi {
                    return Err(err("uniform's LO is above its HI".into()));
                }
                WorkDist::Uniform { lo, hi }
            }
            "normal" => {
                want(2, "(MEAN,SD[,max=CAP])")?;
                WorkDist::Normal {
                    mean: parse_secs(params[0]).map_err(&err)?,
                    sd: parse_secs(params[1]).map_err(&err)?,
                }
            }
            other => return Err(err(format!("unknown distribution {other:?}"))),
        };
        let cap = cap.unwrap_or_else(|| dist.default_cap());
        let cap =
            Duration::try_from_secs_f64(cap).map_err(|_| err("the cap is out of range".into()))?;
        Ok(WorkSpec::Drawn { kind, dist, cap })
    }
}

/// A duration parameter in seconds; the error is the reason alone.
fn parse_secs(s: &str) -> Result<f64, String> {
    crate::cli::parse_duration(s).map(|d| d.as_secs_f64())
}

impl fmt::Display for WorkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |secs: f64| {
            humantime::format_duration(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
        };
        match *self {
            WorkSpec::Fixed(w) => w.fmt(f),
            WorkSpec::Drawn { kind, dist, cap } => {
                f.write_str(match kind {
                    WorkKind::Sleep => "sleep:",
                    WorkKind::Cpu => "cpu:",
                })?;
                match dist {
                    WorkDist::Exp { mean } => write!(f, "exp({}", d(mean))?,
                    WorkDist::LogNormal { median, sigma } => {
                        write!(f, "lognormal({},{sigma}", d(median))?
                    }
                    WorkDist::Uniform { lo, hi } => write!(f, "uniform({}..{}", d(lo), d(hi))?,
                    WorkDist::Normal { mean, sd } => write!(f, "normal({},{}", d(mean), d(sd))?,
                }
                write!(f, ",max={})", humantime::format_duration(cap))
            }
        }
    }
}

/// A [`WorkSpec`] with its own seeded generator: what a producer or consumer holds to give each message its
/// work. The same seed gives the same works in the same order.
#[derive(Debug)]
pub struct WorkSampler {
    spec: WorkSpec,
    rng: std::sync::Mutex<StdRng>,
}

impl WorkSampler {
    pub fn new(spec: WorkSpec, seed: u64) -> Self {
        WorkSampler {
            spec,
            rng: std::sync::Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    pub fn spec(&self) -> &WorkSpec {
        &self.spec
    }

    /// The next message's work.
    pub fn next(&self) -> Work {
        // A poisoned lock only means another draw panicked, which a draw cannot do; the generator is still
        // usable either way.
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        self.spec.sample(&mut rng)
    }
}

impl fmt::Display for WorkSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.spec.fmt(f)
    }
}

/// Spins until the calling thread has used `budget` of CPU time.
pub fn spin_cpu(budget: Duration) {
    let start = thread_cpu_time();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        // A few thousand cheap operations between clock reads keeps the clock's own cost negligible.
        for _ in 0..2048 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
        if thread_cpu_time().saturating_sub(start) >= budget {
            return;
        }
    }
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!("none".parse::<Work>(), Ok(Work::None));
        assert_eq!(
            "sleep:300ms".parse::<Work>(),
            Ok(Work::Sleep(Duration::from_millis(300)))
        );
        assert_eq!(
            "cpu:5ms".parse::<Work>(),
            Ok(Work::Cpu(Duration::from_millis(5)))
        );
        assert_eq!(
            "sleep:1s".parse::<Work>().map(|w| w.to_string()),
            Ok("sleep:1s".to_string())
        );
    }

    #[test]
    fn rejects_bad_specs_with_the_reason() {
        let e = "nap:3s".parse::<Work>().unwrap_err().to_string();
        assert!(e.contains("unknown kind \"nap\""), "{e}");
        let e = "sleep:abc".parse::<Work>().unwrap_err().to_string();
        assert!(e.contains("sleep:abc"), "{e}");
        assert!("sleep".parse::<Work>().is_err());
    }

    /// Draws 100,000 works from `spec` and returns (mean, p99) in seconds.
    fn draw_stats(spec: &str) -> (f64, f64) {
        let spec: WorkSpec = spec.parse().unwrap();
        let mut rng = StdRng::seed_from_u64(42);
        let mut xs: Vec<f64> = (0..100_000)
            .map(|_| match spec.sample(&mut rng) {
                Work::Sleep(d) | Work::Cpu(d) => d.as_secs_f64(),
                Work::None => 0.0,
            })
            .collect();
        xs.sort_by(f64::total_cmp);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        (mean, xs[99_000])
    }

    fn within_5pct(what: &str, got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 0.05 * want,
            "{what}: got {got}, theory {want}"
        );
    }

    use super::mean::normal_cdf as phi;

    /// z with Φ(z) = 0.99.
    const Z99: f64 = 2.326_347_874;

    // Theory includes the cap for the mean (a clamped draw: E[min(X, cap)]); every cap below sits above the
    // p99, so the p99 is the uncapped distribution's.

    #[test]
    fn exponential_draws_match_theory() {
        let (m, c) = (0.2f64, 2.0f64);
        let (mean, p99) = draw_stats("sleep:exp(200ms)");
        within_5pct("mean", mean, m * (1.0 - (-c / m).exp()));
        within_5pct("p99", p99, -m * 0.01f64.ln());
        let (mean, _) = draw_stats("sleep:exp(200ms,max=300ms)");
        within_5pct(
            "mean with a tight cap",
            mean,
            m * (1.0 - (-0.3f64 / m).exp()),
        );
    }

    #[test]
    fn lognormal_draws_match_theory() {
        // lognormal(MEDIAN, SIGMA): μ = ln MEDIAN.
        let (median, s) = (0.005f64, 1.0f64);
        let mu = median.ln();
        let cap = 10.0 * median * (s * s / 2.0).exp();
        let (mean, p99) = draw_stats("cpu:lognormal(5ms,1.0)");
        let below = (mu + s * s / 2.0).exp() * phi((cap.ln() - mu - s * s) / s);
        let above = cap * (1.0 - phi((cap.ln() - mu) / s));
        within_5pct("mean", mean, below + above);
        within_5pct("p99", p99, (mu + s * Z99).exp());
    }

    #[test]
    fn uniform_draws_match_theory() {
        let (mean, p99) = draw_stats("sleep:uniform(100ms..500ms)");
        within_5pct("mean", mean, 0.3);
        within_5pct("p99", p99, 0.1 + 0.99 * 0.4);
    }

    #[test]
    fn normal_draws_match_theory() {
        // Mean 5 SD above 0: the cut at 0 and the default cap (1 s) change the mean by less than 1e-6.
        let (mean, p99) = draw_stats("sleep:normal(100ms,20ms)");
        within_5pct("mean", mean, 0.1);
        within_5pct("p99", p99, 0.1 + 0.02 * Z99);
    }

    #[test]
    fn draws_are_capped_and_seeded() {
        let spec: WorkSpec = "cpu:exp(1s,max=50ms)".parse().unwrap();
        let a = WorkSampler::new(spec, 7);
        let b = WorkSampler::new(spec, 7);
        for _ in 0..1000 {
            let w = a.next();
            assert_eq!(w, b.next());
            assert!(
                matches!(w, Work::Cpu(d) if d <= Duration::from_millis(50)),
                "{w:?}"
            );
        }
        assert_eq!(
            "sleep:300ms".parse::<WorkSpec>(),
            Ok(WorkSpec::Fixed(Work::Sleep(Duration::from_millis(300))))
        );
    }

    #[test]
    fn work_specs_display_back_with_their_cap() {
        for (spec, shown) in [
            ("sleep:exp(200ms)", "sleep:exp(200ms,max=2s)"),
            (
                "cpu:lognormal(5ms,1.5,max=1s)",
                "cpu:lognormal(5ms,1.5,max=1s)",
            ),
            (
                "sleep:uniform(100ms..500ms)",
                "sleep:uniform(100ms..500ms,max=500ms)",
            ),
            ("none", "none"),
        ] {
            let parsed: WorkSpec = spec.parse().unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(shown.parse::<WorkSpec>(), Ok(parsed));
        }
    }

    #[test]
    fn bad_distributions_say_what_is_expected() {
        for (spec, says) in [
            ("sleep:exp(200ms", "no ')'"),
            ("sleep:exp()", "invalid duration"),
            ("sleep:exp(-3s)", "invalid duration"),
            ("sleep:exp(1s,2s)", "exp takes (MEAN[,max=CAP])"),
            ("cpu:lognormal(5ms)", "lognormal takes"),
            ("cpu:lognormal(5ms,-1)", "SIGMA"),
            ("cpu:lognormal(0ms,1)", "more than 0"),
            ("sleep:uniform(500ms..100ms)", "LO is above"),
            ("sleep:uniform(1s)", "LO..HI"),
            ("sleep:zipf(1s)", "unknown distribution"),
            ("nap:exp(1s)", "unknown kind"),
            ("sleep:exp(1s,max=forever)", "invalid duration"),
        ] {
            let e = spec.parse::<WorkSpec>().unwrap_err().to_string();
            assert!(e.contains(says), "{spec}: {e}");
            assert!(e.contains("lognormal(MEDIAN,SIGMA)"), "{spec}: {e}");
        }
    }

    #[test]
    fn cpu_work_uses_at_least_its_budget_of_cpu() {
        let before = thread_cpu_time();
        spin_cpu(Duration::from_millis(20));
        let used = thread_cpu_time() - before;
        assert!(used >= Duration::from_millis(20), "used {used:?}");
        assert!(used < Duration::from_millis(200), "used {used:?}");
    }
}

//! The open-loop send schedule: when each of this producer's messages is due, from the run's load shape.
//!
//! Due times are computed from the start, never from the previous send, so sleeping late or a slow publish
//! does not shift every later message (the drift that closed-loop "send, then sleep" loops accumulate).
//! A producer that falls behind sends what is due in batches until it has caught up, and the lateness of each
//! message (actual − intended send time) says how far behind it was. A burst is many messages due at one
//! moment: they go out as fast as the queue takes them, and their lateness shows how long that took.
//!
//! Several producers can share one shape (`--producers N --producer-index I`): the shape's exactly scheduled
//! messages are numbered over the whole run, message `k` due when the shape's integral reaches `k + 1`
//! (see [`workload::shape`]), and producer `I` sends those with `k ≡ I (mod N)`, so together the producers
//! send what the shape says and each sends a fair share. A `poisson:R` term is a Poisson process of rate
//! `R / N` in each producer, with the producer's own seed: the sum of independent Poisson processes is the
//! Poisson process of rate `R`.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use workload::shape::Shape;

/// How close, in seconds, a computed due time is to the exact one (found by bisection).
const PRECISION_S: f64 = 1e-7;
/// Due times are found to [`PRECISION_S`], so a message due exactly at the end of `--duration` (a burst at a
/// shape's natural end) may be computed a hair after it: it still counts as inside.
const SLACK: Duration = Duration::from_micros(1);
/// Past this offset (about 30,000 years) a shape that has stopped growing is taken as finished.
const HORIZON_S: f64 = 1e12;

/// When each of this producer's messages is due.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    /// `None` sends as fast as the queue accepts.
    arrivals: Option<Arrivals>,
}

/// Which producer of how many, so that producers sharing a shape split its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub producers: u64,
    pub index: u64,
}

#[cfg(test)]
impl Share {
    /// The whole shape for one producer.
    pub const ALL: Share = Share {
        producers: 1,
        index: 0,
    };
}

#[derive(Debug)]
struct Arrivals {
    shape: Shape,
    share: Share,
    /// Exactly scheduled messages in all, when finite.
    total: Option<f64>,
    /// The run-wide number of this producer's next exactly scheduled message.
    next_k: u64,
    /// Its due offset in seconds; `None` once the shape has no more.
    next_exact: Option<f64>,
    poisson: Option<PoissonArrivals>,
}

#[derive(Debug)]
struct PoissonArrivals {
    gaps: Exp<f64>,
    rng: StdRng,
    next: f64,
}

impl Schedule {
    /// `shape` `None` sends as fast as the queue accepts; `seed` drives the `poisson:` terms.
    pub fn new(start: Instant, shape: Option<Shape>, share: Share, seed: u64) -> Self {
        let arrivals = shape.map(|shape| {
            let poisson = match shape.poisson_rate() / share.producers.max(1) as f64 {
                rate if rate > 0.0 => Exp::new(rate).ok().map(|gaps| {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let next = gaps.sample(&mut rng);
                    PoissonArrivals { gaps, rng, next }
                }),
                _ => None,
            };
            let mut arrivals = Arrivals {
                total: shape.scheduled_total(),
                shape,
                share,
                next_k: share.index,
                next_exact: None,
                poisson,
            };
            arrivals.next_exact = arrivals.solve(arrivals.next_k, 0.0);
            arrivals
        });
        Schedule { start, arrivals }
    }

    pub fn is_paced(&self) -> bool {
        self.arrivals.is_some()
    }

    /// Offset from the start at which the next message is due (zero when unpaced); `None` when the shape
    /// sends no more.
    pub fn peek(&self) -> Option<Duration> {
        match &self.arrivals {
            None => Some(Duration::ZERO),
            Some(a) => a.peek().and_then(|s| Duration::try_from_secs_f64(s).ok()),
        }
    }

    /// When the next message is due; for an unpaced schedule, `now`.
    pub fn next_due_at(&self, now: Instant) -> Option<Instant> {
        match &self.arrivals {
            None => Some(now),
            Some(_) => self.peek().and_then(|o| self.start.checked_add(o)),
        }
    }

    /// Takes the offsets of up to `max` messages due by `now` and no later than `until` (offset from the
    /// start). An unpaced schedule gives `max` messages at once, their offsets `None`.
    pub fn take_due(
        &mut self,
        now: Instant,
        until: Option<Duration>,
        max: u64,
    ) -> Vec<Option<Duration>> {
        let Some(arrivals) = self.arrivals.as_mut() else {
            return vec![None; max as usize];
        };
        let mut limit = now.saturating_duration_since(self.start);
        if let Some(until) = until {
            limit = limit.min(until + SLACK);
        }
        let mut due = Vec::new();
        while (due.len() as u64) < max {
            match arrivals
                .peek()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            {
                Some(offset) if offset <= limit => {
                    arrivals.advance();
                    due.push(Some(offset));
                }
                _ => break,
            }
        }
        due
    }

    /// True when no message remains due inside `until` (never for an unpaced schedule: it runs on time).
    pub fn finished(&self, until: Option<Duration>) -> bool {
        if self.arrivals.is_none() {
            return false;
        }
        match (self.peek(), until) {
            (None, _) => true,
            (Some(next), Some(until)) => next > until + SLACK,
            (Some(_), None) => false,
        }
    }
}

impl Arrivals {
    fn peek(&self) -> Option<f64> {
        match (self.next_exact, self.poisson.as_ref().map(|p| p.next)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves past the message [`Arrivals::peek`] gave.
    fn advance(&mut self) {
        let poisson_next = self.poisson.as_ref().map(|p| p.next);
        match (self.next_exact, poisson_next) {
            (Some(e), Some(p)) if p < e => self.advance_poisson(),
            (None, Some(_)) => self.advance_poisson(),
            (Some(e), _) => {
                self.next_k += self.share.producers.max(1);
                self.next_exact = self.solve(self.next_k, e);
            }
            (None, None) => {}
        }
    }

    fn advance_poisson(&mut self) {
        if let Some(p) = self.poisson.as_mut() {
            p.next += p.gaps.sample(&mut p.rng);
        }
    }

    /// The offset (seconds) where the shape's exactly scheduled integral reaches `k + 1`, searching from
    /// `from`, where it is known not to be past it; `None` when it never does.
    fn solve(&self, k: u64, from: f64) -> Option<f64> {
        let target = k as f64 + 1.0;
        // Float sums of a piecewise integral can land a hair under a whole number they reach exactly.
        let reached = |t: f64| self.shape.scheduled_by_secs(t) >= target - 1e-9 * target;
        if self
            .total
            .is_some_and(|total| total < target - 1e-9 * target)
        {
            return None;
        }
        if reached(from) {
            return Some(from);
        }
        // Gallop forward to bracket the crossing, then bisect. The first step is this producer's gap between
        // messages at the current rate, so that a smooth shape is usually bracketed at once and the bisection
        // starts from a gap-sized interval.
        let rate = self.shape.rate_at_secs(from);
        let gap = self.share.producers.max(1) as f64 / rate;
        let mut step = if gap.is_finite() && gap > 0.0 {
            gap.clamp(PRECISION_S, 1.0)
        } else {
            1e-3
        };
        let mut lo = from;
        let mut hi = lo + step;
        while !reached(hi) {
            if hi > HORIZON_S {
                return None;
            }
            lo = hi;
            step *= 2.0;
            hi = lo + step;
        }
        while hi - lo > PRECISION_S {
            let mid = lo + (hi - lo) / 2.0;
            if reached(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(spec: &str, share: Share) -> Schedule {
        Schedule::new(Instant::now(), Some(Shape::parse(spec).unwrap()), share, 1)
    }

    /// Every due offset, in seconds, up to `until`.
    fn offsets(s: &mut Schedule, until: f64) -> Vec<f64> {
        let far = s.start + Duration::from_secs(1_000_000);
        s.take_due(far, Some(Duration::from_secs_f64(until)), u64::MAX)
            .into_iter()
            .map(|o| o.unwrap().as_secs_f64())
            .collect()
    }

    #[test]
    fn due_times_come_from_the_start_not_the_last_send() {
        let mut s = shaped("const:1000", Share::ALL);
        let start = s.start;
        assert_eq!(s.next_due_at(start), Some(start + Duration::from_millis(1)));
        // Far behind: everything up to now is due at once.
        let due = s.take_due(start + Duration::from_millis(999), None, u64::MAX);
        assert_eq!(due.len(), 999);
        assert!((due[249].unwrap().as_secs_f64() - 0.25).abs() < 1e-6);
        assert!(s.take_due(start, None, 10).is_empty());
    }

    #[test]
    fn a_long_run_does_not_drift() {
        let mut s = shaped("const:333", Share::ALL);
        let hour = s.start + Duration::from_millis(600_001);
        assert_eq!(s.take_due(hour, None, u64::MAX).len(), 333 * 600);
        let next = s.peek().unwrap().as_secs_f64();
        assert!((next - 600.0 - 1.0 / 333.0).abs() < 1e-6, "{next}");
    }

    #[test]
    fn every_shape_schedules_its_integral() {
        for spec in [
            "const:1000",
            "step:100,500@3s,100@6s",
            "ramp:0..1000/6s",
            "sine:500+-400/4s",
            "const:100+burst:500@2s",
        ] {
            let shape = Shape::parse(spec).unwrap();
            let mut s = shaped(spec, Share::ALL);
            let all = offsets(&mut s, 10.0);
            for t in [0.5, 1.0, 2.0, 3.3, 7.0, 10.0] {
                // Due times are exact to PRECISION_S: a burst at t may be computed a hair after it.
                let due = all.iter().filter(|&&o| o <= t + 1e-6).count() as f64;
                assert!(
                    (due - shape.sent_by_secs(t).floor()).abs() <= 1.0,
                    "{spec} at {t}s: {due} due, integral {}",
                    shape.sent_by_secs(t)
                );
            }
        }
    }

    #[test]
    fn a_burst_is_due_at_its_offset() {
        let mut s = shaped("burst:5000@10s", Share::ALL);
        let all = offsets(&mut s, 10.0);
        assert_eq!(all.len(), 5000);
        assert!(all.iter().all(|&o| (o - 10.0).abs() < 1e-6));
        assert!(s.finished(Some(Duration::from_secs(10))));
        assert!(s.finished(None), "a finite shape ends");
    }

    #[test]
    fn producers_sharing_a_shape_split_it() {
        let spec = "ramp:0..900/3s+burst:31@1s";
        let mut together: Vec<f64> = (0..3)
            .flat_map(|index| {
                let mut s = shaped(
                    spec,
                    Share {
                        producers: 3,
                        index,
                    },
                );
                offsets(&mut s, 3.0)
            })
            .collect();
        together.sort_by(f64::total_cmp);
        let mut alone = shaped(spec, Share::ALL);
        let alone = offsets(&mut alone, 3.0);
        assert_eq!(together.len(), alone.len());
        // The same due times, to the bisection's precision (each producer searches from its own last one).
        assert!(
            together
                .iter()
                .zip(&alone)
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
    }

    #[test]
    fn poisson_arrivals_have_the_right_rate_and_differ_per_seed() {
        let mut a = Schedule::new(
            Instant::now(),
            Some(Shape::parse("poisson:1000").unwrap()),
            Share::ALL,
            1,
        );
        let n = offsets(&mut a, 100.0).len() as f64;
        // Count of a Poisson process over 100 s at 1000/s: mean 100,000, sd 316; 5 sd either side.
        assert!((n - 100_000.0).abs() < 1_600.0, "{n}");
        let first = |seed| {
            Schedule::new(
                Instant::now(),
                Some(Shape::parse("poisson:10").unwrap()),
                Share::ALL,
                seed,
            )
            .peek()
        };
        assert_eq!(first(5), first(5));
        assert_ne!(first(5), first(6));
    }

    #[test]
    fn a_shape_that_never_sends_ends_instead_of_hanging() {
        let s = shaped("const:0", Share::ALL);
        assert_eq!(s.peek(), None);
        let s = shaped("step:100,0@1s", Share::ALL);
        assert!(!s.finished(None));
    }

    #[test]
    fn unpaced_means_always_due() {
        let mut s = Schedule::new(Instant::now(), None, Share::ALL, 0);
        assert!(!s.is_paced());
        let now = Instant::now();
        assert_eq!(s.next_due_at(now), Some(now));
        assert_eq!(s.take_due(now, None, 7), vec![None; 7]);
        assert!(!s.finished(Some(Duration::ZERO)));
    }
}

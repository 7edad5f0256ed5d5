//! The local autoscaler: the Microscaling engine's queue rule, rebuilt from its documented behaviour, driving
//! the demo's consumers.
//!
//! Every interval it reads the queue depth and moves the consumer count by one: up when the depth is above
//! the target, down when it is under 70 % of it (the engine's `queueLengthExceedingPercent`: between the two it
//! holds still, so that a queue sitting right at the target does not flap), within `min..=max`. The slots that
//! consumers do not use go to the remainder, the low-priority task, so consumers plus remainders always make
//! `slots`, as in Microscaling's 2016 demo where the priority-1 queue consumer and the priority-2 remainder
//! shared a fixed number of containers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use common::cli::parse_duration;

use super::schedule::MAX_CONSUMERS;
use crate::scorecard::series::band_low;

/// `--autoscale` as written: every key optional, so that a scenario file can supply the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoscaleArgs {
    pub target: Option<u64>,
    pub min: Option<usize>,
    pub max: Option<usize>,
    pub interval: Option<Duration>,
    pub slots: Option<usize>,
}

const EXPECTED: &str = "expected KEY=VALUE pairs such as target=50,min=0,max=8,interval=1s[,slots=8], or `on` to \
                        take everything from --scenario and the defaults (min 0, max 8, interval 1s, slots = max)";

impl FromStr for AutoscaleArgs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut a = AutoscaleArgs::default();
        if s.trim() == "on" {
            return Ok(a);
        }
        for part in s.split(',').map(str::trim) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("invalid --autoscale {s:?}: {part:?} has no `=` ({EXPECTED})")
            })?;
            let number = |v: &str| {
                v.parse::<u64>().map_err(|_| {
                    format!(
                        "invalid --autoscale {s:?}: {k}={v:?} is not a whole number ({EXPECTED})"
                    )
                })
            };
            let count = |v: &str| number(v).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            match k {
                "target" => a.target = Some(number(v)?),
                "min" => a.min = Some(count(v)?),
                "max" => a.max = Some(count(v)?),
                "slots" => a.slots = Some(count(v)?),
                "interval" => {
                    a.interval = Some(
                        parse_duration(v).map_err(|e| format!("invalid --autoscale {s:?}: {e}"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "invalid --autoscale {s:?}: unknown key {other:?} ({EXPECTED})"
                    ));
                }
            }
        }
        Ok(a)
    }
}

/// The autoscaler's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Autoscale {
    /// Queue depth to hold: above it, one more consumer.
    pub target: u64,
    pub min: usize,
    pub max: usize,
    pub interval: Duration,
    /// Consumers plus remainders.
    pub slots: usize,
}

impl fmt::Display for Autoscale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "target={},min={},max={},interval={},slots={}",
            self.target,
            self.min,
            self.max,
            humantime::format_duration(self.interval),
            self.slots
        )
    }
}

impl Autoscale {
    /// Fills what `args` leaves out from `fallback` (a scenario's settings), then the defaults, and checks.
    ///
    /// # Errors
    /// A message for the user when no target is given or the bounds make no sense.
    pub fn resolve(args: &AutoscaleArgs, fallback: &AutoscaleArgs) -> Result<Autoscale, String> {
        let target = args
            .target
            .or(fallback.target)
            .ok_or("--autoscale needs a target depth: target=50, or a --scenario that sets one")?;
        let min = args.min.or(fallback.min).unwrap_or(0);
        let max = args.max.or(fallback.max).unwrap_or(8);
        let interval = args
            .interval
            .or(fallback.interval)
            .unwrap_or(Duration::from_secs(1));
        let slots = args.slots.or(fallback.slots).unwrap_or(max);
        if target == 0 {
            return Err("--autoscale target must be 1 or more".into());
        }
        if min > max || max == 0 || max > MAX_CONSUMERS {
            return Err(format!(
                "--autoscale needs 0 <= min <= max, 1 <= max <= {MAX_CONSUMERS} (got min={min}, max={max})"
            ));
        }
        if slots < max || slots > MAX_CONSUMERS {
            return Err(format!(
                "--autoscale slots ({slots}) must be at least max ({max}) and at most {MAX_CONSUMERS}"
            ));
        }
        if interval.is_zero() {
            return Err("--autoscale interval must be more than 0 (e.g. 1s)".into());
        }
        Ok(Autoscale {
            target,
            min,
            max,
            interval,
            slots,
        })
    }

    /// The depth under which a consumer is removed.
    pub fn band_low(&self) -> u64 {
        band_low(self.target)
    }

    /// The consumer count for the next interval, given the depth now and the count now. `floor` raises `min`
    /// (the demo's drain keeps one consumer while messages remain, or they would never be consumed).
    pub fn decide(&self, depth: u64, current: usize, floor: usize) -> usize {
        let lo = self.min.max(floor).min(self.max);
        let next = if depth > self.target {
            current + 1
        } else if depth < self.band_low() {
            current.saturating_sub(1)
        } else {
            current
        };
        next.clamp(lo, self.max)
    }

    /// Remainders for `consumers` consumers: the spare slots.
    pub fn remainders(&self, consumers: usize) -> usize {
        self.slots.saturating_sub(consumers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(spec: &str) -> Autoscale {
        Autoscale::resolve(&spec.parse().unwrap(), &AutoscaleArgs::default()).unwrap()
    }

    #[test]
    fn specs_parse_with_defaults_and_fallbacks() {
        let s = a("target=50,min=0,max=8,interval=1s");
        assert_eq!(
            s,
            Autoscale {
                target: 50,
                min: 0,
                max: 8,
                interval: Duration::from_secs(1),
                slots: 8
            }
        );
        assert_eq!(s.to_string(), "target=50,min=0,max=8,interval=1s,slots=8");
        assert_eq!(a("target=10,max=3,slots=5,interval=500ms").slots, 5);
        // The scenario fills in what the flag leaves out; the flag wins where both say.
        let scenario = AutoscaleArgs {
            target: Some(20),
            max: Some(4),
            ..Default::default()
        };
        let r = Autoscale::resolve(&"max=6".parse().unwrap(), &scenario).unwrap();
        assert_eq!((r.target, r.max), (20, 6));
        assert_eq!(
            Autoscale::resolve(&"on".parse().unwrap(), &scenario)
                .unwrap()
                .max,
            4
        );
    }

    #[test]
    fn bad_specs_say_what_is_expected() {
        for (bad, needle) in [
            ("target", "no `=`"),
            ("target=x", "not a whole number"),
            ("speed=3", "unknown key"),
            ("interval=3", "invalid"),
        ] {
            let e = bad.parse::<AutoscaleArgs>().unwrap_err();
            assert!(e.contains(needle) && e.contains("expected"), "{bad}: {e}");
        }
        for (bad, needle) in [
            ("max=3", "needs a target"),
            ("target=0", "1 or more"),
            ("target=5,min=4,max=3", "min <= max"),
            ("target=5,max=4,slots=3", "at least max"),
            ("target=5,interval=0s", "more than 0"),
        ] {
            let e =
                Autoscale::resolve(&bad.parse().unwrap(), &AutoscaleArgs::default()).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn the_rule_moves_one_step_toward_the_band_within_bounds() {
        let s = a("target=50,min=1,max=3");
        assert_eq!(s.band_low(), 35);
        assert_eq!(s.decide(51, 1, 0), 2); // above the target: out
        assert_eq!(s.decide(1000, 3, 0), 3); // not past max
        assert_eq!(s.decide(50, 2, 0), 2); // at the target: hold
        assert_eq!(s.decide(35, 2, 0), 2); // at the band's lower edge: hold
        assert_eq!(s.decide(34, 2, 0), 1); // under it: in
        assert_eq!(s.decide(0, 1, 0), 1); // not under min
        assert_eq!(a("target=50").decide(10, 1, 1), 1); // the drain's floor
        assert_eq!(s.remainders(1), 2);
        assert_eq!(a("target=5,max=2,slots=6").remainders(2), 4);
    }
}

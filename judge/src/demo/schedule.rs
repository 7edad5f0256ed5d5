//! The consumer schedule: how many consumers run, and when that changes.
//!
//! Written `3` (three for the whole demo) or `3,0@10s,6@20s`: three at the start, none from 10 s, six from
//! 20 s. It plays the part of the scaling engine, so that a demo can show a backlog building up while no one
//! consumes and draining once consumers come back.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use workload::cli::parse_duration;

/// The most consumers the demo runs at once: enough to saturate any laptop, few enough that a typo (`300`)
/// does not fork hundreds of processes.
pub const MAX_CONSUMERS: usize = 64;

/// One change of the consumer count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// When, from the start of the demo.
    pub at: Duration,
    pub count: usize,
}

/// The consumer count at the start and its later changes, in time order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSchedule {
    pub initial: usize,
    pub steps: Vec<Step>,
}

impl FromStr for ConsumerSchedule {
    type Err = String;

    /// The error states the expected syntax, because clap shows it to the user as is.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| {
            format!(
                "invalid consumer schedule {s:?}: {reason} (expected a count such as 3, or a schedule such as \
                 3,0@10s,6@20s: 3 at the start, 0 from 10s, 6 from 20s)"
            )
        };
        let count = |text: &str| -> Result<usize, String> {
            let n: usize = text.trim().parse().map_err(|_| {
                err(format!(
                    "{text:?} is not a number of consumers from 0 to {MAX_CONSUMERS}"
                ))
            })?;
            if n > MAX_CONSUMERS {
                return Err(err(format!("{n} is more than {MAX_CONSUMERS} consumers")));
            }
            Ok(n)
        };
        let mut parts = s.split(',');
        let first = parts.next().unwrap_or_default();
        if first.contains('@') {
            return Err(err(format!(
                "the first entry {first:?} is the count at the start and has no @TIME"
            )));
        }
        let initial = count(first)?;
        let mut steps: Vec<Step> = Vec::new();
        for part in parts {
            let (n, at) = part.split_once('@').ok_or_else(|| {
                err(format!(
                    "{part:?} has no @TIME (write it as N@TIME, e.g. 0@10s)"
                ))
            })?;
            let count = count(n)?;
            let at = parse_duration(at).map_err(err)?;
            if at.is_zero() {
                return Err(err(format!(
                    "{part:?} is at 0s: put the count at the start first"
                )));
            }
            if steps.last().is_some_and(|prev| at <= prev.at) {
                return Err(err(format!(
                    "{part:?} is not later than the step before it"
                )));
            }
            steps.push(Step { at, count });
        }
        Ok(ConsumerSchedule { initial, steps })
    }
}

impl fmt::Display for ConsumerSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.initial)?;
        for (i, s) in self.steps.iter().enumerate() {
            let sep = if i == 0 { ", then" } else { "," };
            write!(
                f,
                "{sep} {} from {}",
                s.count,
                humantime::format_duration(s.at)
            )?;
        }
        Ok(())
    }
}

impl ConsumerSchedule {
    /// The highest count the schedule ever asks for.
    pub fn max(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.count)
            .fold(self.initial, usize::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_count_or_a_schedule() {
        assert_eq!(
            "3".parse::<ConsumerSchedule>(),
            Ok(ConsumerSchedule {
                initial: 3,
                steps: vec![]
            })
        );
        let s: ConsumerSchedule = "3,0@10s,6@20s".parse().unwrap();
        assert_eq!(s.initial, 3);
        assert_eq!(
            s.steps,
            vec![
                Step {
                    at: secs(10),
                    count: 0
                },
                Step {
                    at: secs(20),
                    count: 6
                }
            ]
        );
        assert_eq!(s.max(), 6);
        assert_eq!(s.to_string(), "3, then 0 from 10s, 6 from 20s");
        let s: ConsumerSchedule = "0,2@500ms".parse().unwrap();
        assert_eq!(s.steps[0].at, Duration::from_millis(500));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong_and_what_is_expected() {
        for (bad, needle) in [
            ("3,x@", "\"x\" is not a number of consumers from 0 to 64"),
            ("3,2@", "invalid duration"),
            ("3,2", "has no @TIME"),
            ("2@1s", "count at the start"),
            ("", "\"\" is not a number of consumers"),
            ("-1", "not a number of consumers from 0 to 64"),
            ("1000", "more than 64"),
            ("3,1@2s,2@1s", "not later than"),
            ("3,1@0s", "at 0s"),
        ] {
            let e = bad.parse::<ConsumerSchedule>().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(e.contains("expected a count such as 3"), "{bad}: {e}");
        }
    }
}

//! The Microscaling engine's queue rule, rebuilt from its documented behaviour: every interval it reads the
//! queue depth and moves the consumer count by one: up when the depth is above the target, down when it is
//! under 70 % of it (the engine's `queueLengthExceedingPercent`: between the two it holds still, so that a
//! queue sitting right at the target does not flap), within `min..=max`.

use std::time::Duration;

use queues::Depth;

use super::Policy;
use crate::scorecard::series::band_low;

/// The rule with its bounds. It keeps no state: each decision depends on the depth and count of the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Microscaling {
    pub target: u64,
    pub min: usize,
    pub max: usize,
}

impl Microscaling {
    /// The depth under which a consumer is removed.
    pub fn band_low(&self) -> u64 {
        band_low(self.target)
    }
}

impl Policy for Microscaling {
    /// The engine reads every message not yet acked (ready and in flight), as the demo always has.
    fn decide(&mut self, _now: Duration, depth: Depth, current: usize) -> usize {
        let depth = depth.total();
        let next = if depth > self.target {
            current + 1
        } else if depth < self.band_low() {
            current.saturating_sub(1)
        } else {
            current
        };
        next.clamp(self.min.min(self.max), self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(total: u64) -> Depth {
        Depth {
            visible: total,
            in_flight: None,
        }
    }

    #[test]
    fn the_rule_moves_one_step_toward_the_band_within_bounds() {
        let mut s = Microscaling {
            target: 50,
            min: 1,
            max: 3,
        };
        let t = Duration::ZERO;
        assert_eq!(s.band_low(), 35);
        assert_eq!(s.decide(t, d(51), 1), 2); // above the target: out
        assert_eq!(s.decide(t, d(1000), 3), 3); // not past max
        assert_eq!(s.decide(t, d(50), 2), 2); // at the target: hold
        assert_eq!(s.decide(t, d(35), 2), 2); // at the band's lower edge: hold
        assert_eq!(s.decide(t, d(34), 2), 1); // under it: in
        assert_eq!(s.decide(t, d(0), 1), 1); // not under min
        // In flight counts: 30 ready and 30 leased is above 50.
        let both = Depth {
            visible: 30,
            in_flight: Some(30),
        };
        assert_eq!(s.decide(t, both, 1), 2);
    }
}

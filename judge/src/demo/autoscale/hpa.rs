//! The Kubernetes Horizontal Pod Autoscaler's controller, for one `AverageValue` external metric: the part
//! of KEDA's scaling that Kubernetes does (1↔N).
//!
//! Modelled from the documentation,
//! <https://kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/> ("Algorithm
//! details", "Configurable scaling behavior", "Default behavior"), and the controller's source,
//! kubernetes/kubernetes `pkg/controller/podautoscaler/horizontal.go` (`reconcileAutoscaler`,
//! `normalizeDesiredReplicasWithBehaviors`, `stabilizeRecommendationWithBehaviors`,
//! `calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`) and
//! `replica_calculator.go` (`GetExternalPerPodMetricReplicas`). Every sync period it:
//!
//! 1. proposes ⌈total / target⌉ replicas, or keeps the current count when total / (target × current) is
//!    within the tolerance of 1;
//! 2. stabilises: the lowest proposal of the scale-up window and the highest of the scale-down window bound
//!    the change (defaults 0 s and 300 s, so a scale-down waits for five minutes of lower proposals);
//! 3. limits the rate: the replicas at the start of each policy's period plus the policy's allowance
//!    (`Pods`: that many; `Percent`: that share), the largest allowance winning (`selectPolicy: Max`).
//!
//! One simplification: the documentation lets each policy have its own `periodSeconds`; here both policies
//! of a direction share one period (the defaults do: 15 s).

use std::collections::VecDeque;
use std::time::Duration;

/// Which policy wins when a direction has two (`selectPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change (the default).
    Max,
    /// The one allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

impl Select {
    pub fn parse(s: &str) -> Result<Select, String> {
        match s.to_ascii_lowercase().as_str() {
            "max" => Ok(Select::Max),
            "min" => Ok(Select::Min),
            "disabled" => Ok(Select::Disabled),
            _ => Err(format!("{s:?} is not max, min or disabled")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Select::Max => "max",
            Select::Min => "min",
            Select::Disabled => "disabled",
        }
    }
}

/// The `behavior` of one direction (`scaleUp` or `scaleDown`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub stabilization: Duration,
    /// A `Percent` policy's value, `None` for no such policy.
    pub percent: Option<u32>,
    /// A `Pods` policy's value, `None` for no such policy.
    pub pods: Option<u32>,
    /// `periodSeconds` of both policies.
    pub period: Duration,
    pub select: Select,
}

/// The HPA's settings: the controller's flags and the object's `behavior`.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaSettings {
    /// `--horizontal-pod-autoscaler-sync-period` (15 s).
    pub sync: Duration,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
    pub up: Rules,
    pub down: Rules,
}

impl Default for HpaSettings {
    /// The documented defaults ("Default behavior"): up by 100 % or 4 pods per 15 s, whichever is more,
    /// at once; down by 100 % per 15 s after a 300 s window.
    fn default() -> Self {
        HpaSettings {
            sync: Duration::from_secs(15),
            tolerance: 0.1,
            up: Rules {
                stabilization: Duration::ZERO,
                percent: Some(100),
                pods: Some(4),
                period: Duration::from_secs(15),
                select: Select::Max,
            },
            down: Rules {
                stabilization: Duration::from_secs(300),
                percent: Some(100),
                pods: None,
                period: Duration::from_secs(15),
                select: Select::Max,
            },
        }
    }
}

/// The controller's state for one HPA: past recommendations and scale events, each with its time.
#[derive(Clone, Debug)]
pub struct Hpa {
    s: HpaSettings,
    /// `minReplicas` (at least 1: KEDA gives the HPA max(minReplicaCount, 1)) and `maxReplicas`.
    min: usize,
    max: usize,
    /// Unstabilised proposals, oldest first (`a.recommendations`).
    recommendations: VecDeque<(Duration, usize)>,
    /// Replicas added (up) or removed (down) by this controller, with when (`scaleUpEvents`, …).
    up_events: Vec<(Duration, usize)>,
    down_events: Vec<(Duration, usize)>,
}

impl Hpa {
    pub fn new(s: HpaSettings, min: usize, max: usize) -> Hpa {
        Hpa {
            s,
            min: min.max(1),
            max,
            recommendations: VecDeque::new(),
            up_events: Vec::new(),
            down_events: Vec::new(),
        }
    }

    pub fn settings(&self) -> &HpaSettings {
        &self.s
    }

    /// The replicas the metric asks for (`GetExternalPerPodMetricReplicas`): ⌈total / target⌉, unless the
    /// usage ratio total / (target × current) is within the tolerance of 1.
    pub fn proposal(&self, total: u64, target: u64, current: usize) -> usize {
        let target = target.max(1);
        let wanted = usize::try_from(total.div_ceil(target)).unwrap_or(usize::MAX);
        if current == 0 {
            return wanted;
        }
        let ratio = total as f64 / (target as f64 * current as f64);
        if (1.0 - ratio).abs() <= self.s.tolerance {
            current
        } else {
            wanted
        }
    }

    /// One sync (`reconcileAutoscaler`): the replicas the HPA sets at `now`, given the metric and the current
    /// count. At 0 replicas it does nothing: with minReplicas ≥ 1 that means "autoscaling disabled", and
    /// leaving 0 is KEDA's part.
    pub fn reconcile(&mut self, now: Duration, total: u64, target: u64, current: usize) -> usize {
        let desired = if current == 0 {
            return 0;
        } else if current > self.max {
            self.max
        } else if current < self.min {
            self.min
        } else {
            let proposal = self.proposal(total, target, current);
            self.normalize(now, proposal, current)
        };
        if desired > current {
            self.up_events.push((now, desired - current));
        } else if desired < current {
            self.down_events.push((now, current - desired));
        }
        desired
    }

    /// `normalizeDesiredReplicasWithBehaviors`: stabilise, then limit the rate and clamp to min..=max.
    fn normalize(&mut self, now: Duration, proposal: usize, current: usize) -> usize {
        // `maybeInitScaleDownStabilizationWindow`: a new HPA acts as if it had recommended the current count,
        // so it does not scale in on its first sync.
        if self.recommendations.is_empty() && !self.s.down.stabilization.is_zero() {
            self.recommendations.push_back((now, current));
        }
        let after = |window: Duration| now.checked_sub(window);
        let in_window = |t: Duration, window: Duration| after(window).is_none_or(|cut| t > cut);
        let mut up = proposal;
        let mut down = proposal;
        for &(t, r) in &self.recommendations {
            if in_window(t, self.s.up.stabilization) {
                up = up.min(r);
            }
            if in_window(t, self.s.down.stabilization) {
                down = down.max(r);
            }
        }
        let stabilised = current.max(up).min(down);
        self.recommendations.push_back((now, proposal));
        let keep = self.s.up.stabilization.max(self.s.down.stabilization);
        while self
            .recommendations
            .front()
            .is_some_and(|&(t, _)| !in_window(t, keep))
        {
            self.recommendations.pop_front();
        }
        self.limit_rate(now, stabilised, current)
    }

    /// `convertDesiredReplicasWithBehaviorRate`.
    fn limit_rate(&mut self, now: Duration, desired: usize, current: usize) -> usize {
        let since = |events: &[(Duration, usize)], period: Duration| -> usize {
            let cut = now.checked_sub(period);
            events
                .iter()
                .filter(|&&(t, _)| cut.is_none_or(|c| t > c))
                .map(|&(_, n)| n)
                .sum()
        };
        let cap = self.s.up.period.max(self.s.down.period);
        self.up_events
            .retain(|&(t, _)| now.saturating_sub(t) <= cap);
        self.down_events
            .retain(|&(t, _)| now.saturating_sub(t) <= cap);
        let period_start = |rules: &Rules| {
            (current + since(&self.down_events, rules.period))
                .saturating_sub(since(&self.up_events, rules.period))
        };
        if desired > current {
            let r = &self.s.up;
            let start = period_start(r);
            let proposals = [
                r.pods.map(|p| start + p as usize),
                // Rounded up, as the controller does, or 1 replica at 50 % would never grow.
                r.percent
                    .map(|p| (start as f64 * (1.0 + f64::from(p) / 100.0)).ceil() as usize),
            ];
            let limit = match r.select {
                Select::Disabled => current,
                Select::Max => proposals.into_iter().flatten().max().unwrap_or(current),
                Select::Min => proposals.into_iter().flatten().min().unwrap_or(current),
            };
            desired.min(limit.max(current)).min(self.max)
        } else if desired < current {
            let r = &self.s.down;
            let start = period_start(r);
            let proposals = [
                r.pods.map(|p| start.saturating_sub(p as usize)),
                // Truncated, as the controller does.
                r.percent
                    .map(|p| (start as f64 * (1.0 - f64::from(p) / 100.0)).max(0.0) as usize),
            ];
            let limit = match r.select {
                Select::Disabled => current,
                // The largest change is the lowest count.
                Select::Max => proposals.into_iter().flatten().min().unwrap_or(current),
                Select::Min => proposals.into_iter().flatten().max().unwrap_or(current),
            };
            desired.max(limit.min(current)).max(self.min)
        } else {
            desired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_proposal_is_the_documented_ratio_with_its_tolerance() {
        let hpa = Hpa::new(HpaSettings::default(), 1, 100);
        // The documentation's example: current 200m against a desired 100m doubles the replicas; 50m halves
        // them. For an AverageValue metric the per-replica value is total / current.
        assert_eq!(hpa.proposal(4 * 200, 100, 4), 8);
        assert_eq!(hpa.proposal(4 * 50, 100, 4), 2);
        // Within the 0.1 tolerance of the target, nothing changes: 4 replicas at 108 or 92 per replica.
        assert_eq!(hpa.proposal(432, 100, 4), 4);
        assert_eq!(hpa.proposal(368, 100, 4), 4);
        // Just past it, the count follows the metric, rounded up: 4 × 111 = 444 → ⌈4.44⌉ = 5.
        assert_eq!(hpa.proposal(444, 100, 4), 5);
        assert_eq!(hpa.proposal(356, 100, 4), 4); // ⌈3.56⌉ = 4: past the tolerance, same count
        assert_eq!(hpa.proposal(0, 100, 4), 0);
    }

    #[test]
    fn scale_up_is_limited_by_the_default_policies() {
        // 100 % or 4 pods per 15 s, whichever is more: from 1, 5 (1 + 4 beats 2); from 10, 20 (100 % beats 14).
        let mut hpa = Hpa::new(HpaSettings::default(), 1, 100);
        assert_eq!(hpa.reconcile(s(0), 10_000, 10, 1), 5);
        let mut hpa = Hpa::new(HpaSettings::default(), 1, 100);
        assert_eq!(hpa.reconcile(s(0), 10_000, 10, 10), 20);
        // Within one period the allowance is counted from the period's start: after 1 → 5 at 0 s, a second
        // sync at 10 s may not go further (the period's start is still 1), at 15 s the period has passed.
        let mut hpa = Hpa::new(HpaSettings::default(), 1, 100);
        assert_eq!(hpa.reconcile(s(0), 10_000, 10, 1), 5);
        assert_eq!(hpa.reconcile(s(10), 10_000, 10, 5), 5);
        assert_eq!(hpa.reconcile(s(15), 10_000, 10, 5), 10);
        assert_eq!(hpa.reconcile(s(30), 10_000, 10, 10), 20);
        // And never past maxReplicas.
        let mut hpa = Hpa::new(HpaSettings::default(), 1, 8);
        assert_eq!(hpa.reconcile(s(0), 10_000, 10, 6), 8);
    }

    #[test]
    fn the_scale_down_window_keeps_the_highest_recommendation() {
        let mut hpa = Hpa::new(HpaSettings::default(), 1, 100);
        // 10 replicas wanted, then far fewer: the 300 s window holds 10 until the high one leaves it.
        assert_eq!(hpa.reconcile(s(0), 100, 10, 10), 10);
        assert_eq!(hpa.reconcile(s(15), 20, 10, 10), 10);
        assert_eq!(hpa.reconcile(s(150), 60, 10, 10), 10);
        assert_eq!(hpa.reconcile(s(285), 20, 10, 10), 10);
        // At 300 s the recommendation of 0 s is out (the window is (now − 300 s, now]); the highest left is
        // 6 (at 150 s), and 100 % per 15 s allows it all.
        assert_eq!(hpa.reconcile(s(300), 20, 10, 10), 6);
        assert_eq!(hpa.reconcile(s(450), 20, 10, 6), 2);
        // Never under minReplicas.
        let mut hpa = Hpa::new(HpaSettings::default(), 3, 100);
        assert_eq!(hpa.reconcile(s(0), 100, 10, 10), 10);
        assert_eq!(hpa.reconcile(s(301), 0, 10, 10), 3);
    }

    #[test]
    fn behavior_overrides_apply() {
        // The documentation's scale-down example: 4 pods or 10 % per 60 s, the larger change winning; from 80
        // replicas the first step removes 8 (10 %), at 72 again 8 (72 × 0.9 = 64.8 → 64).
        let settings = HpaSettings {
            down: Rules {
                stabilization: Duration::ZERO,
                percent: Some(10),
                pods: Some(4),
                period: s(60),
                select: Select::Max,
            },
            ..HpaSettings::default()
        };
        let mut hpa = Hpa::new(settings.clone(), 1, 100);
        assert_eq!(hpa.reconcile(s(0), 100, 10, 80), 72);
        assert_eq!(hpa.reconcile(s(15), 100, 10, 72), 72); // the period is not over
        assert_eq!(hpa.reconcile(s(60), 100, 10, 72), 64);
        // Under 40 replicas, 4 pods is the larger change.
        let mut hpa = Hpa::new(settings.clone(), 1, 100);
        assert_eq!(hpa.reconcile(s(0), 100, 10, 30), 26);
        // selectPolicy: Min takes the smaller change; Disabled none.
        let mut min = settings.clone();
        min.down.select = Select::Min;
        assert_eq!(Hpa::new(min, 1, 100).reconcile(s(0), 100, 10, 80), 76);
        let mut off = settings;
        off.down.select = Select::Disabled;
        assert_eq!(Hpa::new(off, 1, 100).reconcile(s(0), 100, 10, 80), 80);
        // A scale-up window keeps the lowest recommendation of the window.
        let mut up = HpaSettings::default();
        up.up.stabilization = s(60);
        let mut hpa = Hpa::new(up, 1, 100);
        assert_eq!(hpa.reconcile(s(0), 20, 10, 2), 2);
        assert_eq!(hpa.reconcile(s(15), 100, 10, 2), 2);
        assert_eq!(hpa.reconcile(s(60), 100, 10, 2), 6); // the 2 of 0 s has left the window
    }

    #[test]
    fn at_zero_replicas_the_hpa_does_nothing() {
        let mut hpa = Hpa::new(HpaSettings::default(), 0, 8);
        assert_eq!(hpa.reconcile(s(0), 1000, 10, 0), 0);
        // minReplicas is at least 1 (KEDA's max(min, 1)).
        assert_eq!(hpa.reconcile(s(15), 0, 10, 1), 1);
    }
}

//! KEDA's scaling of a `ScaledObject` with one queue trigger: KEDA itself does 0↔1 (activation, cooldown)
//! and hands 1↔N to the Horizontal Pod Autoscaler ([`super::hpa`]).
//!
//! Modelled from the ScaledObject specification, <https://keda.sh/docs/2.16/reference/scaledobject-spec/>,
//! <https://keda.sh/docs/2.16/concepts/scaling-deployments/>, and KEDA's source, kedacore/keda
//! `pkg/scaling/executor/scale_scaledobjects.go` (`RequestScale`, `scaleFromZeroOrIdle`, `scaleToZeroOrIdle`):
//!
//! - every `pollingInterval` (30 s) KEDA reads the scaler; the trigger is active when the metric is strictly
//!   above its activation value (0 by default);
//! - active at 0 replicas: scale to max(minReplicaCount, 1); active otherwise: note the time (`LastActiveTime`);
//! - inactive with minReplicaCount 0 and replicas > 0: scale to 0 **from any count** once `cooldownPeriod`
//!   (300 s) has passed since the trigger was last active, or, when it never was, once
//!   `initialCooldownPeriod` (0 s) has passed since the object was created — the HPA's scale-down is
//!   bypassed;
//! - inactive under a minReplicaCount ≥ 1: set minReplicaCount (activation plays no part then);
//! - the HPA, with minReplicas max(minReplicaCount, 1), reads the metric every sync period (15 s), live, or,
//!   with `useCachedMetrics`, the value KEDA cached at its last poll.
//!
//! The metric is the scaler's, which differs per backend: each backend registers its own (see [`Scaler`]).

use std::time::Duration;

use queues::Depth;
use queues::keda::{Counts, KedaScaler};
use queues::registry;

use super::Policy;
use super::hpa::{Hpa, HpaSettings};

/// The KEDA scaler whose reading of the queue the policy uses: a backend's, as the backend registers it
/// ([`queues::Backend::keda`]: what it counts, its target's default), named by the backend's scheme, and the
/// reading it is configured for. The demo's SQLite queue has no KEDA scaler: it is read the way the chosen
/// scaler reads its own backend (ready only, in flight only, or both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaler {
    /// The backend's scheme (`scaler=` in `--autoscale`).
    pub backend: &'static str,
    pub keda: &'static KedaScaler,
    /// What it counts: the scaler's default reading, or its alternative.
    pub counts: Counts,
}

impl Scaler {
    /// The scaler of the backend `scheme`, read its default way.
    ///
    /// # Errors
    /// A message naming the backends of this build that have one.
    pub fn named(scheme: &str) -> Result<Scaler, String> {
        registry::keda_scalers()
            .find(|(b, _)| *b == scheme)
            .map(|(backend, keda)| Scaler {
                backend,
                keda,
                counts: keda.counts,
            })
            .ok_or_else(|| {
                let known: Vec<&str> = registry::keda_scalers().map(|(b, _)| b).collect();
                format!(
                    "scaler={scheme:?}: expected the scheme of a backend KEDA has a scaler for: {}",
                    if known.is_empty() {
                        "none in this build (build with every backend: `cargo build --release`)"
                            .to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })
    }

    /// The default: the first scaler (in registry order) that counts ready plus leased, the figure the
    /// Microscaling rule reads, so that the two policies compare on the same reading; else the first.
    pub fn default_scaler() -> Option<Scaler> {
        let pick = registry::keda_scalers()
            .find(|(_, k)| k.counts == Counts::All)
            .or_else(|| registry::keda_scalers().next());
        pick.map(|(backend, keda)| Scaler {
            backend,
            keda,
            counts: keda.counts,
        })
    }

    /// What the scaler would read from a queue of this depth.
    pub fn read(self, d: Depth) -> u64 {
        self.counts.read(d)
    }

    /// The scaler's default target value per replica.
    pub fn default_target(self) -> u64 {
        self.keda.default_target
    }

    pub fn name(self) -> &'static str {
        self.backend
    }
}

/// KEDA's settings (the ScaledObject's and its trigger's), with the HPA's.
#[derive(Clone, Debug, PartialEq)]
pub struct KedaSettings {
    /// `None` only in a build with no backend KEDA has a scaler for (`policy=keda` then refuses to run).
    pub scaler: Option<Scaler>,
    /// `pollingInterval`.
    pub polling: Duration,
    /// `cooldownPeriod`.
    pub cooldown: Duration,
    /// `initialCooldownPeriod`.
    pub initial_cooldown: Duration,
    /// The trigger's activation value.
    pub activation: u64,
    /// The trigger's `useCachedMetrics`.
    pub use_cached_metrics: bool,
    pub hpa: HpaSettings,
}

impl Default for KedaSettings {
    fn default() -> Self {
        KedaSettings {
            scaler: Scaler::default_scaler(),
            polling: Duration::from_secs(30),
            cooldown: Duration::from_secs(300),
            initial_cooldown: Duration::ZERO,
            activation: 0,
            use_cached_metrics: false,
            hpa: HpaSettings::default(),
        }
    }
}

/// KEDA and its HPA, driven by the caller's clock.
#[derive(Clone, Debug)]
pub struct Keda {
    s: KedaSettings,
    target: u64,
    min: usize,
    hpa: Hpa,
    next_poll: Duration,
    next_sync: Duration,
    /// When the trigger was last seen active (`status.lastActiveTime`).
    last_active: Option<Duration>,
    /// The value read at the last poll (what `useCachedMetrics` serves the HPA).
    cached: u64,
}

impl Keda {
    /// KEDA from its settings, the target value per replica and min/max replica counts, created at time 0.
    pub fn new(s: KedaSettings, target: u64, min: usize, max: usize) -> Keda {
        Keda {
            hpa: Hpa::new(s.hpa.clone(), min.max(1), max),
            s,
            target,
            min,
            next_poll: Duration::ZERO,
            next_sync: Duration::ZERO,
            last_active: None,
            cached: 0,
        }
    }

    /// One of KEDA's polls (`RequestScale`).
    fn poll(&mut self, now: Duration, value: u64, current: usize) -> usize {
        let active = value > self.s.activation;
        if active {
            self.last_active = Some(now);
            if current == 0 {
                return self.min.max(1);
            }
            return current;
        }
        if self.min == 0 && current > 0 {
            // `.Before(now)`: strictly after the cooldown.
            let cooled = match self.last_active {
                Some(t) => now > t + self.s.cooldown,
                None => now > self.s.initial_cooldown,
            };
            return if cooled { 0 } else { current };
        }
        current.max(self.min)
    }
}

/// The next time of a schedule of period `every` that is after `now` (no catch-up after a stall: the time
/// before it is the one the loop acts at).
fn next_after(mut next: Duration, every: Duration, now: Duration) -> Duration {
    while next <= now {
        next += every;
    }
    next
}

impl Policy for Keda {
    fn decide(&mut self, now: Duration, depth: Depth, current: usize) -> usize {
        // `resolve` refuses policy=keda without a scaler; reading everything is the safe side there.
        let value = self.s.scaler.map_or(depth.total(), |sc| sc.read(depth));
        let mut replicas = current;
        // Each loop acts at its scheduled time, not at the caller's slightly later `now`: the real loops are
        // at least a period apart, so a scale event exactly one policy period back is outside the period
        // (the HPA counts events strictly after now − period). Timed by the caller's jittery clock, it would
        // fall inside or outside at random and sometimes halve the scale-up allowance.
        if now >= self.next_poll {
            let every = self.s.polling;
            self.next_poll = next_after(self.next_poll, every, now);
            let at = self.next_poll - every;
            self.cached = value;
            replicas = self.poll(at, value, replicas);
        }
        if now >= self.next_sync {
            let every = self.hpa.settings().sync;
            self.next_sync = next_after(self.next_sync, every, now);
            let at = self.next_sync - every;
            let metric = if self.s.use_cached_metrics {
                self.cached
            } else {
                value
            };
            replicas = self.hpa.reconcile(at, metric, self.target, replicas);
        }
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn depth(visible: u64, in_flight: u64) -> Depth {
        Depth {
            visible,
            in_flight: Some(in_flight),
        }
    }

    fn keda(f: impl FnOnce(&mut KedaSettings), target: u64, min: usize, max: usize) -> Keda {
        let mut settings = KedaSettings::default();
        f(&mut settings);
        Keda::new(settings, target, min, max)
    }

    #[test]
    fn each_scaler_reads_its_own_depth() {
        let d = depth(7, 3);
        let read = |name: &str| Scaler::named(name).unwrap().read(d);
        // The facts come from each backend's registration; the figures are KEDA's.
        assert_eq!(read("nsq"), 7);
        assert_eq!(read("azure"), 10);
        assert_eq!(read("nats"), 10);
        assert_eq!(read("redis"), 3);
        assert_eq!(read("amqp"), 7);
        let visible_only = Scaler {
            counts: Counts::Visible,
            ..Scaler::named("azure").unwrap()
        };
        assert_eq!(visible_only.read(d), 7);
        assert_eq!(Scaler::named("nsq").unwrap().default_target(), 10);
        assert_eq!(Scaler::named("azure").unwrap().default_target(), 5);
        assert!(
            Scaler::named("sqlite").is_err(),
            "SQLite has no KEDA scaler"
        );
        // The default reads what the Microscaling rule reads: ready plus leased.
        assert_eq!(
            Scaler::default_scaler().map(|s| s.counts),
            Some(Counts::All)
        );
    }

    #[test]
    fn activation_is_strictly_above_the_threshold_and_lifts_to_the_minimum() {
        let mut k = keda(|c| c.activation = 5, 10, 0, 8);
        // At the threshold: inactive, nothing starts.
        assert_eq!(k.decide(s(0), depth(5, 0), 0), 0);
        // Above it, but KEDA only looks at its next poll (30 s): 0 → max(min, 1) = 1; the HPA, syncing at the
        // same moment, sees 1 replica and 6 messages: ⌈6/10⌉ = 1, so 1 stays.
        assert_eq!(k.decide(s(29), depth(6, 0), 0), 0);
        assert_eq!(k.decide(s(30), depth(6, 0), 0), 1);
        // With min 2, activation still starts from 0 straight to 2.
        let mut k = keda(|c| c.activation = 5, 10, 2, 8);
        assert_eq!(k.decide(s(0), depth(6, 0), 0), 2);
        // With min ≥ 1, activation plays no part: an inactive trigger restores the minimum.
        let mut k = keda(|c| c.activation = 100, 10, 2, 8);
        assert_eq!(k.decide(s(0), depth(0, 0), 0), 2);
    }

    #[test]
    fn cooldown_scales_to_zero_from_any_count_bypassing_the_hpa() {
        let mut k = keda(|c| c.cooldown = s(60), 10, 0, 8);
        // Active at 0 s with 60 messages: 0 → 1 (KEDA), then the HPA in the same instant: ⌈60/10⌉ = 6, but
        // 100 % or 4 pods from 1 allows 5.
        assert_eq!(k.decide(s(0), depth(60, 0), 0), 5);
        // Still active at the 30 s poll (50 per replica is the target: the HPA holds).
        assert_eq!(k.decide(s(30), depth(50, 0), 5), 5);
        // Empty from then on: the HPA's 300 s window holds 5 replicas; the cooldown counts from the last
        // active poll (30 s), and at 90 s it has not passed (strictly after)...
        assert_eq!(k.decide(s(60), depth(0, 0), 5), 5);
        assert_eq!(k.decide(s(90), depth(0, 0), 5), 5);
        // ... at the 120 s poll it has: 5 → 0 at once, where the HPA alone would have held 5 until 330 s.
        assert_eq!(k.decide(s(120), depth(0, 0), 5), 0);
        // With the defaults the HPA's window and the cooldown are both 300 s: the HPA goes down to its
        // minReplicas (1) once the 0 s recommendation leaves its window, KEDA to 0 at the next poll after.
        let mut k = keda(|_| {}, 10, 0, 8);
        assert_eq!(k.decide(s(0), depth(60, 0), 0), 5);
        assert_eq!(k.decide(s(15), depth(0, 0), 5), 5);
        assert_eq!(k.decide(s(300), depth(0, 0), 5), 1);
        assert_eq!(k.decide(s(330), depth(0, 0), 1), 0);
        // A shorter cooldown, and a trigger never active: 0 s of initial cooldown scales a running target
        // down at the first poll after creation; an initialCooldownPeriod of 60 s waits for it.
        let mut k = keda(|c| c.cooldown = s(30), 10, 0, 8);
        assert_eq!(k.decide(s(0), depth(0, 0), 3), 3); // at 0 s, 0 is not strictly after 0 s
        assert_eq!(k.decide(s(30), depth(0, 0), 3), 0);
        let mut k = keda(|c| c.initial_cooldown = s(60), 10, 0, 8);
        assert_eq!(k.decide(s(30), depth(0, 0), 3), 3);
        assert_eq!(k.decide(s(60), depth(0, 0), 3), 3);
        assert_eq!(k.decide(s(90), depth(0, 0), 3), 0);
    }

    #[test]
    fn cached_metrics_serve_the_hpa_the_last_poll() {
        let mut live = keda(|_| {}, 10, 0, 8);
        let mut cached = keda(|c| c.use_cached_metrics = true, 10, 0, 8);
        for k in [&mut live, &mut cached] {
            assert_eq!(k.decide(s(0), depth(10, 0), 0), 1);
        }
        // At 15 s the HPA syncs between two polls: live it reads 40 messages, cached the 10 of 0 s.
        assert_eq!(live.decide(s(15), depth(40, 0), 1), 4);
        assert_eq!(cached.decide(s(15), depth(40, 0), 1), 1);
    }

    #[test]
    fn the_loops_keep_their_schedule_whatever_the_callers_jitter() {
        let ms = Duration::from_millis;
        let mut k = keda(|_| {}, 10, 0, 8);
        assert_eq!(k.decide(ms(20), depth(10, 0), 0), 1);
        // The 15 s sync, called 50 ms late: 1 + 4 pods.
        assert_eq!(k.decide(ms(15_050), depth(1000, 0), 1), 5);
        // The 30 s sync, called only 10 ms late: the scale-up of the 15 s sync is one whole period back, so
        // 100 % of 5 is allowed (with the callers' times it would still count, and cap the count at 5).
        assert_eq!(k.decide(ms(30_010), depth(1000, 0), 5), 8);
    }

    /// A step up and a step down on a simulated clock, one decision a second, with every default (target
    /// 10 per replica, max 8): every change and when it happens.
    #[test]
    fn a_step_up_and_down_on_a_simulated_clock() {
        let mut k = keda(|_| {}, 10, 0, 8);
        // Each replica consumes 10 messages a second; the load is 0, then 60/s from 10 s (the step up), 10/s
        // from 100 s (the step down), nothing from 500 s. Each second the arrivals land, the policy reads the
        // queue, then the replicas consume.
        let rate = |t: u64| match t {
            0..10 => 0,
            10..100 => 60,
            100..500 => 10,
            _ => 0,
        };
        let mut backlog: u64 = 0;
        let mut replicas = 0;
        let mut changes = Vec::new();
        for t in 0..=900u64 {
            backlog += rate(t);
            let next = k.decide(s(t), depth(backlog, 0), replicas);
            if next != replicas {
                changes.push((t, replicas, next));
                replicas = next;
            }
            backlog = backlog.saturating_sub(10 * replicas as u64);
        }
        assert_eq!(
            changes,
            vec![
                // The 0 s poll found nothing; the 30 s poll finds 1,260 messages: 0 → 1 (KEDA), and the HPA,
                // syncing at the same instant, proposes ⌈1260/10⌉ = 126, of which 1 + 4 pods are allowed.
                (30, 0, 5),
                // 45 s, the next sync: 1,410 messages; 100 % of 5 allows 10, maxReplicaCount is 8.
                (45, 5, 8),
                // The backlog is gone by 104 s; the last high recommendation was at the 90 s sync (⌈510/10⌉),
                // and leaves the 300 s window at 390 s: 8 → 1 (10 messages a second want one replica).
                (390, 8, 1),
                // Nothing arrives from 500 s; the last active poll was at 480 s, and 480 + 300 s is only
                // passed (strictly) at the 810 s poll: KEDA scales 1 → 0.
                (810, 1, 0),
            ]
        );
    }
}

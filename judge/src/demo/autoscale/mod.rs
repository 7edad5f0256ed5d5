//! The local autoscaler: a scaling engine's policy, rebuilt from its documentation and source, driving the
//! demo's consumers.
//!
//! - [`microscaling`]: the Microscaling engine's queue rule (one consumer more or less per interval), the
//!   default;
//! - [`keda`]: KEDA's 0↔1 activation and cooldown, over [`hpa`], the Kubernetes HPA's 1↔N algorithm.
//!
//! A policy is pure and clock-driven ([`Policy::decide`]): the demo calls it every `interval` with the time,
//! the depth and the consumer count, and a test can do the same on a simulated clock. The slots that
//! consumers do not use go to the remainder, the low-priority task, so consumers plus remainders always make
//! `slots`, as in Microscaling's 2016 demo where the priority-1 queue consumer and the priority-2 remainder
//! shared a fixed number of containers.

pub mod hpa;
pub mod keda;
pub mod microscaling;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use queues::Depth;
use queues::keda::Counts;
use workload::cli::parse_duration;

use self::hpa::{Rules, Select};
use self::keda::{Keda, KedaSettings, Scaler};
use self::microscaling::Microscaling;
use super::schedule::MAX_CONSUMERS;
use crate::scorecard::series::band_low;

/// A scaling policy: the consumer count it wants at `now` (time since the autoscaler started), given the
/// queue's depth and the consumers the demo runs (started or starting).
pub trait Policy: Send {
    fn decide(&mut self, now: Duration, depth: Depth, current: usize) -> usize;
}

/// Which engine's policy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Microscaling,
    Keda,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Microscaling => "microscaling",
            PolicyKind::Keda => "keda",
        }
    }
}

/// The keys only the keda policy reads.
const KEDA_KEYS: [&str; 19] = [
    "scaler",
    "queue-length-strategy",
    "polling",
    "cooldown",
    "initial-cooldown",
    "activation",
    "use-cached-metrics",
    "sync",
    "tolerance",
    "up-stabilization",
    "up-percent",
    "up-pods",
    "up-period",
    "up-select",
    "down-stabilization",
    "down-percent",
    "down-pods",
    "down-period",
    "down-select",
];

/// `--autoscale` (or a scenario's `[autoscale]`) as written: KEY=VALUE pairs, each checked, applied over the
/// defaults in [`Autoscale::resolve`], so that a scenario file can supply what the flag leaves out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoscaleArgs {
    pairs: Vec<(String, String)>,
}

const EXPECTED: &str = "expected KEY=VALUE pairs such as target=50,min=0,max=8,interval=1s[,slots=8] or \
                        policy=keda,polling=5s,cooldown=30s (see the README for every key), or `on` to take \
                        everything from --scenario and the defaults";

impl AutoscaleArgs {
    /// Checks each pair (a known key, a value of its kind).
    ///
    /// # Errors
    /// A message naming the bad pair and what is expected.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<AutoscaleArgs, String> {
        let mut draft = Draft::default();
        for (k, v) in &pairs {
            draft.set(k, v)?;
        }
        Ok(AutoscaleArgs { pairs })
    }

    fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }
}

impl FromStr for AutoscaleArgs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "on" {
            return Ok(AutoscaleArgs::default());
        }
        let mut pairs = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} has no `=` ({EXPECTED})"))?;
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        // Clap puts the flag and the value before it: `--autoscale: invalid value "…": …`.
        AutoscaleArgs::from_pairs(pairs)
    }
}

/// Settings being resolved: the defaults, then the scenario's pairs, then the flag's.
#[derive(Clone, Debug)]
struct Draft {
    policy: PolicyKind,
    target: Option<u64>,
    min: usize,
    max: usize,
    interval: Duration,
    slots: Option<usize>,
    start_delay: Duration,
    keda: KedaSettings,
    /// `queue-length-strategy`, applied to the scaler once both are known (they may come in any order).
    counts: Option<Counts>,
}

impl Default for Draft {
    fn default() -> Self {
        Draft {
            policy: PolicyKind::Microscaling,
            target: None,
            min: 0,
            // KEDA's own default maxReplicaCount is 100: more processes than a laptop runs well, and past the
            // demo's 64; both policies default to 8 here.
            max: 8,
            interval: Duration::from_secs(1),
            slots: None,
            start_delay: Duration::ZERO,
            keda: KedaSettings::default(),
            counts: None,
        }
    }
}

impl Draft {
    fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        let number = || {
            v.parse::<u64>()
                .map_err(|_| format!("{k}={v:?} is not a whole number ({EXPECTED})"))
        };
        let count = || number().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let policy_value = || {
            number().map(|n| u32::try_from(n).ok().filter(|&p| p > 0))
            // 0 (or a value past u32) means "no such policy"; u32::MAX percent is no limit anyway.
        };
        let duration = || parse_duration(v).map_err(|e| format!("{k}: {e}"));
        let select = || Select::parse(v).map_err(|e| format!("{k}: {e}"));
        let hpa = &mut self.keda.hpa;
        match k {
            "policy" => {
                self.policy = match v {
                    "microscaling" => PolicyKind::Microscaling,
                    "keda" => PolicyKind::Keda,
                    _ => return Err(format!("policy={v:?}: expected microscaling or keda")),
                }
            }
            "target" => self.target = Some(number()?),
            "min" => self.min = count()?,
            "max" => self.max = count()?,
            "slots" => self.slots = Some(count()?),
            "interval" => self.interval = duration()?,
            "start-delay" => self.start_delay = duration()?,
            "scaler" => self.keda.scaler = Some(Scaler::named(v)?),
            "queue-length-strategy" => {
                self.counts = Some(Counts::from_name(v).ok_or_else(|| {
                    format!("queue-length-strategy={v:?}: expected all, visibleonly or inflight")
                })?)
            }
            "polling" => self.keda.polling = duration()?,
            "cooldown" => self.keda.cooldown = duration()?,
            "initial-cooldown" => self.keda.initial_cooldown = duration()?,
            "activation" => self.keda.activation = number()?,
            "use-cached-metrics" => {
                self.keda.use_cached_metrics = v
                    .parse()
                    .map_err(|_| format!("{k}={v:?}: expected true or false"))?
            }
            "sync" => hpa.sync = duration()?,
            "tolerance" => {
                hpa.tolerance = v
                    .parse::<f64>()
                    .ok()
                    .filter(|t| (0.0..1.0).contains(t))
                    .ok_or_else(|| {
                        format!("tolerance={v:?}: expected a number from 0 to under 1, e.g. 0.1")
                    })?
            }
            "up-stabilization" => hpa.up.stabilization = duration()?,
            "up-percent" => hpa.up.percent = policy_value()?,
            "up-pods" => hpa.up.pods = policy_value()?,
            "up-period" => hpa.up.period = duration()?,
            "up-select" => hpa.up.select = select()?,
            "down-stabilization" => hpa.down.stabilization = duration()?,
            "down-percent" => hpa.down.percent = policy_value()?,
            "down-pods" => hpa.down.pods = policy_value()?,
            "down-period" => hpa.down.period = duration()?,
            "down-select" => hpa.down.select = select()?,
            other => return Err(format!("unknown key {other:?} ({EXPECTED})")),
        }
        Ok(())
    }
}

/// The autoscaler's settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoscale {
    pub policy: PolicyKind,
    /// Microscaling: the queue depth to hold (above it, one more consumer). KEDA: the trigger's target value
    /// per replica (`queueLength`, `depthThreshold`).
    pub target: u64,
    pub min: usize,
    pub max: usize,
    /// How often the demo consults the policy and records a sample. KEDA acts on its own clock within it
    /// (polling and sync periods), at the first interval at or after each of its times.
    pub interval: Duration,
    /// Consumers plus remainders.
    pub slots: usize,
    /// How long a started consumer takes to become ready (a pod's scheduling, image pull and start-up).
    pub start_delay: Duration,
    /// KEDA's and the HPA's settings (read under `policy=keda` only).
    pub keda: KedaSettings,
}

fn d(v: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(v)
}

fn rules(f: &mut fmt::Formatter<'_>, dir: &str, r: &Rules) -> fmt::Result {
    write!(
        f,
        ",{dir}-stabilization={},{dir}-percent={},{dir}-pods={},{dir}-period={},{dir}-select={}",
        d(r.stabilization),
        r.percent.unwrap_or(0),
        r.pods.unwrap_or(0),
        d(r.period),
        r.select.name()
    )
}

/// Every setting, as `--autoscale` takes them (the string parses back to the same settings).
impl fmt::Display for Autoscale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy={},target={},min={},max={},interval={},slots={},start-delay={}",
            self.policy.name(),
            self.target,
            self.min,
            self.max,
            d(self.interval),
            self.slots,
            d(self.start_delay)
        )?;
        if self.policy == PolicyKind::Keda {
            let k = &self.keda;
            if let Some(scaler) = k.scaler {
                write!(
                    f,
                    ",scaler={},queue-length-strategy={}",
                    scaler.name(),
                    scaler.counts.name()
                )?;
            }
            write!(
                f,
                ",polling={},cooldown={},initial-cooldown={},\
                 activation={},use-cached-metrics={},sync={},tolerance={}",
                d(k.polling),
                d(k.cooldown),
                d(k.initial_cooldown),
                k.activation,
                k.use_cached_metrics,
                d(k.hpa.sync),
                k.hpa.tolerance
            )?;
            rules(f, "up", &k.hpa.up)?;
            rules(f, "down", &k.hpa.down)?;
        }
        Ok(())
    }
}

impl Autoscale {
    /// Applies `fallback` (a scenario's settings), then `args`, over the defaults, and checks the result.
    ///
    /// # Errors
    /// A message for the user when no target is given, the bounds make no sense, or the flag sets a KEDA
    /// key under the microscaling policy.
    pub fn resolve(args: &AutoscaleArgs, fallback: &AutoscaleArgs) -> Result<Autoscale, String> {
        let mut draft = Draft::default();
        for (k, v) in fallback.pairs.iter().chain(&args.pairs) {
            draft.set(k, v)?;
        }
        let Draft {
            policy,
            target,
            min,
            max,
            interval,
            slots,
            start_delay,
            mut keda,
            counts,
        } = draft;
        if policy == PolicyKind::Microscaling {
            // A scenario may carry KEDA settings for when it runs under keda; the flag asking for one
            // under microscaling is a mistake worth saying.
            if let Some(k) = KEDA_KEYS.iter().find(|k| args.has(k)) {
                return Err(format!(
                    "--autoscale {k}= is a setting of policy=keda; add policy=keda, or leave it out"
                ));
            }
        }
        if policy == PolicyKind::Keda {
            let Some(scaler) = keda.scaler.as_mut() else {
                return Err("--autoscale policy=keda: this build has no queue backend KEDA has a scaler for \
(SQLite has none): build with every backend, `cargo build --release`"
                    .into());
            };
            if let Some(c) = counts {
                if !scaler.keda.can_count(c) {
                    return Err(format!(
                        "--autoscale queue-length-strategy={}: KEDA's {} scaler ({}) counts {}",
                        c.name(),
                        scaler.name(),
                        scaler.keda.trigger,
                        scaler.keda.readings()
                    ));
                }
                scaler.counts = c;
            }
        }
        let target = match (target, policy, keda.scaler) {
            (Some(t), _, _) => t,
            (None, PolicyKind::Keda, Some(scaler)) => scaler.default_target(),
            (None, _, _) => {
                return Err(
                    "--autoscale needs a target depth: target=50, or a --scenario that sets one"
                        .into(),
                );
            }
        };
        let slots = slots.unwrap_or(max);
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
        for (name, v) in [
            ("interval", interval),
            ("polling", keda.polling),
            ("sync", keda.hpa.sync),
            ("up-period", keda.hpa.up.period),
            ("down-period", keda.hpa.down.period),
        ] {
            if v.is_zero() {
                return Err(format!("--autoscale {name} must be more than 0 (e.g. 1s)"));
            }
        }
        Ok(Autoscale {
            policy,
            target,
            min,
            max,
            interval,
            slots,
            start_delay,
            keda,
        })
    }

    /// A fresh policy with these settings, its clock at zero.
    pub fn start(&self) -> Box<dyn Policy> {
        match self.policy {
            PolicyKind::Microscaling => Box::new(Microscaling {
                target: self.target,
                min: self.min,
                max: self.max,
            }),
            PolicyKind::Keda => Box::new(Keda::new(
                self.keda.clone(),
                self.target,
                self.min,
                self.max,
            )),
        }
    }

    /// The lower edge of the band in which the policy holds still (the chart's target band): 70 % of the
    /// target for Microscaling; for KEDA the HPA's tolerance under the target (one replica's worth).
    pub fn band_low(&self) -> u64 {
        match self.policy {
            PolicyKind::Microscaling => band_low(self.target),
            PolicyKind::Keda => (self.target as f64 * (1.0 - self.keda.hpa.tolerance)) as u64,
        }
    }

    /// The few settings that say what ran, for a chart's title (the series keeps them all).
    pub fn summary(&self) -> String {
        match self.policy {
            PolicyKind::Microscaling => format!(
                "microscaling target={},min={},max={},interval={}",
                self.target,
                self.min,
                self.max,
                d(self.interval)
            ),
            PolicyKind::Keda => format!(
                "keda ({} scaler) target={},min={},max={},polling={},cooldown={}",
                self.keda.scaler.map_or("no", |s| s.name()),
                self.target,
                self.min,
                self.max,
                d(self.keda.polling),
                d(self.keda.cooldown)
            ),
        }
    }

    /// Remainders for `consumers` consumers: the spare slots.
    pub fn remainders(&self, consumers: usize) -> usize {
        self.slots.saturating_sub(consumers)
    }
}

/// A policy's decision under the demo's drain: at least `floor` consumers (one while messages remain, or they
/// would never be consumed, whatever the policy's own minimum or activation threshold), within `max`.
pub fn with_floor(next: usize, floor: usize, max: usize) -> usize {
    next.max(floor.min(max))
}

#[cfg(test)]
mod tests;

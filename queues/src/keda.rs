//! How KEDA's scaler for a backend reads its queue: the facts a KEDA emulation needs (which figure the
//! scaler counts, its target parameter and default), kept with each backend ([`crate::Backend::keda`]), so
//! that the judge's KEDA policy reads any queue the way KEDA would without naming a backend.

use crate::Depth;

/// Which of a queue's figures a scaler counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counts {
    /// The backlog only: messages waiting to be delivered.
    Visible,
    /// Delivered and not yet acked only (Redis Streams' pending entries list).
    InFlight,
    /// Backlog plus in flight: every message not yet acked.
    All,
}

impl Counts {
    /// The figure of `d` this reading counts (in flight is 0 where the backend cannot tell).
    pub fn read(self, d: Depth) -> u64 {
        match self {
            Counts::Visible => d.visible,
            Counts::InFlight => d.in_flight.unwrap_or(0),
            Counts::All => d.total(),
        }
    }

    /// The name `--autoscale queue-length-strategy=` takes (Azure's scaler's `queueLengthStrategy` values,
    /// with `inflight` for the one reading it has no word for).
    pub fn name(self) -> &'static str {
        match self {
            Counts::Visible => "visibleonly",
            Counts::InFlight => "inflight",
            Counts::All => "all",
        }
    }

    /// The reading named `name`, if any.
    pub fn from_name(name: &str) -> Option<Counts> {
        [Counts::Visible, Counts::InFlight, Counts::All]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// A KEDA scaler, as far as scaling on it goes.
#[derive(Debug, PartialEq, Eq)]
pub struct KedaScaler {
    /// The trigger's `type` in a ScaledObject (`azure-queue`, `nsq`, …).
    pub trigger: &'static str,
    /// The trigger's target parameter, per replica (`queueLength`, `depthThreshold`, …).
    pub target_key: &'static str,
    /// Its default when the ScaledObject leaves it out.
    pub default_target: u64,
    /// What the scaler counts when configured the default way.
    pub counts: Counts,
    /// Another reading the trigger's metadata can choose, and the setting that chooses it.
    pub alternative: Option<(Counts, &'static str)>,
}

impl KedaScaler {
    /// Whether this scaler can be configured to count `c`.
    pub fn can_count(&self, c: Counts) -> bool {
        self.counts == c || self.alternative.is_some_and(|(a, _)| a == c)
    }

    /// The readings this scaler can take, default first, for messages: "all or visibleonly".
    pub fn readings(&self) -> String {
        match self.alternative {
            Some((a, _)) => format!("{} or {}", self.counts.name(), a.name()),
            None => self.counts.name().to_string(),
        }
    }
}

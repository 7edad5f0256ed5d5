//! The queue depth as this process sees it, exported as gauges: what a scaling engine reads, seen from the
//! producer's and the consumer's side.
//!
//! A background task asks the queue for its [`Depth`] every stats interval, so the send and consume loops
//! never wait on it. Until the first answer, and after a failed one, the gauges are absent rather than 0: a
//! scraper must not mistake "unknown" for "empty". `in_flight` is exported only where the backend can tell.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::{Depth, Queue};
use workload::metrics::{Counter, Exporter, Registry};
use workload::shutdown::Shutdown;

/// Serves a role's `/metrics` when `exporter` is given, and does nothing otherwise: starts the poller that fills
/// `depth` (registered in `registry`) from `queue` every `every`, then serves `registry` until a stop is asked
/// for.
pub fn serve(
    exporter: Option<Exporter>,
    registry: Registry,
    depth: &DepthGauges,
    queue: Arc<dyn Queue>,
    every: Duration,
    shutdown: Shutdown,
) {
    if let Some(exporter) = exporter {
        depth.spawn_poller(queue, every, shutdown.clone());
        exporter.serve(registry, shutdown);
    }
}

/// The last depth read, shared by the poller and the exporter. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct DepthGauges {
    last: Arc<Mutex<Option<Depth>>>,
    errors: Counter,
}

impl DepthGauges {
    /// Registers `queue_visible_messages`, `queue_in_flight_messages` and `queue_depth_errors_total`.
    pub fn register(registry: &mut Registry) -> DepthGauges {
        let gauges = DepthGauges::default();
        registry.register(
            "queue_depth_errors",
            "Failed or timed-out queue depth reads",
            gauges.errors.clone(),
        );
        registry.register_collector(Box::new(gauges.clone()));
        gauges
    }

    /// The last depth read, `None` before the first or after a failed one.
    pub fn get(&self) -> Option<Depth> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, depth: Option<Depth>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = depth;
    }

    /// Reads the depth every `every` until a stop is asked for. Each read is bounded by `every` (at least 1 s),
    /// so a hung queue leaves the gauges absent instead of stale.
    pub fn spawn_poller(
        &self,
        queue: Arc<dyn Queue>,
        every: Duration,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let gauges = self.clone();
        let limit = every.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.requested() => return,
                }
                match tokio::time::timeout(limit, queue.depth()).await {
                    Ok(Ok(depth)) => gauges.set(Some(depth)),
                    outcome => {
                        gauges.set(None);
                        gauges.errors.inc();
                        let reason = match outcome {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no answer within {limit:?}"),
                        };
                        // Once at warn, then at debug: a queue without depth support should not flood stderr.
                        if warned {
                            tracing::debug!(%reason, "cannot read the queue depth");
                        } else {
                            tracing::warn!(%reason, "cannot read the queue depth for /metrics");
                            warned = true;
                        }
                    }
                }
            }
        })
    }
}

impl Collector for DepthGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(depth) = self.get() else {
            return Ok(());
        };
        let gauges = [
            (
                "queue_visible_messages",
                "Messages waiting in the queue (the backlog), as this process last read it",
                Some(depth.visible),
            ),
            (
                "queue_in_flight_messages",
                "Messages leased to consumers and not yet acked, as this process last read it",
                depth.in_flight,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn gauges_are_absent_until_known_and_in_flight_only_where_told() {
        let mut r = workload::metrics::registry("producer", Some("somequeue"));
        let g = DepthGauges::register(&mut r);
        let text = |r: &Registry| {
            let mut s = String::new();
            encode(&mut s, r).unwrap();
            s
        };
        assert!(!text(&r).contains("queue_visible"), "{}", text(&r));
        g.set(Some(Depth {
            visible: 5,
            in_flight: None,
        }));
        let t = text(&r);
        assert!(
            t.contains(r#"mw_queue_visible_messages{role="producer",backend="somequeue"} 5"#),
            "{t}"
        );
        assert!(!t.contains("in_flight"), "{t}");
        g.set(Some(Depth {
            visible: 5,
            in_flight: Some(2),
        }));
        assert!(
            text(&r)
                .contains("mw_queue_in_flight_messages{role=\"producer\",backend=\"somequeue\"} 2")
        );
    }
}

//! Prometheus metrics: what every binary exports on `--metrics-addr`, built on the official
//! `prometheus-client` crate.
//!
//! The counters a role reports in its JSON stats lines are the very [`Counter`]s registered here: the stats
//! writer reads them with `get()` and `/metrics` encodes them, so a scrape and a summary line cannot disagree
//! about what happened. Latency histograms are exported in seconds with fixed buckets
//! ([`latency_histogram`]) next to the HDR histograms the JSON quantiles come from.
//!
//! Naming follows the Prometheus conventions: one `mw_` (message workload) prefix, base units, `_total` on
//! counters (added by the crate), `_seconds` on durations. Every series carries `role` (producer, consumer,
//! remainder) and, for the roles that use a queue, `backend` (the backend's scheme, from the queue registry). The
//! queue URL is never a label: it can carry account names and keys.
//!
//! - [`server`]: the HTTP endpoint (`GET /metrics`).
//!
//! The queue depth gauges are `queues::metrics`: they read the queue.

pub mod server;

use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};

/// Writes a registry in the OpenMetrics text format (what `/metrics` serves).
pub use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::{Registry, Unit};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

pub use server::{Exporter, MetricsError};

/// The prefix of every metric name.
pub const PREFIX: &str = "mw";

/// A counter of seconds (busy time, say), kept as an `f64` in an atomic.
pub type SecondsCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// A registry whose every series carries `role` and, when given, `backend`: the backend's own label
/// (the queue backend's scheme, `queues::QueueUrl::backend`), never the URL itself, which can hold secrets.
pub fn registry(role: &'static str, backend: Option<&'static str>) -> Registry {
    let mut labels: Vec<(Cow<'static, str>, Cow<'static, str>)> =
        vec![(Cow::Borrowed("role"), Cow::Borrowed(role))];
    if let Some(b) = backend {
        labels.push((Cow::Borrowed("backend"), Cow::Borrowed(b)));
    }
    Registry::with_prefix_and_labels(PREFIX, labels.into_iter())
}

/// A latency histogram in seconds: 20 buckets doubling from 100 µs to 52 s.
///
/// Fixed buckets because Prometheus aggregates histograms across processes only when their buckets match;
/// the range covers a sub-millisecond embedded queue as well as a backlog drained over a minute. The JSON
/// lines keep their exact HDR quantiles; these buckets are for dashboards and `histogram_quantile`.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_1, 2.0, 20,
    ))
}

/// Registers a counter whose value is read from `read` at each scrape, for tallies that already live
/// elsewhere (the remainder's per-thread unit counters), so that they are not counted twice.
pub fn register_counter_fn(
    registry: &mut Registry,
    name: &'static str,
    help: &'static str,
    read: impl Fn() -> u64 + Send + Sync + 'static,
) {
    registry.register_collector(Box::new(CounterFn {
        name,
        help,
        read: Box::new(read),
    }));
}

struct CounterFn {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for CounterFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for CounterFn {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new((self.read)());
        let metric =
            encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}

/// Parses `--metrics-addr`: `HOST:PORT` (`127.0.0.1:9100`, `[::1]:9100`, `localhost:9100`) or `:PORT` for
/// every interface, as Prometheus exporters conventionally accept.
///
/// The error states the expected form, because clap shows it to the user as is (and exits 2).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let expected = "expected HOST:PORT (e.g. 127.0.0.1:9100) or :PORT";
    if let Some(port) = s.strip_prefix(':') {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)))
            .map_err(|_| format!("invalid metrics address {s:?}: bad port; {expected}"));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "invalid metrics address {s:?}: no port; {expected}"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("invalid metrics address {s:?}: {expected}"));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("invalid metrics address {s:?}: {host:?} has no address")),
        Err(e) => Err(format!(
            "invalid metrics address {s:?}: cannot resolve {host:?} ({e}); {expected}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn addresses_parse_and_errors_say_what_is_expected() {
        assert_eq!(
            parse_addr("127.0.0.1:9100"),
            Ok(([127, 0, 0, 1], 9100).into())
        );
        assert_eq!(parse_addr(":9100"), Ok(([0, 0, 0, 0], 9100).into()));
        assert_eq!(parse_addr("[::1]:80").map(|a| a.port()), Ok(80));
        assert_eq!(parse_addr("localhost:9100").map(|a| a.port()), Ok(9100));
        for bad in [
            "",
            "9100",
            "127.0.0.1",
            "127.0.0.1:99999",
            ":x",
            "host:",
            ":",
        ] {
            let e = parse_addr(bad).expect_err(bad);
            assert!(e.contains("expected HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_follow_the_conventions_and_labels_hold_no_url() {
        // Any backend's label; a real one comes from QueueUrl::backend (tested with the registry).
        let mut r = registry("consumer", Some("somequeue"));
        let acked = Counter::<u64>::default();
        acked.inc_by(3);
        r.register("messages_acked", "Messages acked", acked);
        let h = latency_histogram();
        h.observe(0.25);
        r.register_with_unit("end_to_end", "Send to ack", Unit::Seconds, h);
        register_counter_fn(&mut r, "units", "Units", || 7);
        let mut text = String::new();
        encode(&mut text, &r).unwrap();
        assert!(
            text.contains(r#"mw_messages_acked_total{role="consumer",backend="somequeue"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mw_end_to_end_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"mw_end_to_end_seconds_bucket{le="0.2048",role="consumer",backend="somequeue"} 0"#
            ) || text.contains(
                r#"mw_end_to_end_seconds_bucket{role="consumer",backend="somequeue",le="0.2048"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"mw_units_total{role="consumer",backend="somequeue"} 7"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}

//! The workload core: what every role of a run (`producer`, `consumer`, `remainder`, and the judging tools)
//! shares, apart from the queue (the `queues` crate).
//!
//! One concern per module:
//! - [`envelope`]: the wire format of a message.
//! - [`shape`]: load shapes, the producer's msgs/s over time (`--shape`).
//! - [`work`]: the simulated work a consumer does per message.
//! - [`ledger`]: the record of every acked message, which the audit reads to count loss and duplicates.
//! - [`metrics`]: the Prometheus registry, names and the `/metrics` endpoint (`--metrics-addr`).
//! - [`contract`]: the stdout stats lines of every role, typed (written by the binaries, read back by the judges).
//! - [`stats`]: latency histograms and the JSON-lines stats writer (the suite's stdout contract).
//! - [`reporting`]: where a role's run reports: its stats lines' writer and its `/metrics` endpoint.
//! - [`shutdown`]: SIGTERM/SIGINT turned into one token every task watches.
//! - [`cli`]: flag parsers and logging set-up that every binary uses.
//! - [`redact`]: secrets (passwords, SAS signatures, keys) masked out of URLs before they are printed.
//! - [`tls`]: the one TLS stack (rustls on ring) and the verified HTTP client builder.
//! - [`failures`]: a failing queue logged once, then every 10 s, and timed so that a run with an end gives up.
//! - [`clock`]: wall-clock microseconds, the unit of every timestamp in messages and stats.

pub mod cli;
pub mod clock;
pub mod contract;
pub mod envelope;
pub mod failures;
pub mod ledger;
pub mod metrics;
pub mod redact;
pub mod reporting;
pub mod shape;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
#[cfg(feature = "tls")]
pub mod tls;
pub mod work;

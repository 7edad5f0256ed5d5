//! The consumer as a library: [`run()`] takes its configuration, an opened queue, a stop handle and where to
//! report, so that the binary (`main.rs`: flags, signals, opening the queue, exit status), the tests and the
//! benchmarks all drive the same loop.
//!
//! One concern a module: `consume` the receive loop (and the failure model's docs), `background` acks sent
//! from the queue's own thread while the loop takes in messages, `drain` the end of a
//! run, `fate` the failure model and poison, `lease` lease extension, `counters` what is counted, `stats`
//! the JSON lines, `metrics` the gauges and histograms of `/metrics`.

mod background;
pub mod config;
mod consume;
mod counters;
mod drain;
mod error;
mod fate;
mod lease;
mod metrics;
mod run;
mod stats;
mod telemetry;

pub use config::{Args, Config, FailureModel};
pub use error::Error;
pub use run::{open_ledger, run, run_with_ledger};
pub use workload::reporting::Reporting;

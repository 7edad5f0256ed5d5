//! The producer as a library: [`run()`] takes its configuration, an opened queue, a stop handle and where to
//! report, so that the binary (`main.rs`: flags, signals, opening the queue, exit status), the tests and the
//! benchmarks all drive the same loop.
//!
//! One concern a module: `send` the send loop and its accounting, `batch` a batch's publish and retries,
//! `schedule` when each message is due, `timer` precise sleeps, `stats` the JSON lines, `metrics` what
//! `/metrics` exports.

mod batch;
pub mod config;
mod error;
mod metrics;
mod run;
pub mod schedule;
mod send;
mod stats;
mod timer;

pub use config::{Args, Config};
pub use error::Error;
pub use run::run;
pub use workload::reporting::Reporting;

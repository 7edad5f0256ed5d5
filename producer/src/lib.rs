//! The producer as a library: [`run`] takes its configuration, an opened queue, a stop handle and where to
//! report, so that the binary (`main.rs`: flags, signals, opening the queue, exit status), the tests and the
//! benchmarks all drive the same loop.

pub mod config;
mod metrics;
mod run;
pub mod schedule;
mod timer;

pub use config::{Args, Config};
pub use run::{Reporting, run};

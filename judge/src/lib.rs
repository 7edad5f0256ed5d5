//! Judging a scaling engine: the local `demo` (the real binaries as child processes, scaled by its own
//! autoscaler), the `audit` that counts lost and duplicated messages, and the `scorecard` that grades a run.
//!
//! - [`audit`]: the counting, shared by the `audit` binary and the demo's final report.
//! - [`demo`]: the demo's flags, its child processes, its live view and its report.
//! - [`scenario`]: the `scenarios/*.toml` files (load shape, work, target, duration).
//! - [`scorecard`]: grading a scaling engine from a run's time series (the `scorecard` binary, the demo's
//!   `--autoscale` report).

pub mod audit;
pub mod demo;
pub mod scenario;
pub mod scorecard;

//! Running the workload: the local `demo` (the real binaries as child processes on an embedded queue) and the
//! `audit` that counts lost and duplicated messages from producers' stats and consumers' ledgers.
//!
//! - [`audit`]: the counting, shared by the `audit` binary and the demo's final report.
//! - [`demo`]: the demo's flags, its child processes, its live view and its report.
//! - [`marathon`]: `marathon-install` and `marathon-uninstall`.

pub mod audit;
pub mod demo;
pub mod marathon;

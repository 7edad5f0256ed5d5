//! `marathon-install` and `marathon-uninstall`: put the demo on a Marathon cluster as one group, and take
//! it off again, safely (every input checked before the first request, atomic group changes, waits on
//! deployments, clear errors) and idempotently (a second install changes nothing).
//!
//! - [`plan`]: the installer's flags and the validated plan; [`config`]: the connection flags both share.
//! - [`definitions`]: the app and group JSON; [`labels`]: the suite's labels and `--label` checks.
//! - [`diff`]: what an install would change; [`client`]: the REST calls; [`wait`]: deployments and locks.
//! - [`install`], [`uninstall`]: the two binaries' bodies; [`errors`]: failures and exit statuses.
//! - [`secret`]: values that never reach the output.

pub mod client;
pub mod config;
pub mod definitions;
pub mod diff;
pub mod errors;
pub mod install;
pub mod labels;
pub mod plan;
pub mod secret;
pub mod uninstall;
pub mod wait;

//! The integration tests of `marathon`, in one binary: a binary per file linked the whole workspace each
//! time. nextest still runs every test in a process of its own.

mod marathon;
mod marathon_common;
mod marathon_failures;
mod marathon_fake;
mod marathon_schema;

//! The integration tests of `remainder`, in one binary: a binary per file linked the whole workspace each
//! time. nextest still runs every test in a process of its own.

mod run;
mod usage;

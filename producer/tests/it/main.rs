//! The integration tests of `producer`, in one binary: a binary per file linked the whole workspace each
//! time. nextest still runs every test in a process of its own.

mod azure_credentials;
mod dead_queue;
mod loops;
mod producer;
mod shapes;
mod work;

//! `consumer`: takes messages off a queue, does simulated work on each, acks it, and reports latency.

mod config;
mod metrics;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = config::Args::parse();
    common::cli::init_logging();
    match config::Config::from_args(args) {
        Ok(config) => common::cli::run_async(run::run(config)),
        Err(e) => common::cli::usage_error(e),
    }
}

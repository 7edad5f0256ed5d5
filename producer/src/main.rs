//! `producer`: puts messages on a queue at a steady, open-loop rate and reports what the queue confirmed.

mod config;
mod metrics;
mod run;
mod schedule;
mod timer;

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

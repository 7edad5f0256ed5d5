//! `consumer`: takes messages off a queue, does simulated work on each, acks it, and reports latency.

mod config;
mod metrics;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = config::Args::parse();
    common::cli::init_logging();
    common::cli::run_async(async {
        let config = config::Config::from_args(args).map_err(common::cli::usage)?;
        run::run(config).await
    })
}

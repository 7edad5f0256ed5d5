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
    common::cli::run_async(async {
        let config = config::Config::from_args(args).map_err(common::cli::usage)?;
        run::run(config).await
    })
}

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
    workload::cli::init_logging(&queues::registry::quiet_log_targets());
    workload::cli::run_async(async {
        let config = config::Config::from_args(args).map_err(workload::cli::usage)?;
        run::run(config).await
    })
}

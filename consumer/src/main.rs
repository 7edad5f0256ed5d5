//! `consumer`: takes messages off a queue, does simulated work on each, acks it, and reports latency.

mod config;
mod metrics;
mod run;

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

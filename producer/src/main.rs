//! `producer`: puts messages on a queue at a steady, open-loop rate and reports what the queue confirmed.

mod config;
mod run;
mod schedule;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = config::Args::parse();
    common::cli::init_logging();
    let config = match config::Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

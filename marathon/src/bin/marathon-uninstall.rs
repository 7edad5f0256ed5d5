//! `marathon-uninstall`: removes the queue demo's Marathon group; see `judge::marathon`.

use std::process::ExitCode;

use marathon::{errors, uninstall, uninstall::UninstallArgs};

fn main() -> ExitCode {
    errors::exit_with(uninstall::run(workload::cli::parse_args::<UninstallArgs>()))
}

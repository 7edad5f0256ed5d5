//! `marathon-install`: installs the queue demo on Marathon as one group; see `judge::marathon`.

use std::process::ExitCode;

use marathon::{errors, install, plan::InstallArgs};

fn main() -> ExitCode {
    errors::exit_with(install::run(workload::cli::parse_args::<InstallArgs>()))
}

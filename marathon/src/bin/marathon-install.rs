//! `marathon-install`: installs the queue demo on Marathon as one group; see `judge::marathon`.

use std::process::ExitCode;

use clap::Parser;
use marathon::{errors, install, plan::InstallArgs};

fn main() -> ExitCode {
    errors::exit_with(install::run(InstallArgs::parse()))
}

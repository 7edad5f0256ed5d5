//! `marathon-install`: installs the queue demo on Marathon as one group; see `deploy::marathon`.

use std::process::ExitCode;

use clap::Parser;
use deploy::marathon::{errors, install, plan::InstallArgs};

fn main() -> ExitCode {
    errors::exit_with(install::run(InstallArgs::parse()))
}

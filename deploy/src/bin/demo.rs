//! `demo`: runs the whole workload on this machine (producer, consumers, remainder on an embedded queue),
//! shows it live, and audits it at the end.

use std::process::ExitCode;

use clap::Parser;
use deploy::demo::{self, Args, Config};

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: children are started from it, and Linux's parent-death signal (which makes them die with
    // the demo) follows the thread that started them, so it must live as long as the demo.
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
    match runtime.block_on(demo::run(config)) {
        Ok(summary) if summary.lost() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

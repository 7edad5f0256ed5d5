//! `demo`: runs the whole workload on this machine (producer, consumers, remainder on an embedded queue),
//! shows it live, and audits it at the end.

use std::process::ExitCode;

use judge::demo::{self, Args, Config};

fn main() -> ExitCode {
    let args = workload::cli::parse_args::<Args>();
    // One thread (run_async's runtime is current-thread): children are started from it, and Linux's
    // parent-death signal (which makes them die with the demo) follows the thread that started them, so it
    // must live as long as the demo.
    workload::cli::run_async(async {
        let config = Config::from_args(args).map_err(workload::cli::usage)?;
        // Before any directory, queue or child exists: nothing to clean up when it fails.
        config.check_outputs().map_err(workload::cli::usage)?;
        let summary = demo::run(config).await?;
        anyhow::Ok(if summary.succeeded() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

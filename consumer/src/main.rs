//! `consumer`: takes messages off a queue, does simulated work on each, acks it, and reports latency.
//!
//! A thin binary over the `consumer` library: it parses the flags, sets up the signal handlers, the metrics
//! endpoint and the queue ([`queues::cli::start`]) and hands them to [`consumer::run`]; `workload::cli` turns
//! the outcome into the exit status.

use std::process::ExitCode;

use consumer::{Args, Config};

/// mimalloc, not glibc's malloc: on an embedded queue the claiming thread allocates every message's body and
/// the consumer's task frees it, on another thread, which glibc serves through its arena locks and bin
/// consolidation (~10 % of the claiming thread). 7 % more messages a second end to end (README, Dependencies).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = workload::cli::parse_args::<Args>();
    workload::cli::init_logging(&queues::registry::quiet_log_targets());
    workload::cli::run_async(async {
        let config = Config::from_args(args).map_err(workload::cli::usage)?;
        // The ledger first: one that cannot be written leaves nothing made (an embedded queue's file). A file
        // named on the command line that cannot be written is bad usage, as the demo's --json is.
        let ledger = consumer::open_ledger(&config).map_err(workload::cli::usage)?;
        let start = queues::cli::start(&config.queue, config.metrics_addr).await?;
        consumer::run_with_ledger(config, ledger, start.queue, start.shutdown, start.reporting)
            .await?;
        anyhow::Ok(())
    })
}

//! `producer`: puts messages on a queue at a steady, open-loop rate and reports what the queue confirmed.
//!
//! A thin binary over the `producer` library: it parses the flags, sets up the signal handlers, the metrics
//! endpoint and the queue ([`queues::cli::start`]) and hands them to [`producer::run`]; `workload::cli` turns
//! the outcome into the exit status.

use std::process::ExitCode;

use producer::{Args, Config};

/// mimalloc, not glibc's malloc, as the consumer (see its `main.rs`): the producer allocates each message's body
/// and the queue's client frees it, often on another thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = workload::cli::parse_args::<Args>();
    workload::cli::init_logging(&queues::registry::quiet_log_targets());
    workload::cli::run_async(async {
        let config = Config::from_args(args).map_err(workload::cli::usage)?;
        let start = queues::cli::start(&config.queue, config.metrics_addr).await?;
        producer::run(config, start.queue, start.shutdown, start.reporting).await?;
        anyhow::Ok(())
    })
}

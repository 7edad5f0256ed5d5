//! `producer`: puts messages on a queue at a steady, open-loop rate and reports what the queue confirmed.
//!
//! A thin binary over the `producer` library: it parses the flags, installs the signal handlers, binds the
//! metrics endpoint, opens the queue and hands them to [`producer::run`]; `workload::cli` turns the outcome
//! into the exit status.

use std::process::ExitCode;

use anyhow::Context;
use producer::{Args, Config, Reporting};
use workload::metrics::Exporter;
use workload::shutdown::Shutdown;

fn main() -> ExitCode {
    let args = workload::cli::parse_args::<Args>();
    workload::cli::init_logging(&queues::registry::quiet_log_targets());
    workload::cli::run_async(async {
        let config = Config::from_args(args).map_err(workload::cli::usage)?;
        let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
        // Bound before anything else, so that a port in use stops the run before it sends a message.
        let exporter = match config.metrics_addr {
            Some(addr) => Some(Exporter::bind(addr).await?),
            None => None,
        };
        let queue = config
            .queue
            .open()
            .await
            .with_context(|| format!("cannot open queue {:?}", config.queue.to_string()))?;
        producer::run(config, queue, shutdown, Reporting::stdout(exporter)).await?;
        anyhow::Ok(())
    })
}

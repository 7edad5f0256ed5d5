//! [`run()`]: a consumer run from an opened queue to its summary line.

use std::sync::Arc;

use queues::Queue;
use workload::ledger::LedgerWriter;
use workload::reporting::Reporting;
use workload::shutdown::Shutdown;
use workload::stats::Kind;

use crate::config::Config;
use crate::consume::Consumer;
use crate::error::Error;
use crate::metrics::Metrics;

/// Consumes from `queue` until `shutdown` is asked for (or `--count` is reached), then drains and writes the
/// summary line. The caller opens the queue and installs the signals; this owns everything else.
///
/// # Errors
/// When the ledger cannot be opened or written, or (a run with `--count`) the queue answered nothing for
/// `--give-up-after`. The drain and the summary happen in either case once consuming started.
pub async fn run(
    config: Config,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
    reporting: Reporting,
) -> Result<(), Error> {
    let ledger = open_ledger(&config)?;
    run_with_ledger(config, ledger, queue, shutdown, reporting).await
}

/// Opens (creating) the `--ledger` file, if one is given. The binary calls it before it opens the queue, so
/// that a ledger that cannot be written stops the run before anything else is made (an embedded queue's file).
///
/// # Errors
/// [`Error::LedgerOpen`] when the file cannot be opened for appending.
pub fn open_ledger(config: &Config) -> Result<Option<LedgerWriter>, Error> {
    config
        .ledger
        .as_deref()
        .map(LedgerWriter::open)
        .transpose()
        .map_err(Error::LedgerOpen)
}

/// [`run`] with the ledger already opened ([`open_ledger`]).
///
/// # Errors
/// As [`run`].
pub async fn run_with_ledger(
    config: Config,
    ledger: Option<LedgerWriter>,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
    reporting: Reporting,
) -> Result<(), Error> {
    let telemetry = if config.telemetry {
        Some(
            crate::telemetry::Telemetry::open(&config.queue, &*queue, config.stats_interval)
                .await
                .map_err(Error::Telemetry)?,
        )
    } else {
        None
    };
    // What this loop holds at most: the messages being worked on, plus those finished and waiting for their
    // ack (sent with the next turn's receive) and, with telemetry, for their records' confirmation, which the
    // loop caps at a few receives' worth; a turn receives at most a batch.
    let per_turn = config.batch.min(config.max_in_flight);
    let joint = telemetry.as_ref().is_some_and(|t| t.joint);
    let waiting = if config.telemetry && !joint {
        crate::telemetry::WAITING_TURNS
    } else {
        1
    };
    queue.hold_at_most(config.max_in_flight + per_turn * waiting);
    tracing::info!(queue = %queue.describe(), work = %config.work, max_in_flight = config.max_in_flight, "consuming");
    let backend = config.queue.backend();
    let mut registry = workload::metrics::registry("consumer", Some(backend));
    let metrics = Metrics::register(&mut registry, config.max_in_flight);
    let Reporting { stats, exporter } = reporting;
    let (depth, every) = (metrics.depth.clone(), config.stats_interval);
    let mut consumer = Consumer::new(
        config,
        queue.clone(),
        shutdown.clone(),
        ledger,
        telemetry,
        metrics,
        stats,
    );
    consumer.counts.register(&mut registry);
    queues::metrics::serve(exporter, registry, &depth, queue, every, shutdown);
    // A first beat at once: a watcher counts this consumer from its start, not one stats interval later.
    consumer.send_heartbeat();
    let result = consumer.consume().await;
    consumer.drain().await;
    consumer.emit(Kind::Summary);
    consumer.send_goodbye().await;
    result
}

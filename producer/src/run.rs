//! [`run()`]: a producer run from an opened queue to its summary line.

use std::sync::Arc;
use std::time::Duration;

use queues::Queue;
use workload::envelope::{Envelope, format_run_id};
use workload::reporting::Reporting;
use workload::shutdown::Shutdown;
use workload::stats::Kind;
use workload::work::WorkSpec;

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::send::Producer;

/// Sends to `queue` what the schedule makes due until `--count`, `--duration` or `shutdown`, then writes the
/// summary line (with the unconfirmed ranges). The caller opens the queue and installs the signals.
///
/// # Errors
/// When `--size` is over the queue's limit (nothing is sent), or the queue refused messages for good or
/// confirmed nothing for `--give-up-after` (the summary is written first).
pub async fn run(
    config: Config,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
    reporting: Reporting,
) -> Result<(), Error> {
    check_size(&config, queue.as_ref())?;
    let backend = config.queue.backend();
    let (metrics, registry) = Metrics::new(backend);
    let Reporting { stats, exporter } = reporting;
    queues::metrics::serve(
        exporter,
        registry,
        &metrics.depth,
        queue.clone(),
        config.stats_interval,
        shutdown.clone(),
    );
    let pace = config
        .shape
        .as_ref()
        .map_or_else(|| "as fast as possible".to_string(), |s| s.to_string());
    tracing::info!(
        queue = %queue.describe(),
        shape = %pace,
        producers = config.share.producers,
        producer_index = config.share.index,
        run_id = %format_run_id(config.run_id),
        producer_id = config.producer_id,
        "producing"
    );
    let telemetry = if config.telemetry {
        let url = config
            .queue
            .sibling(workload::telemetry::RECORDS_SUFFIX)
            .map_err(Error::Telemetry)?;
        tracing::info!(records = %url, "telemetry on");
        Some(url.open().await.map_err(Error::Telemetry)?)
    } else {
        None
    };
    let mut producer = Producer::new(config, queue, shutdown, metrics, stats);
    producer.telemetry = telemetry;
    let result = producer.send_all().await;
    producer.emit(Kind::Summary);
    publish_summary(&mut producer).await;
    result
}

/// Publishes the summary's record, retrying for a while: without it the audit falls back on the last interval
/// line, and counts what was confirmed after it as unexpected.
async fn publish_summary(producer: &mut Producer) {
    let (Some(channel), Some(body)) = (&producer.telemetry, producer.summary_record.take()) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + SUMMARY_PUBLISH_FOR;
    loop {
        match channel.publish(vec![body.clone()]).await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(error = %e, "summary not published to the telemetry channel: audit --queue will use the last interval line");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "summary not published yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// How long the summary's publish is retried.
const SUMMARY_PUBLISH_FOR: Duration = Duration::from_secs(5);

/// Refuses, before anything is sent, a `--size` the queue cannot take (Azure: 64 KiB after encoding).
fn check_size(config: &Config, queue: &dyn Queue) -> Result<(), Error> {
    let Some(limit) = queue.max_message_size() else {
        return Ok(());
    };
    let sample = Envelope {
        run_id: config.run_id,
        producer_id: config.producer_id,
        seq: u64::MAX,
        intended_us: u64::MAX,
        sent_us: u64::MAX,
        work: config.work.as_ref().map(WorkSpec::longest),
    };
    let size = sample.encode(config.size).len();
    if size > limit {
        return Err(Error::TooLarge {
            size: config.size,
            bytes: size,
            limit,
            queue: queue.describe(),
        });
    }
    Ok(())
}

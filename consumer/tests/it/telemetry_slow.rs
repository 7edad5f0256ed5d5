//! The telemetry channel stalled while a consumer works, on a backend whose records are published before the
//! acks (Azurite here; on SQLite they ride in the ack's own transaction, see `telemetry_kill`): its records are
//! published in the background (group commit), so a stalled publish must hold back exactly the acks of the
//! messages it covers and throttle the receive, and once the channel answers again every message is acked
//! once with exactly one record, the failure model's poison ones included. The stall is a proxy in front of
//! Azurite that holds back the puts to the channel queue (`QUEUE-telemetry`) while the work queue's traffic
//! goes through; a refused put (its connection closed, nothing forwarded) makes the publish fail, and the
//! records go back to be published again.
//! Build the binaries first: `cargo build --workspace --bins`.

use std::path::Path;
use std::time::{Duration, Instant};

use testkit::azurite::{self, Azurite};
use testkit::lossy_http::LossyHttp;
use testkit::{Proc, command, eventually};

const MESSAGES: u64 = 1_000;
const MAX_IN_FLIGHT: u64 = 10;
const BATCH: u64 = 5;
/// Finished messages the consumer may hold for their records or acks: `WAITING_TURNS` (3) batches.
const WAITING: u64 = 3 * BATCH;
/// The channel's puts: `POST .../QUEUE-telemetry/messages`.
const CHANNEL_PUTS: &str = "/slow-telemetry/messages";

/// Entries the consumer's file ledger holds: it writes them once the channel confirmed their records, so
/// these are the confirmed ones.
fn confirmed(ledger: &Path) -> u64 {
    std::fs::read_to_string(ledger).map_or(0, |s| s.lines().count() as u64)
}

#[test]
fn a_stalled_channel_holds_back_the_acks_and_every_ack_has_exactly_one_record() {
    stall_the_channel(&[Duration::from_millis(1_500); 2], false);
}

#[test]
fn a_failed_records_publish_is_retried_and_every_ack_has_exactly_one_record() {
    stall_the_channel(&[Duration::from_secs(2)], true);
}

/// Runs a consumer over [`MESSAGES`] and stalls its channel for each of `stalls` in turn (with `fails`, refuses
/// its puts instead), checking meanwhile that no message is acked beyond the confirmed records; then checks
/// the counts.
fn stall_the_channel(stalls: &[Duration], fails: bool) {
    let az = Azurite::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = az.url("slow", "");
    let ledger = dir.path().join("c.ledger");

    let mut producer = command("producer");
    azurite::with_key(&mut producer)
        .args([
            "--queue",
            &url,
            "--telemetry",
            "on",
            "--rate",
            "0",
            "--batch",
            "50",
        ])
        .args(["--count", &MESSAGES.to_string()]);
    let mut producer = Proc::spawn("producer", producer);
    assert!(
        producer.wait(Duration::from_secs(60)).success(),
        "{}",
        producer.stderr()
    );

    let proxy = LossyHttp::start(az.port(), "POST");
    let through_proxy = url.replace(
        &format!("127.0.0.1:{}", az.port()),
        &format!("127.0.0.1:{}", proxy.port()),
    );
    // ~500 msgs/s of work at most; some messages fail and come back, some end as poison, whose records go
    // through the same channel.
    let mut consumer = command("consumer");
    azurite::with_key(&mut consumer)
        .args([
            "--queue",
            &through_proxy,
            "--telemetry",
            "on",
            "--work",
            "sleep:20ms",
        ])
        .args(["--max-in-flight", &MAX_IN_FLIGHT.to_string()])
        // A lease longer than the stalls: finished messages wait for their records without an extension.
        .args(["--batch", &BATCH.to_string(), "--lease", "60s"])
        .args(["--fail-rate", "0.2", "--max-deliveries", "2"])
        .args([
            "--stats-interval",
            "200ms",
            "--count",
            &MESSAGES.to_string(),
        ])
        .arg("--ledger")
        .arg(&ledger);
    let mut consumer = Proc::spawn("consumer", consumer);

    let acked = || MESSAGES - azurite::depth(&url).total();
    for (round, stall) in stalls.iter().enumerate() {
        let round = round as u64;
        assert!(
            eventually(Duration::from_secs(60), || confirmed(&ledger)
                > 100 * (round + 1)),
            "round {round}: records do not reach the channel: {}",
            consumer.stderr()
        );
        if fails {
            proxy.refuse("POST", CHANNEL_PUTS);
        } else {
            proxy.hold("POST", CHANNEL_PUTS);
        }
        // Nothing more can be confirmed now: no more messages than have records may be acked, however long
        // the stall, and the consumer stops receiving once its finished messages reach the cap.
        let until = Instant::now() + *stall;
        // A publish answered just before the stall may still reach the file ledger; after that, nothing.
        std::thread::sleep(Duration::from_millis(300));
        let before = confirmed(&ledger);
        while Instant::now() < until {
            let acked = acked();
            let confirmed = confirmed(&ledger);
            assert!(
                acked <= confirmed,
                "round {round}: {acked} acked with {confirmed} records confirmed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            confirmed(&ledger),
            before,
            "round {round}: records were confirmed through a stalled channel"
        );
        assert!(
            acked() < MESSAGES,
            "round {round}: the run ended while the channel was stalled"
        );
        proxy.pass();
    }

    let status = consumer.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", consumer.stderr());
    let lines = consumer.consumer_lines();
    let held = lines.iter().map(|l| l.in_flight).max().unwrap_or(0);
    assert!(
        held <= MAX_IN_FLIGHT + WAITING,
        "the consumer held {held} messages at once"
    );
    let summary = consumer.consumer_summary().expect("a summary line");
    assert_eq!(
        (summary.acked, summary.lease_lost),
        (MESSAGES, 0),
        "{summary:?}"
    );
    if fails {
        assert!(proxy.refused() > 0, "no put was refused");
        assert!(summary.errors > 0, "no publish failed: {summary:?}");
        assert!(
            consumer
                .stderr()
                .contains("could not publish ledger records"),
            "{}",
            consumer.stderr()
        );
    }
    assert_eq!(acked(), MESSAGES);
    assert_eq!(
        confirmed(&ledger),
        MESSAGES,
        "one file ledger entry per ack"
    );

    // One record per ack on the channel: none missing (lost 0), none published twice (duplicates 0).
    let mut audit = command("audit");
    azurite::with_key(&mut audit)
        .args(["--queue", &url, "--save"])
        .arg(dir.path().join("audit"));
    let mut audit = Proc::spawn("audit", audit);
    let status = audit.wait(Duration::from_secs(60));
    let report = audit
        .audit_report()
        .unwrap_or_else(|| panic!("no audit line ({status}): {}", audit.stderr()));
    assert!(status.success(), "{report:?}\n{}", audit.stderr());
    assert!(report.poison > 0, "no poison message: {report:?}");
    assert_eq!(
        (
            report.produced,
            report.consumed + report.poison,
            report.duplicates,
            report.lost
        ),
        (MESSAGES, MESSAGES, 0, 0),
        "{report:?}"
    );
}

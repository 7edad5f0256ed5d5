//! `scorecard watch --consumers telemetry` counts the consumer processes running, from their heartbeats, on
//! every backend: a scripted scaler starts consumers and stops them by SIGTERM (a goodbye) or SIGKILL (silence),
//! and every sample the watch recorded must be a count that really held within the tolerance the rule allows:
//! one heartbeat interval after a start or a graceful stop, two and a half after a kill (two missed beats, and
//! half a beat for the delivery), plus a margin for this machine's scheduling. Build the binaries first:
//! `cargo build --workspace --bins`.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::{Proc, command, eventually};

/// The consumers' stats (and heartbeat) interval, and the watch's poll interval.
const BEAT: Duration = Duration::from_millis(500);
/// What this machine may add to a beat's way from sender to count: the send, the reader's receive and poll.
// Generous: on a loaded 2-core CI machine a debug build's beat was seen 600 ms late, and at load 6 (a
// benchmark beside the tests) a NATS consumer's beats and first beat 1.5 s late.
const MARGIN: Duration = Duration::from_millis(1500);
/// How late the test may note a change it made (reading a log line, sending a signal).
const NOTICED: Duration = Duration::from_millis(300);
/// How long each step of the script holds.
const STEP: Duration = Duration::from_millis(4000);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A change in the number of consumers running: when, how many after, and whether a kill was among it.
#[derive(Clone, Copy, Debug)]
struct Event {
    at_us: u64,
    running: usize,
    killed: bool,
}

fn consumer(url: &str, prep: fn(&mut Command), i: usize) -> Proc {
    let mut cmd = command("consumer");
    prep(&mut cmd);
    cmd.args([
        "--queue",
        url,
        "--telemetry",
        "on",
        "--stats-interval",
        "500ms",
    ])
    .env("RUST_LOG", "info");
    let p = Proc::spawn(&format!("consumer{i}"), cmd);
    // Running from the moment it is consuming: before, it is not a consumer yet.
    assert!(
        eventually(Duration::from_secs(30), || p.stderr().contains("consuming")),
        "consumer{i} did not start: {}",
        p.stderr()
    );
    p
}

/// The counts that held at some moment of `[from, to]`.
fn held(events: &[Event], from: u64, to: u64) -> Vec<usize> {
    let before = events
        .iter()
        .rev()
        .find(|e| e.at_us <= from)
        .map_or(0, |e| e.running);
    let mut counts = vec![before];
    counts.extend(
        events
            .iter()
            .filter(|e| e.at_us > from && e.at_us <= to)
            .map(|e| e.running),
    );
    counts
}

fn watch_counts(url: &str, prep: fn(&mut Command)) {
    let out = tempfile::tempdir().expect("tempdir");
    let mut events = Vec::new();
    // The first consumer creates the queue the watch reads.
    let mut running = vec![consumer(url, prep, 0)];
    events.push(Event {
        at_us: now_us(),
        running: 1,
        killed: false,
    });
    let script = [3usize, 1, 4, 2, 0, 2];
    let total = STEP * (script.len() as u32 + 1);
    let mut cmd = command("scorecard");
    prep(&mut cmd);
    cmd.args(["watch", "--queue", url, "--consumers", "telemetry"])
        .args(["--target", "10", "--interval", "250ms", "--duration"])
        .arg(format!("{}ms", total.as_millis()))
        .arg("--out")
        .arg(out.path());
    let mut watch = Proc::spawn("scorecard", cmd);
    let (mut next, mut stops) = (1usize, 0u32);
    // Kept until the end: dropping a process kills it, which would turn a graceful stop into a kill.
    let mut stopped = Vec::new();
    for want in script {
        std::thread::sleep(STEP);
        while running.len() > want {
            let p = running.remove(0);
            // Alternately killed (silence: two missed beats) and stopped gracefully (a goodbye).
            let killed = stops % 2 == 0;
            p.signal(if killed { libc::SIGKILL } else { libc::SIGTERM });
            stops += 1;
            events.push(Event {
                at_us: now_us(),
                running: running.len(),
                killed,
            });
            stopped.push(p);
        }
        while running.len() < want {
            running.push(consumer(url, prep, next));
            next += 1;
            events.push(Event {
                at_us: now_us(),
                running: running.len(),
                killed: false,
            });
        }
    }
    let status = watch.wait(total + Duration::from_secs(30));
    assert!(status.success(), "scorecard watch: {}", watch.stderr());
    testkit::stop_gracefully(&mut running);
    for mut p in stopped {
        p.wait(Duration::from_secs(15));
    }

    let series: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("series.json")).expect("series.json"),
    )
    .expect("a series");
    let started = series["started_us"].as_u64().expect("started_us");
    let samples = series["samples"].as_array().expect("samples");
    assert!(samples.len() >= 25, "{} samples", samples.len());
    let mut seen = std::collections::BTreeSet::new();
    for s in samples {
        let t = s["t"].as_f64().expect("t");
        let count = s["consumers"].as_u64().expect("consumers") as usize;
        let at = started + (t * 1e6) as u64;
        // A kill in the window widens it to two and a half beats.
        let wide = (BEAT * 5 / 2 + MARGIN).as_micros() as u64;
        let narrow = (BEAT + MARGIN).as_micros() as u64;
        let killed = events
            .iter()
            .any(|e| e.killed && e.at_us <= at && e.at_us + wide > at);
        let tol = if killed { wide } else { narrow };
        // And a little after: the test notes a start once it has read the consumer's log line through a pipe,
        // which can be after the consumer's first beat was counted.
        let allowed = held(
            &events,
            at.saturating_sub(tol),
            at + NOTICED.as_micros() as u64,
        );
        assert!(
            allowed.contains(&count),
            "at {t:.2} s the watch counted {count}, but within {} ms before only {allowed:?} ran\nevents: {events:?}\nsamples: {samples:?}",
            tol / 1000
        );
        seen.insert(count);
    }
    // Every step of the script was counted exactly at some point.
    for want in [0usize, 1, 2, 3, 4] {
        assert!(seen.contains(&want), "never counted {want}: {seen:?}");
    }
}

#[test]
fn sqlite_consumers_are_counted_from_their_heartbeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    watch_counts(&testkit::sqlite_url(dir.path()), |_| {});
}

#[test]
fn fake_nsqd_consumers_are_counted_from_their_heartbeats() {
    let nsqd = testkit::fake_nsqd::FakeNsqd::start();
    watch_counts(&nsqd.url("work", "workers"), |_| {});
}

#[test]
fn azurite_consumers_are_counted_from_their_heartbeats() {
    let azurite = testkit::azurite::Azurite::start();
    watch_counts(&azurite.url("work", ""), |cmd| {
        testkit::azurite::with_key(cmd);
    });
}

#[test]
fn redis_consumers_are_counted_from_their_heartbeats() {
    let server = testkit::redis::RedisServer::start();
    watch_counts(&server.url("work", ""), |cmd| {
        testkit::redis::clear_credentials(cmd);
    });
}

#[test]
fn nats_consumers_are_counted_from_their_heartbeats() {
    let server = testkit::nats::NatsServer::start();
    watch_counts(&server.url("work", ""), |_| {});
}

#[test]
fn rabbitmq_consumers_are_counted_from_their_heartbeats() {
    let r = testkit::amqp::Rabbit::start();
    watch_counts(&r.url("work", ""), |cmd| {
        cmd.env_remove("AMQP_PASSWORD");
    });
}

/// A watch started before any consumer: it waits for the heartbeat channel instead of making it (only
/// reading, it must leave nothing behind: `files` holds no heartbeat file while no consumer has run), warns
/// when no beat came for a while, and counts the consumer that then starts.
fn watch_before_consumers(url: &str, prep: fn(&mut Command), files: Option<&std::path::Path>) {
    let out = tempfile::tempdir().expect("tempdir");
    // The work queue must exist (a watch does not make that either): one message makes it.
    let mut producer = command("producer");
    prep(&mut producer);
    producer.args(["--queue", url, "--count", "1", "--rate", "0"]);
    let mut p = Proc::spawn("producer", producer);
    assert_eq!(
        p.wait(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        p.stderr()
    );
    let heartbeat_files = || -> Vec<String> {
        files.map_or_else(Vec::new, |dir| {
            std::fs::read_dir(dir)
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("heartbeat"))
                .collect()
        })
    };
    let mut cmd = command("scorecard");
    prep(&mut cmd);
    cmd.args(["watch", "--queue", url, "--consumers", "telemetry"])
        .args(["--target", "10", "--interval", "250ms", "--duration", "20s"])
        .arg("--out")
        .arg(out.path());
    let mut watch = Proc::spawn("scorecard", cmd);
    assert!(
        eventually(Duration::from_secs(30), || watch
            .stderr()
            .contains("no heartbeat on")),
        "no warning: {}",
        watch.stderr()
    );
    let warning = watch.stderr();
    assert!(warning.contains("--telemetry on"), "{warning}");
    assert_eq!(
        heartbeat_files(),
        Vec::<String>::new(),
        "made by a watch that only reads"
    );
    // Now a consumer comes, makes the channel, and is counted.
    let c = consumer(url, prep, 0);
    std::thread::sleep(STEP);
    drop(c);
    let status = watch.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", watch.stderr());
    assert_eq!(
        watch.stderr().matches("no heartbeat on").count(),
        1,
        "warned once: {}",
        watch.stderr()
    );
    let series: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("series.json")).expect("series.json"),
    )
    .expect("series");
    let counted = series["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["consumers"] == 1)
        .count();
    assert!(counted > 0, "the consumer was never counted: {series}");
}

#[test]
fn sqlite_watch_before_any_consumer_waits_warns_and_makes_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    watch_before_consumers(&testkit::sqlite_url(dir.path()), |_| {}, Some(dir.path()));
}

#[test]
fn nats_watch_before_any_consumer_waits_warns_and_counts_the_first() {
    let server = testkit::nats::NatsServer::start();
    watch_before_consumers(&server.url("work", ""), |_| {}, None);
}

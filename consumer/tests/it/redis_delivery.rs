//! Loss and duplicate accounting across real producer and consumer processes on a Redis stream served by a
//! real redis-server (Debian's package): the shared scenarios of `testkit::delivery` (three consumers and a
//! SIGKILL, the SIGTERM drains), the server killed and restarted mid-run, and bad input. The failure model
//! (`--fail-rate 1 --max-deliveries 3`) runs on Redis in `failure.rs`, with the other backends.

use std::process::Command;
use std::time::Duration;

use testkit::redis::RedisServer;
use testkit::{Proc, command, delivery, u};

const ROLES: delivery::Roles = delivery::Roles {
    consumer_flags: &["--batch", "100"],
    ..delivery::REDIS
};

/// A stream as the shared scenarios drive it, with this file's consumer batch.
fn backend<'a>(server: &'a RedisServer, stream: &'a str) -> delivery::Backend<'a> {
    delivery::Backend {
        roles: ROLES,
        ..delivery::Backend::redis(server, stream)
    }
}

#[test]
fn three_consumers_and_one_killed_midway_lose_nothing_of_20000() {
    let server = RedisServer::start();
    // A short lease, so the victim's messages come back within the test; work long enough that the victim
    // holds many when it dies.
    let load = delivery::KillLoad {
        count: 20_000,
        rate: 0,
        consumer_args: &[
            "--work",
            "sleep:2ms",
            "--max-in-flight",
            "100",
            "--lease",
            "2s",
        ],
        acked_before_kill: 3_000,
        duplicates_at_most: Some(100),
    };
    let out = delivery::a_consumer_killed_midway_loses_nothing(&backend(&server, "killed"), &load);
    assert_eq!(out.sent, 20_000);
    let (len, pending, lag) = server.figures("killed", "killed");
    assert_eq!((len, pending, lag), (0, 0, Some(0)), "acked and trimmed");
}

#[test]
fn sigterm_finishes_what_it_holds() {
    let server = RedisServer::start();
    delivery::sigterm_finishes_held_messages(&backend(&server, "finish"));
}

/// A release re-adds the entry to the stream's end: visible at once, not after the 60 s lease.
#[test]
fn sigterm_releases_held_messages_at_once() {
    let server = RedisServer::start();
    delivery::sigterm_releases_what_it_cannot_finish(&backend(&server, "drain"));
}

/// When a consumer acked again after the restart (µs since the epoch), from its 100 ms interval lines: the
/// first line after `restarted_us` whose `acked` exceeds the last count before it. `None`: it never did.
fn resumed_at(c: &Proc, restarted_us: u64) -> Option<u64> {
    let lines: Vec<(u64, u64)> = c
        .stats()
        .iter()
        .filter(|v| v["kind"] == "interval")
        .map(|v| (u(v, "ts_us"), u(v, "acked")))
        .collect();
    let before = lines
        .iter()
        .filter(|(ts, _)| *ts <= restarted_us)
        .map(|(_, acked)| *acked)
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .find(|(ts, acked)| *ts > restarted_us && *acked > before)
        .map(|(ts, _)| *ts)
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The server SIGKILLed for 2 s under three consumers and a producer, then restarted: errors counted, nothing
/// lost, and every consumer back at work promptly (each one's first ack after the restart is timed, and each
/// one's share of the messages sent after the restart is counted).
#[test]
fn redis_killed_and_restarted_mid_run_costs_errors_not_messages() {
    // appendfsync always: an XADD is on disk before its reply, so a SIGKILL loses nothing confirmed.
    let mut server = RedisServer::start_durable();
    // 2,000/s: production goes on for about 6 s after the restart, time for every consumer to come back
    // (the consumers' back-off is capped at 5 s) and take a share.
    let load = delivery::OutageLoad {
        consumers: 3,
        consumer_args: &["--work", "none", "--max-in-flight", "50", "--lease", "3s"],
        count: 20_000,
        rate: 2_000,
        outage_after: 5_000,
    };
    let mut run = delivery::Outage::start(&backend(&server, "crash"), &load);
    let at_kill = run.at_outage;
    server.kill();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let restarted_us = now_us();
    run.finish(&backend(&server, "crash"));
    assert_eq!(
        server.figures("crash", "crash"),
        (0, 0, Some(0)),
        "acked and trimmed"
    );
    let consumers = &run.consumers;
    let errors: Vec<u64> = consumers
        .iter()
        .map(|c| u(&c.summary().unwrap(), "errors"))
        .collect();
    assert!(
        errors.iter().all(|e| *e > 0),
        "every consumer counted the outage: {errors:?}"
    );
    // Each consumer's first ack after the restart. A consumer in its back-off when the server came back
    // waits it out (at most 5 s); its next call must then succeed, not fail once more on the connection the
    // client tried to make while the server was still down (which cost a second back-off, up to 10 s).
    let delays: Vec<Option<f64>> = consumers
        .iter()
        .map(|c| resumed_at(c, restarted_us).map(|t| (t - restarted_us) as f64 / 1e6))
        .collect();
    // Each consumer's share of the messages sent well after the restart.
    let mut late_by = Vec::new();
    for i in 0..3 {
        let mut late = 0u64;
        let path = run.dir.path().join(format!("c{i}.ledger"));
        workload::ledger::read(&path, |e| late += u64::from(e.seq > at_kill + 2_000)).unwrap();
        late_by.push(late);
    }
    eprintln!(
        "after the restart: first ack at {delays:?} s, late work {late_by:?}, errors {errors:?}"
    );
    for (i, d) in delays.iter().enumerate() {
        assert!(
            d.is_some_and(|d| d < 6.5),
            "consumer {i} did not ack within 6.5 s of the restart: {delays:?} (late work {late_by:?})"
        );
    }
    assert!(
        late_by.iter().all(|l| *l > 0),
        "every consumer took a share of the messages sent after the restart: {late_by:?}"
    );
}

#[test]
fn bad_input_is_a_clear_error_and_the_password_never_shows() {
    let server = RedisServer::start_with(&["--requirepass", "pw-5ecret-xyz"]);
    let run = |mut cmd: Command| {
        cmd.args(["--give-up-after", "2s"]);
        let mut p = Proc::spawn("producer", cmd);
        let status = p.wait(Duration::from_secs(20));
        (status, p.stderr())
    };
    // A password in the URL: a usage error that says where it goes, with the password masked.
    let mut cmd = command("producer");
    cmd.args([
        "--queue",
        &format!("redis://u:pw-5ecret-xyz@127.0.0.1:{}/q", server.port()),
    ]);
    let (status, err) = run(cmd);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("REDIS_PASSWORD") && !err.contains("pw-5ecret-xyz"),
        "{err}"
    );

    // A malformed URL.
    let mut cmd = command("producer");
    cmd.args(["--count", "1", "--queue", "redis://127.0.0.1:6379"]);
    let (status, err) = run(cmd);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("a stream name is needed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // A wrong password: refused, named, never shown; at once, not after --give-up-after (retrying cannot
    // make it right).
    let mut cmd = ROLES.producer(&server.url("q", ""), 1, 0);
    cmd.env("REDIS_PASSWORD", "wrong-pw-0000");
    let (status, err) = run(cmd);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("the queue refused messages") && !err.contains("retrying"),
        "{err}"
    );
    assert!(err.contains("Password authentication failed"), "{err}");
    assert!(
        err.contains("check REDIS_USERNAME and REDIS_PASSWORD"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-pw-0000") && !err.contains("pw-5ecret-xyz"),
        "{err}"
    );

    // The right one works.
    let mut cmd = ROLES.producer(&server.url("q", ""), 1, 0);
    cmd.env("REDIS_PASSWORD", "pw-5ecret-xyz");
    let (status, err) = run(cmd);
    assert!(status.success(), "{err}");
    assert_eq!(server.cli(&["XLEN", "q"]).trim(), "1");

    // TLS with a CA file that is not one: refused before anything is sent.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let mut cmd = ROLES.producer(
        &server.url("q", &format!("tls=true&ca={}", ca.display())),
        1,
        0,
    );
    cmd.env("REDIS_PASSWORD", "pw-5ecret-xyz");
    let (status, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

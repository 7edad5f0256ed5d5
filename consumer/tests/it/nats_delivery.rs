//! Loss and duplicate accounting across real producer and consumer processes on a NATS JetStream stream
//! served by a real nats-server (Debian's 2.9.10): the shared delivery scenarios (three consumers with one
//! SIGKILLed midway, the SIGTERM drain), the server itself stopped and restarted mid-run, the failure model
//! (`--fail-rate 1 --max-deliveries 3`), foreign bodies, and bad input.
//!
//! The queue's state is the server's own: `num_pending` and `num_ack_pending` of the durable consumer, read
//! from the monitor port's `/jsz?consumers=true`.

use std::time::Duration;

use testkit::nats::{self, NatsServer};
use testkit::{Proc, command, delivery, ledger_entries, tally, u};

const ROLES: delivery::Roles = delivery::NATS;

/// The consumer's figures from the server's monitor; (0, 0) before the consumer exists.
fn state(server: &NatsServer, stream: &str) -> (u64, u64) {
    server.jsz_consumer(stream, "workers").unwrap_or((0, 0))
}

#[test]
fn twenty_thousand_messages_three_consumers_one_killed_midway_loses_nothing() {
    let server = NatsServer::start();
    // A short lease so that the victim's messages come back soon, and work slow enough that it holds many.
    let load = delivery::KillLoad {
        count: 20_000,
        rate: 0,
        consumer_args: &[
            "--work",
            "sleep:20ms",
            "--max-in-flight",
            "64",
            "--batch",
            "64",
            "--lease",
            "2s",
        ],
        acked_before_kill: 2_000,
        // Leases only end for the victim's messages: a duplicate needs the kill to land between a ledger
        // write and its ack, so at most what it held.
        duplicates_at_most: Some(64),
    };
    let out = delivery::a_consumer_killed_midway_loses_nothing(
        &delivery::Backend::nats(&server, "killed"),
        &load,
    );
    // What the victim held came back after its 2 s lease (redelivered > 0, nothing lost, the queue drained:
    // the shared scenario's checks). How many it held at the kill is not the test's to choose: with 20 ms of
    // work it turns its 64 slots over every few ms, and CI runs killed it holding 3 although its last stats
    // line showed 32 or more in flight, so no larger count is asserted.
    assert_eq!(out.sent, 20_000);
}

#[test]
fn sigterm_finishes_held_messages() {
    let server = NatsServer::start();
    delivery::sigterm_finishes_held_messages(&delivery::Backend::nats(&server, "finish"));
}

/// The shared scenario `sigterm_releases_what_it_cannot_finish`, but for its last check: JetStream counts a
/// message given back with `-NAK` in `num_ack_pending` until it is delivered again (2.9.10 has no figure for
/// "released, waiting"), so the server's state after the release is (0, 5), not (5, 0). What the scenario
/// means, that released messages are available at once and not after the 60 s lease, is checked directly: a
/// new consumer gets all five within a second, on their second delivery.
#[test]
fn sigterm_releases_held_messages_at_once() {
    let server = NatsServer::start();
    let url = server.url("drain", "");
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn("producer", ROLES.producer(&url, 5, 0));
    assert!(p.wait(Duration::from_secs(20)).success(), "{}", p.stderr());
    let mut c = Proc::spawn(
        "consumer",
        ROLES.consumer(
            &url,
            &dir.path().join("c.ledger"),
            &[
                "--work",
                "sleep:60s",
                "--max-in-flight",
                "5",
                "--lease",
                "60s",
                "--drain-timeout",
                "300ms",
            ],
        ),
    );
    c.wait_for_line(Duration::from_secs(10), |v| {
        v["in_flight"].as_u64() == Some(5)
    });
    assert_eq!(state(&server, "drain"), (0, 5), "all five are leased");
    let signalled = std::time::Instant::now();
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(5)).success(), "{}", c.stderr());
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?}",
        signalled.elapsed()
    );
    let s = c.summary().expect("summary written on SIGTERM");
    assert_eq!((u(&s, "released"), u(&s, "acked")), (5, 0));
    assert_eq!(
        state(&server, "drain"),
        (0, 5),
        "JetStream: released = ack pending until redelivered"
    );

    let started = std::time::Instant::now();
    let mut second = Proc::spawn(
        "consumer2",
        ROLES.consumer(
            &url,
            &dir.path().join("c2.ledger"),
            &["--work", "none", "--count", "5"],
        ),
    );
    assert!(
        second.wait(Duration::from_secs(10)).success(),
        "{}",
        second.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "released messages came back at once, not after the 60 s lease: {:?}",
        started.elapsed()
    );
    let s2 = second.summary().unwrap();
    assert_eq!((u(&s2, "acked"), u(&s2, "redelivered")), (5, 5));
    assert_eq!(state(&server, "drain"), (0, 0));
    assert_eq!(tally(&ledger_entries(dir.path()), 5), (5, 0, 0, 0));
}

#[test]
fn the_server_stopped_and_restarted_mid_run_costs_errors_not_messages() {
    let mut server = NatsServer::start();
    let load = delivery::OutageLoad {
        consumers: 3,
        consumer_args: &["--work", "none", "--max-in-flight", "32", "--lease", "3s"],
        count: 20_000,
        rate: 4_000,
        outage_after: 4_000,
    };
    let mut run = delivery::Outage::start(&delivery::Backend::nats(&server, "crash"), &load);
    server.stop();
    // Longer than the backend's 5 s request timeout: async-nats holds publishes while it reconnects, so a
    // shorter outage costs only latency (their acks arrive after the restart), not errors.
    std::thread::sleep(Duration::from_secs(6));
    let acked_before: Vec<u64> = run
        .consumers
        .iter()
        .map(|c| c.stats().last().map_or(0, |v| u(v, "acked")))
        .collect();
    server.restart();
    run.finish(&delivery::Backend::nats(&server, "crash"));
    // The consumers need not count an error: async-nats keeps a pull request that was waiting when the server
    // went away and re-subscribes on reconnect, so a consumer that was idle in a pull sees only a pause (seen
    // in a full test run: 0 errors on all three). What must hold for them: nothing lost (checked by `finish`),
    // and each one acked more after the restart. The producer's publishes fail for real and are counted.
    for (c, before) in run.consumers.iter().zip(acked_before) {
        let after = u(&c.summary().unwrap(), "acked");
        assert!(
            after > before,
            "{} reconnected and acked more after the restart ({before} -> {after})",
            c.name
        );
    }
}

/// `--fail-rate 1 --max-deliveries 3` on two consumers: every message delivered exactly three times (two
/// `-NAK`s with the fail delay, then set aside as poison and acked), nothing lost; foreign bodies published
/// first are acked at their first delivery.
#[test]
fn fail_rate_1_poisons_every_message_after_exactly_three_deliveries() {
    let server = NatsServer::start();
    let b = delivery::Backend::nats(&server, "poison");
    let foreign = 5u64;
    nats::publish(
        &b.url,
        (0..foreign)
            .map(|i| format!("not ours {i}").into_bytes())
            .collect(),
    );
    delivery::every_message_ends_as_poison(&b, 200, "200ms", foreign);
}

#[test]
fn bad_input_is_a_clear_one_line_error_and_secrets_are_never_echoed() {
    let server = NatsServer::start();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = command("producer");
        nats::clear_credentials(&mut cmd);
        cmd.args(["--count", "1"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut p = Proc::spawn("producer", cmd);
        let status = p.wait(Duration::from_secs(20));
        (status.code(), p.stderr())
    };
    let secret = "hunter2-secret";
    let url = server.url("bad", "");
    for (args, env, code, needle) in [
        (
            vec!["--queue".to_string(), server.url("a.b", "")],
            vec![],
            Some(2),
            "invalid stream name",
        ),
        (
            vec![
                "--queue".to_string(),
                format!("nats://bob:{secret}@127.0.0.1:{}/s", server.port()),
            ],
            vec![],
            Some(2),
            "NATS_PASSWORD",
        ),
        (
            vec!["--queue".to_string(), url.clone()],
            vec![("NATS_USER", "bob")],
            None,
            "NATS_PASSWORD is not",
        ),
        (
            vec![
                "--queue".to_string(),
                server.url("bad", "max_msg_size=100"),
                "--size".into(),
                "500".into(),
            ],
            vec![],
            None,
            "over the 100-byte limit",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, err) = run(&args, &env);
        assert_ne!(status, Some(0), "{args:?}: {err}");
        if let Some(code) = code {
            assert_eq!(status, Some(code), "{args:?}: {err}");
        }
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains(secret), "{args:?} echoed the secret: {err}");
        assert_eq!(
            err.lines().filter(|l| l.contains("rror")).count(),
            1,
            "one error line: {err}"
        );
    }
    // A password the server refuses: the refusal, never the password.
    let locked = NatsServer::start_with(&["--user", "bob", "--pass", "right-pw"]);
    let (status, err) = run(
        &["--queue", &locked.url("s", ""), "--give-up-after", "1s"],
        &[("NATS_USER", "bob"), ("NATS_PASSWORD", secret)],
    );
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains(secret), "{err}");
}

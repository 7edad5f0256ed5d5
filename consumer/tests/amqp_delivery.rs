//! Loss and duplicate accounting across real producer and consumer processes on a real RabbitMQ (Debian's
//! 3.10, started by `testkit::amqp`): the shared delivery scenarios unchanged (three consumers with one
//! SIGKILLed midway on 20,000 messages, the two SIGTERM drains), `--fail-rate 1 --max-deliveries 3`, and the
//! broker itself killed and restarted mid-run.
//!
//! A node takes seconds to start and nextest runs every test in its own process, so this file is one test
//! that starts one node and runs each scenario on its own queue, the broker restart last.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::amqp::Rabbit;
use testkit::{Proc, command, delivery, eventually, ledger_entries, tally, u};
use workload::ledger::Outcome;

fn producer(url: &str, count: u64, rate: u64) -> Command {
    let mut cmd = command("producer");
    cmd.args(["--queue", url, "--count", &count.to_string()])
        .args([
            "--rate",
            &rate.to_string(),
            "--batch",
            "100",
            "--size",
            "200",
        ])
        .args(["--stats-interval", "200ms"])
        .env_remove("AMQP_PASSWORD");
    cmd
}

fn consumer(url: &str, ledger: &Path, extra: &[&str]) -> Command {
    let mut cmd = command("consumer");
    cmd.args(["--queue", url, "--ledger"])
        .arg(ledger)
        .args(["--stats-interval", "100ms"])
        .args(extra)
        .env_remove("AMQP_PASSWORD");
    cmd
}

/// The queue as the broker itself counts it, after a statistics tick that began after the call (~5.5 s).
fn state(r: &Rabbit, queue: &str) -> (u64, u64) {
    r.settled_counts(queue).unwrap_or((u64::MAX, u64::MAX))
}

fn with_backend(r: &Rabbit, queue: &str, run: impl FnOnce(&delivery::Backend)) {
    let url = r.url(queue, "");
    run(&delivery::Backend {
        producer: &|count, rate| producer(&url, count, rate),
        consumer: &|ledger, extra| consumer(&url, ledger, extra),
        state: &|| state(r, queue),
        release_within: Duration::from_secs(3),
    });
}

fn timed(name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    eprintln!("{name}: {:?}", t.elapsed());
}

fn sum(procs: &[Proc], field: &str) -> u64 {
    procs
        .iter()
        .map(|c| u(&c.summary().expect("consumer summary"), field))
        .sum()
}

/// `--fail-rate 1 --max-deliveries 3`: every message is delivered exactly three times (the quorum queue's
/// `x-delivery-count`), given back twice, and set aside as poison on the third; nothing lost.
fn every_message_ends_as_poison(r: &Rabbit) {
    let queue = "poison";
    let url = r.url(queue, "");
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn("producer", producer(&url, 300, 0));
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
    let sent = u(&p.summary().expect("producer summary"), "sent");
    assert_eq!(sent, 300);
    let args = [
        "--fail-rate",
        "1",
        "--max-deliveries",
        "3",
        "--fail-delay",
        "100ms",
        "--work",
        "none",
        "--max-in-flight",
        "20",
        "--batch",
        "20",
    ];
    let mut cs = testkit::spawn_with_ledgers(2, dir.path(), |l| consumer(&url, l, &args));
    assert!(
        eventually(Duration::from_secs(60), || state(r, queue) == (0, 0)),
        "the queue did not drain: {:?}",
        state(r, queue)
    );
    testkit::stop_gracefully(&mut cs);
    assert_eq!(sum(&cs, "received"), 3 * sent, "three deliveries each");
    assert_eq!(sum(&cs, "failed"), 2 * sent, "given back twice each");
    assert_eq!(sum(&cs, "redelivered"), 2 * sent);
    assert_eq!(sum(&cs, "poison"), sent);
    assert_eq!(sum(&cs, "acked"), sent, "poison is acked");
    assert_eq!(sum(&cs, "lease_lost"), 0);
    let mut lines = Vec::new();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "ledger") {
            workload::ledger::read_outcomes(&path, |e, o| lines.push((e, o))).unwrap();
        }
    }
    assert_eq!(lines.len() as u64, sent);
    assert!(
        lines
            .iter()
            .all(|(_, o)| *o == Outcome::Poison { deliveries: 3 }),
        "every line is poison after 3 deliveries"
    );
}

/// The broker SIGKILLed and restarted mid-run: the producer and consumers count errors, reconnect, and every
/// confirmed message is consumed (a quorum queue keeps what it confirmed).
fn broker_killed_and_restarted_mid_run(r: &mut Rabbit) {
    let queue = "crash";
    let url = r.url(queue, "");
    let dir = tempfile::tempdir().unwrap();
    let mut consumers = testkit::spawn_with_ledgers(2, dir.path(), |l| {
        consumer(
            &url,
            l,
            &["--work", "none", "--max-in-flight", "32", "--lease", "5s"],
        )
    });
    let mut p = Proc::spawn("producer", producer(&url, 5_000, 500));
    p.wait_for_line(Duration::from_secs(30), |v| {
        v["sent"].as_u64().unwrap_or(0) > 1_000
    });
    r.kill();
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    r.restart();
    eprintln!("restarted in {:?}", t.elapsed());
    assert!(p.wait(Duration::from_secs(90)).success(), "{}", p.stderr());
    let ps = p.summary().unwrap();
    let sent = u(&ps, "sent");
    assert_eq!(sent, 5_000);
    assert!(
        u(&ps, "errors") > 0,
        "the producer counted the outage: {ps}"
    );
    assert!(
        eventually(Duration::from_secs(60), || state(r, queue) == (0, 0)),
        "the queue did not drain: {:?}",
        state(r, queue)
    );
    testkit::stop_gracefully(&mut consumers);
    assert!(
        sum(&consumers, "errors") > 0,
        "the consumers counted the outage"
    );
    // A message whose confirm was lost with the broker is sent again (a duplicate); none may be lost.
    let (consumed, lost, dups, unexpected) = tally(&ledger_entries(dir.path()), sent);
    assert_eq!((consumed, lost, unexpected), (sent, 0, 0), "dups {dups}");
    eprintln!("broker restart: sent {sent}, duplicates {dups}");
}

#[test]
fn delivery_scenarios_on_rabbitmq() {
    let started = Instant::now();
    let mut r = Rabbit::start();
    eprintln!("RabbitMQ ready in {:?}", started.elapsed());
    timed("a consumer killed midway", || {
        let load = delivery::KillLoad {
            count: 20_000,
            rate: 0,
            consumer_args: &[
                "--work",
                "sleep:5ms",
                "--max-in-flight",
                "32",
                "--lease",
                "5s",
            ],
            acked_before_kill: 2_000,
            // The victim's ledger lines written but not acked: at most what it held.
            duplicates_at_most: Some(32),
        };
        with_backend(&r, "killed", |b| {
            let out = delivery::a_consumer_killed_midway_loses_nothing(b, &load);
            assert_eq!(out.sent, 20_000);
        });
    });
    timed("SIGTERM finishes held messages", || {
        with_backend(&r, "drain-finish", delivery::sigterm_finishes_held_messages)
    });
    timed("SIGTERM releases what it cannot finish", || {
        with_backend(
            &r,
            "drain-release",
            delivery::sigterm_releases_what_it_cannot_finish,
        )
    });
    timed("fail-rate 1 max-deliveries 3", || {
        every_message_ends_as_poison(&r)
    });
    timed("broker killed and restarted", || {
        broker_killed_and_restarted_mid_run(&mut r)
    });
    eprintln!("all scenarios in {:?}", started.elapsed());
}

//! Loss and duplicate accounting across real producer and consumer processes on a real RabbitMQ (Debian's
//! 3.10, started by `testkit::amqp`): the shared delivery scenarios unchanged (three consumers with one
//! SIGKILLed midway on 20,000 messages, the two SIGTERM drains), more in flight than a batch,
//! `--fail-rate 1 --max-deliveries 3`, and the broker itself killed and restarted mid-run.
//!
//! A node takes seconds to start and nextest runs every test in its own process, so this file is one test
//! that starts one node and runs each scenario on its own queue, the broker restart last.

use std::time::{Duration, Instant};

use testkit::amqp::Rabbit;
use testkit::delivery;

fn timed(name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    eprintln!("{name}: {:?}", t.elapsed());
}

/// The broker SIGKILLed and restarted mid-run: the producer and consumers count errors, reconnect, and every
/// confirmed message is consumed (a quorum queue keeps what it confirmed).
fn broker_killed_and_restarted_mid_run(r: &mut Rabbit) {
    let load = delivery::OutageLoad {
        consumers: 2,
        consumer_args: &["--work", "none", "--max-in-flight", "32", "--lease", "5s"],
        count: 5_000,
        rate: 500,
        outage_after: 1_000,
    };
    let mut run = delivery::Outage::start(&delivery::Backend::amqp(r, "crash"), &load);
    r.kill();
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    r.restart();
    eprintln!("restarted in {:?}", t.elapsed());
    run.finish(&delivery::Backend::amqp(r, "crash"));
    assert!(
        delivery::sum(&run.consumers, "errors") > 0,
        "the consumers counted the outage"
    );
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
        let out = delivery::a_consumer_killed_midway_loses_nothing(
            &delivery::Backend::amqp(&r, "killed"),
            &load,
        );
        assert_eq!(out.sent, 20_000);
    });
    timed("SIGTERM finishes held messages", || {
        delivery::sigterm_finishes_held_messages(&delivery::Backend::amqp(&r, "drain-finish"))
    });
    timed("SIGTERM releases what it cannot finish", || {
        delivery::sigterm_releases_what_it_cannot_finish(&delivery::Backend::amqp(
            &r,
            "drain-release",
        ))
    });
    timed("more in flight than a batch", || {
        delivery::more_in_flight_than_a_batch(&delivery::Backend::amqp(&r, "window"))
    });
    timed("fail-rate 1 max-deliveries 3", || {
        // The quorum queue's `x-delivery-count` counts the deliveries.
        delivery::every_message_ends_as_poison(
            &delivery::Backend::amqp(&r, "poison"),
            300,
            "100ms",
            0,
        )
    });
    timed("broker killed and restarted", || {
        broker_killed_and_restarted_mid_run(&mut r)
    });
    eprintln!("all scenarios in {:?}", started.elapsed());
}

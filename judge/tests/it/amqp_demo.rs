//! `demo --queue amqp://…` runs the workload and its autoscaler on a real RabbitMQ (Debian's 3.10, started by
//! `testkit::amqp`): the burst scenario of the scorecard test, shortened, scaled out on the queue's depth
//! (ready + unacknowledged) and back, with nothing lost. One node, one test (a node takes seconds to start).

use std::path::Path;
use std::time::Duration;

use testkit::amqp::{self, Rabbit};

#[test]
fn the_autoscaler_runs_on_a_rabbitmq_queue_and_loses_nothing() {
    let r = Rabbit::start();
    let url = r.url("demo", "");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/burst-short.toml");
    testkit::demo::autoscaled_burst(
        &scenario,
        &url,
        amqp::clear_credentials,
        Duration::from_secs(90),
        "RabbitMQ",
    );
    // Everything it produced was acked: nothing ready, nothing unacknowledged.
    let d = amqp::depth(&url);
    assert_eq!((d.visible, d.in_flight), (0, Some(0)), "{d:?}");
}

//! `demo --queue amqp://…` runs the workload and its autoscaler on a real RabbitMQ (Debian's 3.10, started by
//! `testkit::amqp`): the burst scenario of the scorecard test, shortened, scaled out on the queue's depth
//! (ready + unacknowledged) and back, with nothing lost. One node, one test (a node takes seconds to start).

use std::path::Path;
use std::time::Duration;

use testkit::amqp::Rabbit;
use testkit::{Proc, u};

#[test]
fn the_autoscaler_runs_on_a_rabbitmq_queue_and_loses_nothing() {
    let r = Rabbit::start();
    let out = tempfile::tempdir().unwrap();
    let url = r.url("demo", "");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/burst-short.toml");
    let mut cmd = testkit::command("demo");
    cmd.args(["--queue", &url, "--autoscale", "on"])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--scorecard-dir")
        .arg(out.path())
        .env_remove("AMQP_PASSWORD");
    let mut demo = Proc::spawn("demo", cmd);
    let status = demo.wait(Duration::from_secs(90));
    let stderr = demo.stderr();
    assert!(status.success(), "demo failed: {status}\n{stderr}");
    let summary = demo.summary().expect("a summary line");
    assert_eq!(u(&summary, "lost"), 0, "{summary}");
    assert_eq!(u(&summary, "duplicates"), 0, "{summary}");
    assert!(u(&summary, "consumed") >= 600, "{summary}");
    assert_eq!(
        u(&summary, "consumed"),
        u(&summary, "produced"),
        "{summary}"
    );
    // The burst's backlog, read from RabbitMQ, scaled the consumers out.
    assert!(u(&summary, "consumers_max") > 1, "{summary}\n{stderr}");
    let series: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("series.json")).unwrap())
            .unwrap();
    let peak = series["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["depth"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        peak > 100,
        "the burst showed in the depth read from RabbitMQ: {peak}"
    );
    // Everything it produced was acked: nothing ready, nothing unacknowledged.
    let d = testkit::amqp::depth(&url);
    assert_eq!((d.visible, d.in_flight), (0, Some(0)), "{d:?}");
}

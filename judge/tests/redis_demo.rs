//! `demo --queue redis://…` runs the workload and its autoscaler on a real redis-server: the burst scenario of
//! the scorecard test, shortened, scaled out on the stream's depth and back, with nothing lost.

use std::path::Path;
use std::time::Duration;

use testkit::redis::RedisServer;
use testkit::{Proc, u};

#[test]
fn the_autoscaler_runs_on_a_redis_stream_and_loses_nothing() {
    let server = RedisServer::start();
    let out = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/burst-short.toml");
    let mut cmd = testkit::command("demo");
    cmd.args(["--queue", &server.url("demo", ""), "--autoscale", "on"])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--scorecard-dir")
        .arg(out.path());
    testkit::redis::clear_credentials(&mut cmd);
    let mut demo = Proc::spawn("demo", cmd);
    let status = demo.wait(Duration::from_secs(60));
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
    // The burst's backlog, read from the stream, scaled the consumers out.
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
        "the burst showed in the depth read from Redis: {peak}"
    );
    // Everything it produced was acked and trimmed from the stream.
    assert_eq!(server.figures("demo", "demo"), (0, 0, Some(0)));
}

/// A broker that cannot be reached is a failure, not "nothing lost": the depth error is shown, the drain
/// cannot be confirmed, and the demo exits 1 keeping its files.
#[test]
fn a_demo_on_a_broker_that_is_down_fails_and_says_why() {
    let port = testkit::server::free_port();
    let mut cmd = testkit::command("demo");
    cmd.args(["--queue", &format!("redis://127.0.0.1:{port}/down")])
        .args(["--duration", "2s", "--drain-timeout", "2s"]);
    testkit::redis::clear_credentials(&mut cmd);
    let mut demo = Proc::spawn("demo", cmd);
    let status = demo.wait(Duration::from_secs(60));
    let stderr = demo.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: cannot read the queue depth:")
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(
        stderr.contains("FAILED: the queue did not drain") && !stderr.contains("OK:"),
        "{stderr}"
    );
    assert!(!stderr.contains("files      removed"), "{stderr}");
}

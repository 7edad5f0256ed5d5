//! `demo --queue redis://…` runs the workload and its autoscaler on a real redis-server: the burst scenario of
//! the scorecard test, shortened, scaled out on the stream's depth and back, with nothing lost.

use std::path::Path;
use std::time::Duration;

use testkit::Proc;
use testkit::redis::{self, RedisServer};

#[test]
fn the_autoscaler_runs_on_a_redis_stream_and_loses_nothing() {
    let server = RedisServer::start();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/burst-short.toml");
    testkit::demo::autoscaled_burst(
        &scenario,
        &server.url("demo", ""),
        redis::clear_credentials,
        Duration::from_secs(60),
        "Redis",
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

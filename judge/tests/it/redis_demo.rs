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

/// A broker that cannot be reached is a failure, not "nothing lost", and found before anything starts: the
/// demo exits 1 at once with the connection error and what to check, in one line, instead of running its
/// children against nothing and waiting out the drain; nothing was made, so its temporary directory goes.
#[test]
fn a_demo_on_a_broker_that_is_down_fails_at_once_and_says_why() {
    let port = testkit::server::free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = testkit::command("demo");
    cmd.args(["--queue", &format!("redis://127.0.0.1:{port}/down")])
        .args(["--duration", "30s", "--drain-timeout", "30s"])
        .env("TMPDIR", tmp.path());
    testkit::redis::clear_credentials(&mut cmd);
    let mut demo = Proc::spawn("demo", cmd);
    // Before: the 30 s run, then the 30 s drain.
    let status = demo.wait(Duration::from_secs(20));
    let stderr = demo.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach the demo's queue")
            && stderr.contains("Connection refused")
            && stderr.contains("(is redis-server running there?)"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

//! The real `marathon-install` and `marathon-uninstall` binaries against a fake Marathon that fails: every
//! failure the issue lists (refused credentials, forbidden, not Marathon, invalid, unavailable, network
//! failures, a locked group, a stuck deployment, bad usage, an unknown CA), each with its exit status and a
//! message that says what to do. Build every binary first: `cargo build --workspace --bins`.

use std::time::Duration;

use serde_json::json;
use testkit::fake_marathon::{FakeMarathon, Fault};

use crate::marathon_common::{group_puts, install, run, uninstall};

#[test]
fn token_and_basic_auth_are_sent_and_refusals_name_the_fix_without_the_secret() {
    let fake = FakeMarathon::start();
    fake.faults().require_authorization = Some("token=good-token".into());
    let url = fake.url();
    let r = run(
        "marathon-install",
        &["--marathon-url", &url],
        &[("DCOS_TOKEN", "good-token")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        fake.requests()
            .iter()
            .all(|q| q.auth_scheme.as_deref() == Some("token"))
    );

    let r = run(
        "marathon-install",
        &["--marathon-url", &url],
        &[("DCOS_TOKEN", "expired-token")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("401") && r.stderr.contains("check the token"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("expired-token"), "{}", r.stderr);

    // alice:pw
    fake.faults().require_authorization = Some("Basic YWxpY2U6cHc=".into());
    let r = run(
        "marathon-uninstall",
        &["--marathon-url", &url, "--user", "alice"],
        &[("MARATHON_PASSWORD", "pw")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(
        "marathon-uninstall",
        &["--marathon-url", &url, "--user", "alice"],
        &[("MARATHON_PASSWORD", "wrong-password")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-password"), "{}", r.stderr);
}

#[test]
fn forbidden_not_marathon_invalid_and_unavailable_each_fail_clearly() {
    let fake = FakeMarathon::start();
    fake.faults().forbid_writes = true;
    let r = install(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("403 Forbidden") && r.stderr.contains("permission"),
        "{}",
        r.stderr
    );
    fake.faults().forbid_writes = false;

    fake.faults().answer(
        Fault::always(404, "")
            .with_text("<html>Not Found</html>")
            .times(1),
    );
    let r = install(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a Marathon API") && r.stderr.contains("/marathon"),
        "{}",
        r.stderr
    );

    fake.faults().answer(
        Fault::always(422, "Object is not valid")
            .on_method("PUT")
            .on_path("/v2/groups")
            .with_json(json!({"message": "Object is not valid",
                "details": [{"path": "/apps(1)/mem", "errors": ["got 8, expected 32 or more"]}]}))
            .times(1),
    );
    let r = install(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("/apps(1)/mem: got 8, expected 32 or more"),
        "{}",
        r.stderr
    );

    fake.faults().answer(Fault::always(503, "no leader"));
    let r = install(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("503") && r.stderr.contains("retry"),
        "{}",
        r.stderr
    );
    assert!(fake.app_ids().is_empty());
}

#[test]
fn connection_refused_dropped_and_slow_are_network_failures() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("http://127.0.0.1:{port}");
    let r = run("marathon-install", &["--marathon-url", &closed], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot connect to Marathon"),
        "{}",
        r.stderr
    );

    let fake = FakeMarathon::start();
    fake.faults().drop_connections = 1000;
    let r = uninstall(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("connection"), "{}", r.stderr);
    assert!(fake.connections() >= 3, "transient failures are retried");
    fake.faults().drop_connections = 0;

    fake.faults().delay = Duration::from_secs(3);
    let r = install(&fake, &["--request-timeout", "300ms"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("did not answer within"), "{}", r.stderr);
}

#[test]
fn locked_group_retries_then_fails_and_force_overrides() {
    let fake = FakeMarathon::start();
    fake.faults().stuck_deployments = true;
    let r = install(&fake, &["--no-wait"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not waiting"), "{}", r.stderr);

    let r = install(&fake, &["--consumer-instances", "4", "--timeout", "1500ms"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("retrying"),
        "backs off and retries: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("locked") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert!(group_puts(&fake) >= 3, "several attempts");

    fake.faults().stuck_deployments = false;
    let r = install(&fake, &["--consumer-instances", "4", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let last = fake.writes().into_iter().last().unwrap();
    assert!(last.has_query("force", "true"), "{last:?}");
    assert_eq!(
        fake.app("/microscaling-demo/consumer").unwrap()["instances"],
        4
    );
}

#[test]
fn a_stuck_deployment_times_out_with_advice() {
    let fake = FakeMarathon::start();
    fake.faults().stuck_deployments = true;
    let r = install(&fake, &["--timeout", "1s"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("still running after"), "{}", r.stderr);
    assert!(
        r.stderr.contains("StartApplication"),
        "progress is shown: {}",
        r.stderr
    );

    let r = uninstall(&fake, &["--timeout", "1s"]);
    assert_eq!(r.code, 1, "locked by the stuck deployment: {}", r.stderr);
    let r = uninstall(&fake, &["--force", "--timeout", "1s"]);
    assert_eq!(
        r.code, 1,
        "the removal's own deployment is stuck too: {}",
        r.stderr
    );
    assert!(fake.app_ids().is_empty(), "but the apps are gone");
}

#[test]
fn bad_usage_exits_2_without_contacting_marathon() {
    let fake = FakeMarathon::start();
    for args in [
        vec!["--group", "/Bad_Group"],
        vec!["--consumer-cpus", "0"],
        vec!["--nsqd", "no-port"],
        vec!["--queue", "kafka"],
        vec!["--ca-cert", "/nonexistent/ca.pem"],
        vec!["--token-file", "/nonexistent/token"],
    ] {
        let r = install(&fake, &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let r = install(&fake, &["--ca-cert", garbage.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--ca-cert"), "{}", r.stderr);
    let r = run("marathon-install", &[], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("MSS_MARATHON_API"), "{}", r.stderr);
    assert_eq!(fake.connections(), 0);
}

#[test]
fn https_trusts_the_given_ca_bundle_and_refuses_an_unknown_one() {
    let fake = FakeMarathon::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca_pem().unwrap()).unwrap();

    let r = install(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("certificate") && r.stderr.contains("--ca-cert"),
        "{}",
        r.stderr
    );
    assert!(
        fake.requests().is_empty(),
        "nothing was sent over an untrusted connection"
    );

    let r = install(&fake, &["--ca-cert", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(fake.url().starts_with("https://"));
    assert_eq!(fake.app_ids().len(), 4);
    let r = uninstall(&fake, &["--ca-cert", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

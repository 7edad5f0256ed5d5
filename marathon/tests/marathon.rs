//! The real `marathon-install` and `marathon-uninstall` binaries against the fake Marathon (testkit's
//! `fake_marathon`): what they install, idempotence, removal, and every failure the issue lists, each with
//! its exit status and a message that says what to do. Build every binary first:
//! `cargo build --workspace --bins`.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::fake_marathon::{FakeMarathon, Fault};

/// What a finished run left: exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs a binary with `args` and extra environment, none of the caller's Marathon or Azure variables, and a
/// bounded wait.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = testkit::command(bin);
    for v in [
        "MSS_MARATHON_API",
        "DCOS_TOKEN",
        "MARATHON_PASSWORD",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_QUEUE_NAME",
    ] {
        cmd.env_remove(v);
    }
    cmd.args(args).args(["--poll-interval", "50ms"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = testkit::Proc::spawn(bin, cmd);
    let status = p.wait(Duration::from_secs(60));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: p.lines().join("\n"),
        stderr: p.stderr(),
    }
}

fn install(fake: &FakeMarathon, args: &[&str]) -> Run {
    let url = fake.url();
    let mut all = vec!["--marathon-url", url.as_str()];
    all.extend_from_slice(args);
    run("marathon-install", &all, &[])
}

fn uninstall(fake: &FakeMarathon, args: &[&str]) -> Run {
    let url = fake.url();
    let mut all = vec!["--marathon-url", url.as_str()];
    all.extend_from_slice(args);
    run("marathon-uninstall", &all, &[])
}

fn group_puts(fake: &FakeMarathon) -> usize {
    fake.writes()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/v2/groups"))
        .count()
}

#[test]
fn install_is_idempotent_and_uninstall_removes_everything_twice() {
    let fake = FakeMarathon::start();
    let r = install(&fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("installed /microscaling-demo"),
        "{}",
        r.stderr
    );
    let ids = fake.app_ids();
    assert_eq!(
        ids,
        [
            "/microscaling-demo/consumer",
            "/microscaling-demo/nsqd",
            "/microscaling-demo/producer",
            "/microscaling-demo/remainder"
        ]
    );
    let c = fake.app("/microscaling-demo/consumer").unwrap();
    assert_eq!(c["args"], json!(["consumer"]));
    assert!(c.get("cmd").is_none(), "no shell in the image: never cmd");
    assert_eq!(c["container"]["type"], "DOCKER");
    assert_eq!(
        c["container"]["docker"]["image"],
        format!("queue-workload:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        c["env"]["MSS_QUEUE_ENDPOINT"],
        "nsqd-microscaling-demo.marathon.mesos:4150"
    );
    assert_eq!(
        c["env"]["NSQ_STATS_ENDPOINT"],
        "nsqd-microscaling-demo.marathon.mesos:4151"
    );
    assert_eq!(c["env"]["CONSUMER_DRAIN_TIMEOUT"], "8s");
    // The telemetry channel is on by default for both roles, so a run on Marathon can be audited with
    // `audit --queue` after tasks came and went; the remainder has no queue.
    for role in ["producer", "consumer"] {
        let app = fake.app(&format!("/microscaling-demo/{role}")).unwrap();
        assert_eq!(app["env"]["MW_TELEMETRY"], "on", "{role}: {}", app["env"]);
    }
    let remainder = fake.app("/microscaling-demo/remainder").unwrap();
    assert!(
        remainder["env"].get("MW_TELEMETRY").is_none(),
        "{remainder}"
    );
    assert_eq!(
        c["taskKillGracePeriodSeconds"], 15,
        "SIGKILL only after the 8 s drain"
    );
    assert_eq!(c["labels"]["io.microscaling.suite"], "queue-workload");
    assert_eq!(
        c["labels"]["io.microscaling.suite.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        fake.state().deployments.is_empty(),
        "the install waited for its deployment"
    );

    // Again with the same options: nothing sent, "up to date".
    let r = install(&fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
    assert_eq!(group_puts(&fake), 1);
    assert_eq!(fake.app_ids(), ids);

    // With a change: says what changes, by field.
    let r = install(&fake, &["--consumer-instances", "5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("~ /microscaling-demo/consumer: instances"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fake.app("/microscaling-demo/consumer").unwrap()["instances"],
        5
    );
    assert_eq!(fake.app_ids(), ids);

    // Turned off: an env change of both roles, named by field.
    let r = install(&fake, &["--consumer-instances", "5", "--telemetry", "off"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for role in ["producer", "consumer"] {
        assert!(
            r.stderr
                .lines()
                .map(str::trim_start)
                .any(|l| l.starts_with(&format!("~ /microscaling-demo/{role}:"))
                    && l.contains("env.MW_TELEMETRY")),
            "{}",
            r.stderr
        );
        let app = fake.app(&format!("/microscaling-demo/{role}")).unwrap();
        assert_eq!(app["env"]["MW_TELEMETRY"], "off", "{role}");
    }

    let r = uninstall(&fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("removed /microscaling-demo"),
        "{}",
        r.stderr
    );
    assert!(fake.app_ids().is_empty());
    let r = uninstall(&fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to uninstall"), "{}", r.stderr);
}

#[test]
fn missing_azure_key_is_bad_usage_before_any_request() {
    let fake = FakeMarathon::start();
    let r = install(&fake, &["--queue", "azure", "--azure-account", "demoacct"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("AZURE_STORAGE_ACCOUNT_KEY"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.connections(), 0, "nothing may be contacted");
    assert!(fake.requests().is_empty());
}

#[test]
fn labels_reserved_prefix_is_refused_and_off_guideline_keys_warn() {
    let fake = FakeMarathon::start();
    let r = install(&fake, &["--label", "com.docker.x=1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("reserved for Docker"), "{}", r.stderr);
    assert_eq!(fake.connections(), 0);

    let r = install(
        &fake,
        &["--label", "Foo_Bar=1", "--label", "com.example.team=queues"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: label key \"Foo_Bar\""),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("com.example.team\" does not"),
        "{}",
        r.stderr
    );
    let p = fake.app("/microscaling-demo/producer").unwrap();
    assert_eq!(p["labels"]["Foo_Bar"], "1");
    assert_eq!(p["labels"]["com.example.team"], "queues");
}

#[test]
fn dry_run_prints_the_body_with_secrets_redacted_and_contacts_nothing() {
    let fake = FakeMarathon::start();
    let url = fake.url();
    let r = run(
        "marathon-install",
        &[
            "--marathon-url",
            &url,
            "--dry-run",
            "--queue",
            "azure",
            "--azure-account",
            "demoacct",
        ],
        &[
            ("AZURE_STORAGE_ACCOUNT_KEY", "c2VjcmV0LWtleQ=="),
            ("DCOS_TOKEN", "tok-123456"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fake.connections(), 0);
    let body: Value = serde_json::from_str(&r.stdout).expect("stdout is the JSON body");
    assert_eq!(body["id"], "/microscaling-demo");
    let consumer = body["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "/microscaling-demo/consumer")
        .unwrap();
    assert_eq!(consumer["env"]["AZURE_STORAGE_ACCOUNT_KEY"], "<redacted>");
    assert_eq!(consumer["env"]["AZURE_STORAGE_ACCOUNT_NAME"], "demoacct");
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains("c2VjcmV0LWtleQ=="), "the key leaked: {out}");
        assert!(!out.contains("tok-123456"), "the token leaked: {out}");
    }
    assert!(
        r.stderr.contains("plain env"),
        "a warning for the plain secret: {}",
        r.stderr
    );
}

#[test]
fn azure_key_as_secret_reference_sends_no_value() {
    let fake = FakeMarathon::start();
    let r = install(
        &fake,
        &[
            "--queue",
            "azure",
            "--azure-account",
            "demoacct",
            "--azure-key-secret",
            "demo/azure-key",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = fake.app("/microscaling-demo/consumer").unwrap();
    assert_eq!(
        c["env"]["AZURE_STORAGE_ACCOUNT_KEY"],
        json!({"secret": "azure-storage-key"})
    );
    assert_eq!(
        c["secrets"]["azure-storage-key"]["source"],
        "demo/azure-key"
    );
    assert!(
        !fake.app_ids().iter().any(|a| a.ends_with("/nsqd")),
        "no nsqd for azure"
    );
}

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
fn engine_gets_the_leader_the_old_nsqd_and_keeps_its_instance_counts() {
    let fake = FakeMarathon::start();
    fake.state().leader = "marathon-2.example:8080".into();
    let r = install(&fake, &["--engine"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e = fake.app("/microscaling-demo/engine").expect("engine app");
    assert_eq!(
        e["env"]["MSS_MARATHON_API"],
        "http://marathon-2.example:8080"
    );
    assert_eq!(e["env"]["MSS_SCHEDULER"], "MARATHON");
    assert_eq!(e["env"]["MSS_MONITOR"], "none");
    assert_eq!(e["env"]["MSS_CONFIG"], "ENVVAR");
    let cfg: Value = serde_json::from_str(e["env"]["MSS_CONFIG_DATA"].as_str().unwrap()).unwrap();
    assert_eq!(cfg["apps"][0]["name"], "microscaling-demo/consumer");
    assert_eq!(cfg["apps"][0]["metricType"], "NSQ");
    // The engine's metric reads the consumers' topic and channel, never the telemetry channel's sibling
    // topics beside it (TOPIC-telemetry, TOPIC-heartbeat), which the consumers also publish to.
    let c = fake.app("/microscaling-demo/consumer").unwrap();
    assert_eq!(c["env"]["MW_TELEMETRY"], "on");
    assert_eq!(
        cfg["apps"][0]["config"]["topicName"],
        c["env"]["MSS_TOPIC_NAME"]
    );
    assert_eq!(
        cfg["apps"][0]["config"]["channelName"],
        c["env"]["MSS_CHANNEL_NAME"]
    );
    assert_eq!(c["env"]["MSS_TOPIC_NAME"], "microscaling-demo");
    assert_eq!(
        fake.app("/microscaling-demo/nsqd").unwrap()["container"]["docker"]["image"],
        "nsqio/nsq:v0.3.8"
    );

    // The engine scales the consumer as it does (PUT /v2/apps/<id> {"instances": N}); re-installing keeps it.
    let scaled = fake.state().put_app(
        "/microscaling-demo/consumer",
        &json!({"instances": 7}),
        false,
        Duration::ZERO,
        false,
    );
    assert_eq!(scaled.status, 200);
    let r = install(&fake, &["--engine"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);

    let r = install(&fake, &["--engine", "--nsqd", "nsqd.example:4150"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("0.3.x"), "{}", r.stderr);
}

#[test]
fn apps_installed_by_someone_else_are_never_touched() {
    let fake = FakeMarathon::start();
    let theirs = json!({"id": "/microscaling-demo", "apps": [{"id": "/microscaling-demo/db", "cmd": "sleep 1000"}]});
    assert_eq!(
        fake.state()
            .put_group("/microscaling-demo", &theirs, false, Duration::ZERO, false)
            .status,
        200
    );
    let r = install(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("/microscaling-demo/db"), "{}", r.stderr);
    let r = uninstall(&fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(fake.app_ids(), ["/microscaling-demo/db"]);
    assert_eq!(group_puts(&fake), 0);
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

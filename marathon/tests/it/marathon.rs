//! The real `marathon-install` and `marathon-uninstall` binaries against the fake Marathon (testkit's
//! `fake_marathon`): what they install, idempotence, removal, secrets kept out of bodies and output, and the
//! apps they must leave alone. The failures the issue lists are in marathon_failures.rs. Build every binary
//! first: `cargo build --workspace --bins`.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::fake_marathon::FakeMarathon;

use crate::marathon_common::{group_puts, install, run, uninstall};

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

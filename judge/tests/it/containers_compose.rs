//! Offline checks of docker-compose.yml (no Docker engine needed; judge/tests/it/engine.rs runs it in one): it
//! validates against the Compose Specification schema (check-jsonschema from the test venv), each profile
//! names the services its stack needs, and every workload runs a binary the image ships with flags and
//! variables that binary reads.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use queues::QueueUrl;
use queues::amqp::AmqpUrl;
use queues::azure::AzureUrl;
use queues::nats::url::NatsUrl;
use queues::nsq::url::NsqUrl;
use queues::redis::RedisUrl;
use serde_json::Value;

use crate::containers_common::*;

// ---------------------------------------------------------------------------------------- compose

#[test]
fn compose_file_validates_against_the_compose_spec() {
    let schema = root().join("../shared/reference/compose/compose-spec.json");
    assert!(
        schema.is_file(),
        "{} is missing: the Compose Specification schema is read from shared/reference beside the checkout",
        schema.display()
    );
    let check = |file: &Path| {
        let mut cmd = Command::new(tool("check-jsonschema"));
        cmd.arg("--schemafile").arg(&schema).arg(file);
        run(cmd)
    };
    let (ok, out) = check(&root().join("docker-compose.yml"));
    assert!(ok, "docker-compose.yml does not validate:\n{out}");

    // The validator is live: a misspelt key in a copy of the file is rejected.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("docker-compose.yml");
    let text =
        read("docker-compose.yml").replacen("    stop_grace_period:", "    stop_grace_periods:", 1);
    std::fs::write(&bad, text).expect("write the copy");
    let (ok, out) = check(&bad);
    assert!(!ok, "a misspelt key passed validation:\n{out}");
    assert!(out.contains("stop_grace_periods"), "{out}");
}

#[test]
fn compose_profiles_name_exactly_the_services_each_stack_needs() {
    let c = compose();
    let in_profile = |p: &str| -> BTreeSet<String> {
        services(&c)
            .iter()
            .filter(|(_, s)| profiles(s).contains(p))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        in_profile("nsq"),
        set(&[
            "nsqlookupd",
            "nsqd",
            "nsqadmin",
            "nsq-producer",
            "nsq-consumer",
            "remainder"
        ])
    );
    assert_eq!(
        in_profile("azure"),
        set(&["azurite", "azure-producer", "azure-consumer", "remainder"])
    );
    assert_eq!(
        in_profile("redis"),
        set(&["redis", "redis-producer", "redis-consumer", "remainder"])
    );
    assert_eq!(
        in_profile("nats"),
        set(&["nats", "nats-producer", "nats-consumer", "remainder"])
    );
    assert_eq!(
        in_profile("amqp"),
        set(&["rabbitmq", "amqp-producer", "amqp-consumer", "remainder"])
    );
    assert_eq!(
        in_profile("sqlite"),
        set(&["sqlite-producer", "sqlite-consumer", "remainder"])
    );
    // Every service belongs to a profile, so plain `docker compose up` starts neither stack by accident.
    for (name, svc) in services(&c) {
        assert!(!profiles(svc).is_empty(), "service {name} has no profile");
        for p in profiles(svc) {
            assert!(
                ["sqlite", "nsq", "azure", "redis", "nats", "amqp"].contains(&p.as_str()),
                "service {name}: unknown profile {p}"
            );
        }
    }
}

#[test]
fn compose_workloads_run_binaries_the_image_ships_with_flags_and_variables_they_read() {
    let c = compose();
    let accepts = accepted();
    let mut found = Vec::new();
    let mut workloads = 0;
    for (name, svc) in services(&c) {
        if !is_workload(svc) {
            continue;
        }
        workloads += 1;
        let w = Workload {
            origin: format!("docker-compose.yml: service {name}"),
            argv: svc
                .get("command")
                .map(|v| strings(v, "command"))
                .unwrap_or_default(),
            env: compose_env(svc).into_keys().collect(),
        };
        found.extend(problems(&w, &accepts));
    }
    assert_eq!(
        workloads, 13,
        "six producers (sqlite, nsq, azure, redis, nats, amqp), six consumers and the remainder"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn compose_queue_urls_parse_and_name_services_of_their_own_stack() {
    let c = compose();
    for (name, svc) in services(&c) {
        let env = compose_env(svc);
        let Some(url) = env.get("QUEUE_URL") else {
            continue;
        };
        let parsed = QueueUrl::parse(url).unwrap_or_else(|e| panic!("service {name}: {e}"));
        let hosts: Vec<String> = if let Some(u) = parsed.settings::<NsqUrl>() {
            u.tcp
                .iter()
                .chain(u.http.iter())
                .chain(u.lookupd.iter())
                .cloned()
                .collect()
        } else if let Some(u) = parsed.settings::<AzureUrl>() {
            u.endpoint.iter().cloned().collect()
        } else if let Some(u) = parsed.settings::<RedisUrl>() {
            vec![format!("{}:{}", u.host, u.port)]
        } else if let Some(u) = parsed.settings::<NatsUrl>() {
            u.servers.clone()
        } else if let Some(u) = parsed.settings::<AmqpUrl>() {
            let mut hosts = vec![format!("{}:{}", u.host, u.port)];
            hosts.extend(u.management.clone());
            hosts
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            // No server: the file must sit on a named volume that every service of the stack mounts.
            let mounts = |svc: &Value| -> Vec<(String, String)> {
                svc.get("volumes")
                    .map(|v| strings(v, "volumes"))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m.split_once(':'))
                    .map(|(vol, at)| (vol.to_string(), at.to_string()))
                    .collect()
            };
            let (volume, _) = mounts(svc)
                .into_iter()
                .find(|(_, at)| path.starts_with(&format!("{at}/")))
                .unwrap_or_else(|| panic!("service {name}: {path} is on no volume"));
            assert!(
                c["volumes"].get(&volume).is_some(),
                "service {name}: {volume} is not a named volume"
            );
            for (other, o) in services(&c) {
                if compose_env(o).get("QUEUE_URL") == Some(url) {
                    assert!(
                        mounts(o).iter().any(|(v, _)| *v == volume),
                        "service {other} uses {url} without mounting {volume}"
                    );
                }
            }
            continue;
        } else {
            panic!(
                "service {name}: a {} queue is not shared between containers",
                parsed.backend()
            )
        };
        assert!(!hosts.is_empty(), "service {name}: {url} names no server");
        for h in hosts {
            let host = h
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .split([':', '/'])
                .next()
                .unwrap_or_default()
                .to_string();
            let dep = services(&c).get(&host).unwrap_or_else(|| {
                panic!("service {name}: {url} names {host}, which is not a service")
            });
            for p in profiles(svc) {
                assert!(
                    profiles(dep).contains(&p),
                    "service {name} (profile {p}) uses {host}, which profile {p} does not start"
                );
            }
            assert_eq!(
                svc["depends_on"][&host]["condition"], "service_healthy",
                "service {name} should start after {host} is healthy"
            );
        }
    }
}

#[test]
fn compose_starts_in_order_scales_consumers_and_gives_them_time_to_drain() {
    let c = compose();
    for (name, svc) in services(&c) {
        // Start order: every dependency waits on a healthcheck that the dependency defines.
        if let Some(deps) = svc.get("depends_on") {
            for (dep, cond) in deps.as_object().expect("depends_on in long form") {
                assert_eq!(cond["condition"], "service_healthy", "{name} -> {dep}");
                assert!(
                    services(&c)[dep].get("healthcheck").is_some(),
                    "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                );
            }
        }
        // Pinned images: a version tag, never latest.
        if let Some(image) = svc
            .get("image")
            .and_then(Value::as_str)
            .filter(|_| !is_workload(svc))
        {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest",
                "{name}: image {image} is not pinned"
            );
        }
        if !name.ends_with("consumer") {
            continue;
        }
        // `--scale consumer=5`: no fixed name, no host port.
        assert!(
            svc.get("container_name").is_none(),
            "{name} has a container_name"
        );
        assert!(svc.get("ports").is_none(), "{name} publishes ports");
        let drain = compose_env(svc)
            .get("CONSUMER_DRAIN_TIMEOUT")
            .map(|d| duration(&Value::String(d.clone()), "CONSUMER_DRAIN_TIMEOUT"))
            .unwrap_or(Duration::from_secs(8));
        let grace = duration(
            svc.get("stop_grace_period").unwrap_or_else(|| {
                panic!("{name}: no stop_grace_period (Docker's 10 s default is tight)")
            }),
            "stop_grace_period",
        );
        assert!(
            grace >= drain + Duration::from_secs(5),
            "{name}: stop_grace_period {grace:?} leaves under 5 s beyond the {drain:?} drain"
        );
        assert_eq!(
            svc.get("stop_signal")
                .and_then(Value::as_str)
                .unwrap_or("SIGTERM"),
            "SIGTERM"
        );
    }
    assert_eq!(
        services(&c)["nsqd"]["image"],
        "nsqio/nsq:v1.3.0",
        "the NSQ version the backend is tested against"
    );
    assert_eq!(
        services(&c)["azurite"]["image"],
        "mcr.microsoft.com/azure-storage/azurite:3.35.0"
    );
    assert_eq!(
        services(&c)["redis"]["image"],
        "redis:7.0.15",
        "the Redis version the backend is tested against (Debian's 7.0.15)"
    );
    let redis = strings(&services(&c)["redis"]["command"], "command");
    assert!(
        redis.windows(2).any(|w| w == ["--appendfsync", "always"])
            && redis.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "an XADD reply is a durable confirmation only with the AOF fsynced per write: {redis:?}"
    );
    assert_eq!(
        services(&c)["nats"]["image"],
        "nats:2.9.10-alpine",
        "the nats-server version the backend is tested against"
    );
    let nats = strings(&services(&c)["nats"]["command"], "command");
    assert!(
        nats.contains(&"--jetstream".to_string()),
        "JetStream on: {nats:?}"
    );
    let rabbit = &services(&c)["rabbitmq"];
    assert_eq!(
        rabbit["image"], "rabbitmq:3.10.8-management",
        "the RabbitMQ version the backend is tested against (Debian's 3.10.8), with the management API"
    );
    // guest may only connect from the broker's own host: the stack's workloads need a user of their own,
    // whose password the broker and the workloads take from the same place.
    let pass = rabbit["environment"]["RABBITMQ_DEFAULT_PASS"].as_str();
    assert!(
        rabbit["environment"]["RABBITMQ_DEFAULT_USER"].as_str() == Some("workload")
            && pass.is_some_and(|p| p.starts_with("${AMQP_PASSWORD")),
        "{rabbit}"
    );
    for side in ["amqp-producer", "amqp-consumer"] {
        let env = compose_env(&services(&c)[side]);
        assert_eq!(env.get("AMQP_PASSWORD").map(String::as_str), pass, "{side}");
        let url = QueueUrl::parse(&env["QUEUE_URL"]).unwrap();
        let u = url.settings::<AmqpUrl>().expect("an amqp URL");
        assert_eq!(u.user, "workload", "{side}");
    }
    let azurite = strings(&services(&c)["azurite"]["command"], "command");
    assert_eq!(azurite[0], "azurite-queue", "the queue service only");
    assert!(azurite.contains(&"--disableTelemetry".to_string()));
    for loosened in ["--loose", "--skipApiVersionCheck"] {
        assert!(
            !azurite.iter().any(|a| a == loosened),
            "azurite runs with {loosened}"
        );
    }
}

//! Offline checks of the Kubernetes + KEDA manifests under k8s/ (no cluster needed): the kustomizations list
//! every manifest, every container runs a binary the image ships with variables it reads, resources and
//! non-root are set, graces cover the drain, and each KEDA scaler reads the queue its consumers use.

use std::collections::BTreeSet;
use std::time::Duration;

use queues::QueueUrl;
use queues::amqp::AmqpUrl;
use queues::azure::AzureUrl;
use queues::nats::url::NatsUrl;
use queues::nsq::url::NsqUrl;
use queues::redis::RedisUrl;
use serde_json::Value;

use crate::containers_common::*;

// ------------------------------------------------------------------------------------- Kubernetes

#[test]
fn kustomizations_list_every_manifest_in_their_folder() {
    for dir in [
        "k8s/base",
        "k8s/nsq",
        "k8s/azure",
        "k8s/redis",
        "k8s/nats",
        "k8s/amqp",
    ] {
        let kust = yaml_docs(&read(&format!("{dir}/kustomization.yaml")), dir)
            .pop()
            .expect("a kustomization");
        let listed: BTreeSet<String> = kust["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| str_of(r, "resource").to_string())
            .filter(|r| !r.starts_with(".."))
            .collect();
        let present: BTreeSet<String> = std::fs::read_dir(root().join(dir))
            .expect("read the folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(listed, present, "{dir}/kustomization.yaml");
    }
    for v in ["nsq", "azure", "redis", "nats", "amqp"] {
        let docs = variant(v);
        for d in &docs {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{v}: {d}"
            );
            let namespaced = !matches!(d["kind"].as_str(), Some("Namespace" | "PriorityClass"));
            if namespaced {
                assert_eq!(
                    d["metadata"]["namespace"], "queue-workload",
                    "{v}: {}",
                    d["metadata"]
                );
            }
        }
    }
}

#[test]
fn kubernetes_containers_run_binaries_the_image_ships_with_variables_they_read() {
    let accepts = accepted();
    let mut found = Vec::new();
    let mut ours = 0;
    for v in ["nsq", "azure", "redis", "nats", "amqp"] {
        for (kind, name, pod) in pods(&variant(v)) {
            for c in pod["containers"].as_array().expect("containers") {
                let image = str_of(&c["image"], "image");
                if !image.starts_with("queue-workload:") {
                    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                    assert!(
                        !tag.is_empty() && tag != "latest",
                        "{name}: {image} is not pinned"
                    );
                    continue;
                }
                ours += 1;
                let mut argv = c
                    .get("command")
                    .map(|x| strings(x, "command"))
                    .unwrap_or_default();
                argv.extend(
                    c.get("args")
                        .map(|x| strings(x, "args"))
                        .unwrap_or_default(),
                );
                found.extend(problems(
                    &Workload {
                        origin: format!("k8s/{v}: {kind} {name}"),
                        argv,
                        env: container_env(c).into_keys().collect(),
                    },
                    &accepts,
                ));
                if let Some(url) = container_env(c).get("QUEUE_URL") {
                    let url = str_of(&url["value"], "QUEUE_URL");
                    QueueUrl::parse(url).unwrap_or_else(|e| panic!("k8s/{v} {name}: {e}"));
                }
            }
        }
    }
    // nsq, azure, redis, nats, amqp.
    assert_eq!(ours, 15, "producer, consumer and remainder in each variant");
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn kubernetes_workloads_set_resources_and_run_as_non_root() {
    for v in ["nsq", "azure", "redis", "nats", "amqp"] {
        for (_, name, pod) in pods(&variant(v)) {
            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{v} {name}");
            assert!(
                psc["runAsUser"].as_u64().is_some_and(|u| u != 0),
                "{v} {name}"
            );
            assert_eq!(
                psc["seccompProfile"]["type"], "RuntimeDefault",
                "{v} {name}"
            );
            assert!(
                pod["priorityClassName"].is_string(),
                "{v} {name}: no priority class"
            );
            for c in pod["containers"].as_array().expect("containers") {
                let r = &c["resources"];
                for part in ["requests", "limits"] {
                    for res in ["cpu", "memory"] {
                        assert!(!r[part][res].is_null(), "{v} {name}: no {part}.{res}");
                    }
                }
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{v} {name}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{v} {name}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{v} {name}"
                );
            }
        }
    }
}

#[test]
fn consumer_grace_covers_its_drain_and_the_remainder_is_preempted_first() {
    for v in ["nsq", "azure", "redis", "nats", "amqp"] {
        let docs = variant(v);
        let consumer = &find(&docs, "Deployment", "consumer")["spec"]["template"]["spec"];
        let c = &consumer["containers"][0];
        let drain = container_env(c)
            .get("CONSUMER_DRAIN_TIMEOUT")
            .map(|d| duration(&d["value"], "CONSUMER_DRAIN_TIMEOUT"))
            .unwrap_or(Duration::from_secs(8));
        let grace = duration(
            &consumer["terminationGracePeriodSeconds"],
            "terminationGracePeriodSeconds",
        );
        assert!(
            grace >= drain + Duration::from_secs(5),
            "{v}: terminationGracePeriodSeconds {grace:?} leaves under 5 s beyond the {drain:?} drain"
        );

        let priority = |pod: &Value| -> i64 {
            let class = str_of(&pod["priorityClassName"], "priorityClassName");
            find(&docs, "PriorityClass", class)["value"]
                .as_i64()
                .expect("a priority value")
        };
        let remainder = &find(&docs, "Deployment", "remainder")["spec"]["template"]["spec"];
        let low = priority(remainder);
        assert!(
            low < 0,
            "{v}: the remainder should sit below default-priority pods"
        );
        let class = find(
            &docs,
            "PriorityClass",
            str_of(&remainder["priorityClassName"], "class"),
        );
        assert_eq!(
            class["preemptionPolicy"], "Never",
            "filler never evicts anything"
        );
        assert_eq!(class["globalDefault"], false);
        for (_, name, pod) in pods(&docs) {
            if name != "remainder" {
                assert!(
                    priority(pod) > low,
                    "{v}: {name} is not above the remainder"
                );
            }
        }
    }
}

fn scaled_object(docs: &[Value]) -> (&Value, &Value) {
    let so = docs
        .iter()
        .find(|d| d["kind"] == "ScaledObject")
        .expect("a ScaledObject");
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], "consumer");
    find(docs, "Deployment", "consumer");
    let min = so["spec"]["minReplicaCount"]
        .as_u64()
        .expect("minReplicaCount");
    let max = so["spec"]["maxReplicaCount"]
        .as_u64()
        .expect("maxReplicaCount");
    assert!(min <= max && max > 1, "replicas {min}..{max}");
    let triggers = so["spec"]["triggers"].as_array().expect("triggers");
    assert_eq!(triggers.len(), 1, "one trigger: the queue's backlog");
    // KEDA reads trigger metadata as strings only.
    for (k, val) in triggers[0]["metadata"].as_object().expect("metadata") {
        assert!(val.is_string(), "metadata {k} should be a string, is {val}");
    }
    (so, &triggers[0])
}

fn positive(v: &Value, what: &str) -> u64 {
    str_of(v, what)
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("{what} should be a whole number, is {v}"))
}

#[test]
fn keda_nsq_scaler_holds_the_channel_backlog_of_the_consumers_topic() {
    let docs = variant("nsq");
    let (_, t) = scaled_object(&docs);
    assert_eq!(t["type"], "nsq");
    let m = &t["metadata"];
    let (_, url) = consumer_of(&docs);
    let Some(url) = url.settings::<NsqUrl>() else {
        panic!("the nsq variant's consumer does not use nsq")
    };
    assert_eq!(m["topic"], url.topic.as_str(), "the consumer's topic");
    assert_eq!(m["channel"], url.channel.as_str(), "the consumer's channel");
    assert!(positive(&m["depthThreshold"], "depthThreshold") > 0);
    positive(&m["activationDepthThreshold"], "activationDepthThreshold");
    // KEDA's operator lives in another namespace: the lookupd address must name ours and the Service's port.
    let lookupd = find(&docs, "Service", "nsqlookupd");
    let http_port = lookupd["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "http")
        .expect("an http port")["port"]
        .clone();
    for addr in str_of(&m["nsqLookupdHTTPAddresses"], "nsqLookupdHTTPAddresses").split(',') {
        assert_eq!(
            addr.trim(),
            format!("nsqlookupd.queue-workload.svc:{http_port}")
        );
    }
    // nsqd broadcasts a name that resolves from KEDA's namespace too.
    let nsqd = &find(&docs, "StatefulSet", "nsqd")["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&nsqd["args"], "args");
    assert!(
        args.iter()
            .any(|a| a == "--broadcast-address=$(POD_NAME).nsqd.$(POD_NAMESPACE).svc"),
        "{args:?}"
    );
    assert_eq!(
        find(&docs, "Service", "nsqd")["spec"]["clusterIP"],
        "None",
        "headless, for pod names"
    );
}

#[test]
fn keda_azure_queue_scaler_reads_the_consumers_queue_with_its_own_connection_string() {
    let docs = variant("azure");
    let (_, t) = scaled_object(&docs);
    assert_eq!(t["type"], "azure-queue");
    let m = &t["metadata"];
    let (c, url) = consumer_of(&docs);
    let Some(url) = url.settings::<AzureUrl>() else {
        panic!("the azure variant's consumer does not use azure")
    };
    assert_eq!(m["queueName"], url.queue.as_str(), "the consumer's queue");
    assert!(positive(&m["queueLength"], "queueLength") > 0);
    positive(&m["activationQueueLength"], "activationQueueLength");
    assert!(
        matches!(
            m["queueLengthStrategy"].as_str(),
            Some("all" | "visibleonly")
        ),
        "{}",
        m["queueLengthStrategy"]
    );
    // connectionFromEnv names a variable of the scale target's container, here taken from the Secret.
    let var = str_of(&m["connectionFromEnv"], "connectionFromEnv");
    let env = container_env(c);
    let from = &env
        .get(var)
        .unwrap_or_else(|| panic!("the consumer has no {var} for KEDA to read"))["valueFrom"]["secretKeyRef"];
    let secret = find(&docs, "Secret", str_of(&from["name"], "secret name"));
    let key = str_of(&from["key"], "secret key");
    let value = str_of(&secret["stringData"][key], "secret value");

    // A placeholder, never a real key: the AccountKey is not base64, so the binaries refuse it loudly.
    let account_key = value
        .split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .expect("an AccountKey field");
    assert!(
        account_key.starts_with("REPLACE"),
        "the Secret holds a real-looking key"
    );
    // The account in the URL matches the connection string's (the backend checks they agree).
    assert!(
        value.contains(&format!("AccountName={};", url.account)),
        "{value}"
    );
}

#[test]
fn keda_redis_streams_scaler_reads_the_consumers_group_lag_with_its_password() {
    let docs = variant("redis");
    let (_, t) = scaled_object(&docs);
    assert_eq!(t["type"], "redis-streams");
    let m = &t["metadata"];
    let (c, url) = consumer_of(&docs);
    let Some(url) = url.settings::<RedisUrl>() else {
        panic!("the redis variant's consumer does not use redis")
    };
    assert_eq!(m["stream"], url.stream.as_str(), "the consumer's stream");
    assert_eq!(
        m["consumerGroup"],
        url.group.as_str(),
        "the consumer's group"
    );
    // lagCount: the backlog no consumer has read (our `visible`), the mode that can scale to zero; the default
    // pendingEntriesCount would see only what consumers already hold.
    assert!(positive(&m["lagCount"], "lagCount") > 0);
    positive(&m["activationLagCount"], "activationLagCount");
    for other in ["pendingEntriesCount", "streamLength"] {
        assert!(m.get(other).is_none(), "{other} would override lagCount");
    }
    // KEDA's operator lives in another namespace: the address names ours and the Service's port.
    let svc = find(&docs, "Service", "redis");
    let port = svc["spec"]["ports"][0]["port"].clone();
    assert_eq!(
        str_of(&m["address"], "address"),
        format!("redis.queue-workload.svc:{port}")
    );
    assert_eq!(port, url.port, "the consumer's port");
    // passwordFromEnv names a variable of the scale target's container, taken from the Secret the server uses.
    let var = str_of(&m["passwordFromEnv"], "passwordFromEnv");
    assert_eq!(var, "REDIS_PASSWORD", "the variable the backend reads");
    let env = container_env(c);
    let from = &env
        .get(var)
        .unwrap_or_else(|| panic!("the consumer has no {var} for KEDA to read"))["valueFrom"]["secretKeyRef"];
    let secret = find(&docs, "Secret", str_of(&from["name"], "secret name"));
    let value = str_of(
        &secret["stringData"][str_of(&from["key"], "secret key")],
        "secret value",
    );
    assert!(
        value.starts_with("REPLACE"),
        "the Secret holds a real-looking password"
    );
    let server = &find(&docs, "StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&server["args"], "args");
    assert!(
        args.windows(2).any(|w| w == ["--appendfsync", "always"])
            && args
                .windows(2)
                .any(|w| w == ["--requirepass", "$(REDIS_PASSWORD)"]),
        "{args:?}"
    );
    assert!(
        server["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v["name"] == var)),
        "the server takes its password from the same Secret"
    );
}

#[test]
fn keda_nats_jetstream_scaler_reads_the_consumers_stream_and_durable_consumer() {
    let docs = variant("nats");
    let (_, t) = scaled_object(&docs);
    assert_eq!(t["type"], "nats-jetstream");
    let m = &t["metadata"];
    let (_, url) = consumer_of(&docs);
    let Some(url) = url.settings::<NatsUrl>() else {
        panic!("the nats variant's consumer does not use nats")
    };
    assert_eq!(m["stream"], url.stream.as_str(), "the consumer's stream");
    assert_eq!(
        m["consumer"],
        url.consumer.as_str(),
        "the durable consumer the consumers share"
    );
    assert_eq!(
        m["account"], "$G",
        "the default account of a server without accounts"
    );
    assert!(positive(&m["lagThreshold"], "lagThreshold") > 0);
    positive(&m["activationLagThreshold"], "activationLagThreshold");
    // KEDA's operator lives in another namespace: the monitor address must name ours and the Service's port.
    let svc = find(&docs, "Service", "nats");
    let monitor = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "monitor")
        .expect("a monitor port")["port"]
        .clone();
    assert_eq!(
        str_of(
            &m["natsServerMonitoringEndpoint"],
            "natsServerMonitoringEndpoint"
        ),
        format!("nats.queue-workload.svc:{monitor}")
    );
    // The server runs JetStream with its monitor on that port.
    let nats = &find(&docs, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&nats["args"], "args");
    assert!(args.iter().any(|a| a == "--jetstream"), "{args:?}");
    assert!(
        args.iter().any(|a| *a == format!("--http_port={monitor}")),
        "{args:?}"
    );
}

#[test]
fn keda_rabbitmq_scaler_counts_ready_and_unacknowledged_messages_of_the_consumers_queue() {
    let docs = variant("amqp");
    let (_, t) = scaled_object(&docs);
    assert_eq!(t["type"], "rabbitmq");
    let m = &t["metadata"];
    let (c, url) = consumer_of(&docs);
    let Some(url) = url.settings::<AmqpUrl>() else {
        panic!("the amqp variant's consumer does not use amqp")
    };
    assert_eq!(m["queueName"], url.queue.as_str(), "the consumer's queue");
    assert_eq!(m["vhostName"], url.vhost.as_str(), "the consumer's vhost");
    // Over the management API, QueueLength is ready + unacknowledged (our visible + in_flight). Over AMQP it
    // would be ready only (kedacore/keda #638, #5050): busy consumers would be scaled away.
    assert_eq!(m["protocol"], "http");
    assert_eq!(m["mode"], "QueueLength");
    assert_ne!(
        m["excludeUnacknowledged"], "true",
        "unacknowledged messages must count"
    );
    assert!(m.get("queueLength").is_none(), "deprecated form");
    assert!(positive(&m["value"], "value") > 0);
    positive(&m["activationValue"], "activationValue");
    // KEDA's operator lives in another namespace: the host names ours and the Service's management port,
    // which is the port the consumer's URL reads its unacknowledged count from.
    let svc = find(&docs, "Service", "rabbitmq");
    let port_of = |name: &str| {
        svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("a {name} port"))["port"]
            .as_u64()
            .expect("a port number")
    };
    let management = port_of("management");
    let host = str_of(&m["host"], "host");
    assert_eq!(
        host,
        format!("http://rabbitmq.queue-workload.svc:{management}/")
    );
    assert!(!host.contains('@'), "no credentials in the trigger's host");
    assert_eq!(port_of("amqp"), u64::from(url.port), "the consumer's port");
    assert_eq!(
        url.management.as_deref(),
        Some(format!("http://rabbitmq:{management}").as_str())
    );
    // The credentials: a TriggerAuthentication over the Secret whose password the consumer reads as
    // AMQP_PASSWORD and whose user is the consumer's.
    let auth = find(
        &docs,
        "TriggerAuthentication",
        str_of(&t["authenticationRef"]["name"], "authenticationRef"),
    );
    let refs = auth["spec"]["secretTargetRef"]
        .as_array()
        .expect("secretTargetRef");
    let env = container_env(c);
    let from = &env
        .get("AMQP_PASSWORD")
        .expect("the consumer's AMQP_PASSWORD")["valueFrom"]["secretKeyRef"];
    let secret_name = str_of(&from["name"], "secret name");
    let secret = find(&docs, "Secret", secret_name);
    let value_of = |param: &str| {
        let r = refs
            .iter()
            .find(|r| r["parameter"] == param)
            .unwrap_or_else(|| panic!("no {param} in the TriggerAuthentication"));
        assert_eq!(r["name"], secret_name, "{param}: the consumer's Secret");
        (
            str_of(&r["key"], "key").to_string(),
            str_of(&secret["stringData"][str_of(&r["key"], "key")], "value").to_string(),
        )
    };
    let (key, password) = value_of("password");
    assert_eq!(key, str_of(&from["key"], "secret key"), "the same password");
    assert!(
        password.starts_with("REPLACE"),
        "the Secret holds a real-looking password"
    );
    assert_eq!(value_of("username").1, url.user, "the consumer's user");
    // The broker makes that user, with that password, from the same Secret.
    let server =
        &find(&docs, "StatefulSet", "rabbitmq")["spec"]["template"]["spec"]["containers"][0];
    let server_env = container_env(server);
    for (var, key) in [
        ("RABBITMQ_DEFAULT_USER", value_of("username").0),
        ("RABBITMQ_DEFAULT_PASS", key),
    ] {
        let r = &server_env[var]["valueFrom"]["secretKeyRef"];
        assert_eq!(
            (r["name"].as_str(), r["key"].as_str()),
            (Some(secret_name), Some(key.as_str())),
            "{var}"
        );
    }
    assert_eq!(
        str_of(&server["image"], "image"),
        "rabbitmq:3.10.8-management",
        "the version the backend is tested against, with the management API"
    );
}

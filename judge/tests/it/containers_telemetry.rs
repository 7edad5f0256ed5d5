//! Offline checks that every deployment turns the telemetry channel on, and that no engine is pointed at it:
//! compose's and the Kubernetes manifests' producers and consumers run with MW_TELEMETRY on (so a run can be
//! audited with `audit --queue` and its consumers counted from heartbeats where pods take their files with
//! them), and each KEDA ScaledObject names the work queue, never its QUEUE-telemetry or QUEUE-heartbeat
//! sibling (a scaler reading the suite's own records would scale on them). marathon-install's apps are
//! checked in marathon/tests/it/marathon.rs, the compose stacks in a real engine in tests/it/engine.rs.

use queues::QueueUrl;
use queues::amqp::AmqpUrl;
use queues::azure::AzureUrl;
use queues::nats::url::NatsUrl;
use queues::nsq::url::NsqUrl;
use queues::redis::RedisUrl;
use serde_json::Value;
use workload::cli::parse_on_off;
use workload::telemetry::{HEARTBEAT_SUFFIX, RECORDS_SUFFIX};

use crate::containers_common::*;

/// The roles that publish to the channel (the remainder has no queue).
const ROLES: [&str; 2] = ["producer", "consumer"];

/// Whether a variable's value turns telemetry on: `on`, or compose's `${MW_TELEMETRY:-on}` (its default).
fn is_on(value: &str) -> bool {
    let v = value
        .strip_prefix("${MW_TELEMETRY:-")
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(value);
    parse_on_off(v).unwrap_or(false)
}

/// Producers and consumers of the compose file without telemetry on.
fn compose_problems(c: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (name, svc) in services(c) {
        let argv = svc
            .get("command")
            .map(|v| strings(v, "command"))
            .unwrap_or_default();
        if !is_workload(svc) || !argv.first().is_some_and(|b| ROLES.contains(&b.as_str())) {
            continue;
        }
        match compose_env(svc).get("MW_TELEMETRY") {
            Some(v) if is_on(v) => {}
            other => out.push(format!("service {name}: MW_TELEMETRY is {other:?}, not on")),
        }
    }
    out
}

#[test]
fn compose_producers_and_consumers_publish_to_the_telemetry_channel_by_default() {
    let c = compose();
    let found = compose_problems(&c);
    assert!(found.is_empty(), "{}", found.join("\n"));
    // Six stacks, a producer and a consumer each: all were looked at.
    let checked = services(&c)
        .iter()
        .filter(|(n, _)| n.ends_with("-producer") || n.ends_with("-consumer"))
        .count();
    assert_eq!(checked, 12);

    // The check is live: one service turned off, or without the variable, is named.
    let text = read("docker-compose.yml");
    let on = "MW_TELEMETRY: \"${MW_TELEMETRY:-on}\"";
    assert_eq!(
        text.matches(on).count(),
        12,
        "one line per producer and consumer"
    );
    for broken in [
        text.replacen(on, "MW_TELEMETRY: \"off\"", 1),
        text.replacen(&format!("      {on}\n"), "", 1),
        text.replacen(on, "MW_TELEMETRY: \"${MW_TELEMETRY:-off}\"", 1),
    ] {
        let c = yaml_docs(&broken, "the copy").remove(0);
        let found = compose_problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("sqlite-producer"), "{found:?}");
    }
}

/// Producer and consumer containers of a variant without telemetry on, and how many were checked.
fn k8s_problems(v: &str, docs: &[Value]) -> (Vec<String>, usize) {
    let (mut out, mut checked) = (Vec::new(), 0);
    for (kind, name, pod) in pods(docs) {
        for c in pod["containers"].as_array().expect("containers") {
            let argv = c
                .get("command")
                .map(|x| strings(x, "command"))
                .unwrap_or_default();
            if !argv.first().is_some_and(|b| ROLES.contains(&b.as_str())) {
                continue;
            }
            checked += 1;
            let value = container_env(c)
                .get("MW_TELEMETRY")
                .map(|e| e["value"].as_str().unwrap_or_default().to_string());
            if !value.as_deref().is_some_and(is_on) {
                out.push(format!(
                    "k8s/{v}: {kind} {name}: MW_TELEMETRY is {value:?}, not on"
                ));
            }
        }
    }
    (out, checked)
}

#[test]
fn kubernetes_producers_and_consumers_publish_to_the_telemetry_channel() {
    for v in ["nsq", "azure", "redis", "nats", "amqp"] {
        let mut docs = variant(v);
        let (found, checked) = k8s_problems(v, &docs);
        assert!(found.is_empty(), "{}", found.join("\n"));
        assert_eq!(checked, 2, "k8s/{v}: a producer and a consumer");

        // The check is live: the consumer's variable turned off is named.
        let consumer = docs
            .iter_mut()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "consumer")
            .expect("a consumer Deployment");
        let env = consumer["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .expect("env");
        let var = env
            .iter_mut()
            .find(|e| e["name"] == "MW_TELEMETRY")
            .expect("MW_TELEMETRY");
        var["value"] = Value::from("off");
        let (found, _) = k8s_problems(v, &docs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("Deployment consumer"), "{found:?}");
    }
}

/// The names by which a scaler would address a queue: NSQ's topic, Azure's and RabbitMQ's queue, the
/// stream of Redis and NATS (and NATS' subject).
fn names_of(url: &QueueUrl) -> Vec<String> {
    if let Some(u) = url.settings::<NsqUrl>() {
        vec![u.topic.clone()]
    } else if let Some(u) = url.settings::<AzureUrl>() {
        vec![u.queue.clone()]
    } else if let Some(u) = url.settings::<RedisUrl>() {
        vec![u.stream.clone()]
    } else if let Some(u) = url.settings::<NatsUrl>() {
        vec![u.stream.clone(), u.subject.clone()]
    } else if let Some(u) = url.settings::<AmqpUrl>() {
        vec![u.queue.clone()]
    } else {
        panic!("{url}: no scaler for this backend in k8s/")
    }
}

/// What is wrong with a variant's ScaledObject trigger: it names a telemetry sibling of the consumers'
/// queue, or it does not name the work queue at all.
fn scaler_problems(v: &str, docs: &[Value]) -> Vec<String> {
    let (_, url) = consumer_of(docs);
    let so = docs
        .iter()
        .find(|d| d["kind"] == "ScaledObject")
        .expect("a ScaledObject");
    let work = names_of(&url);
    let mut siblings = Vec::new();
    for suffix in [RECORDS_SUFFIX, HEARTBEAT_SUFFIX] {
        let s = url
            .sibling(suffix)
            .unwrap_or_else(|e| panic!("k8s/{v}: {e}"));
        siblings.extend(names_of(&s));
    }
    // The siblings are other queues: a name shared with the work queue would make the check vacuous.
    assert!(
        work.iter().all(|w| !siblings.contains(w)),
        "k8s/{v}: {work:?} vs {siblings:?}"
    );
    let mut out = Vec::new();
    let mut names_work = false;
    for t in so["spec"]["triggers"].as_array().expect("triggers") {
        for (key, val) in t["metadata"].as_object().expect("metadata") {
            let val = val.as_str().unwrap_or_default();
            names_work |= work.iter().any(|w| w == val);
            if siblings.iter().any(|s| s == val)
                || val.ends_with(&format!("-{RECORDS_SUFFIX}"))
                || val.ends_with(&format!("-{HEARTBEAT_SUFFIX}"))
            {
                out.push(format!(
                    "k8s/{v}: the {} trigger's {key} {val:?} is a telemetry sibling of {url}",
                    t["type"]
                ));
            }
        }
    }
    if !names_work {
        out.push(format!(
            "k8s/{v}: no trigger names the work queue ({work:?} of {url})"
        ));
    }
    out
}

#[test]
fn keda_scalers_read_the_work_queue_and_never_a_telemetry_sibling() {
    for v in ["nsq", "azure", "redis", "nats", "amqp"] {
        let mut docs = variant(v);
        let found = scaler_problems(v, &docs);
        assert!(found.is_empty(), "{}", found.join("\n"));

        // The check is live: the trigger pointed at the records sibling instead is caught (twice: it names a
        // sibling, and no longer the work queue).
        let (_, url) = consumer_of(&docs);
        let work = names_of(&url).remove(0);
        let sibling = names_of(&url.sibling(RECORDS_SUFFIX).expect("a sibling")).remove(0);
        let so = docs
            .iter_mut()
            .find(|d| d["kind"] == "ScaledObject")
            .expect("a ScaledObject");
        let meta = so["spec"]["triggers"][0]["metadata"]
            .as_object_mut()
            .expect("metadata");
        let mut replaced = 0;
        for val in meta.values_mut() {
            if val.as_str() == Some(work.as_str()) {
                *val = Value::from(sibling.clone());
                replaced += 1;
            }
        }
        assert!(replaced > 0, "k8s/{v}: the trigger names {work}");
        let found = scaler_problems(v, &docs);
        assert!(
            found.iter().any(|f| f.contains("telemetry sibling"))
                && found.iter().any(|f| f.contains("no trigger names")),
            "k8s/{v}: {found:?}"
        );
    }
}

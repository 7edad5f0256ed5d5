//! Offline checks of the container artefacts: the Dockerfile, docker-compose.yml and the Kubernetes + KEDA
//! manifests under k8s/. Nothing here needs a Docker engine or a cluster (this machine and CI have neither):
//! the compose file is validated against the Compose Specification schema with check-jsonschema, the
//! Dockerfile is linted with hadolint, and every workload a compose service or a Kubernetes container runs is
//! checked against the real binaries: the command must be a binary the image ships, every flag one its
//! `--help` lists and every environment variable one it reads.
//!
//! The Python tools come from the venv that scripts/test builds (target/test-venv, from
//! scripts/requirements-test.txt) and exports as TEST_VENV. A missing tool fails the test with the command
//! that installs it: these checks never pass by skipping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use queues::QueueUrl;
use queues::azure::AzureUrl;
use queues::nats::url::NatsUrl;
use queues::nsq::url::NsqUrl;
use queues::redis::RedisUrl;
use serde_json::Value;

/// The binaries the image ships, as the Dockerfile's build stage names them (checked against the Dockerfile).
const IMAGE_BINARIES: [&str; 5] = ["producer", "consumer", "remainder", "audit", "scorecard"];

/// Who reads a variable that clap does not list.
#[derive(Clone, Copy)]
enum Readers {
    /// These binaries.
    Only(&'static [&'static str]),
    /// Every binary that opens a queue (its `--help` lists QUEUE_URL): the backends read these.
    QueueUsers,
}

/// Variables the binaries read outside clap (so `--help` has no `[env: …]` marker for them), each with the
/// file that reads it. The test checks that the name still appears in that file, so this list cannot outlive
/// the code.
const EXTRA_ENV: &[(&str, &str, Readers)] = &[
    // tracing's EnvFilter::try_from_default_env in init_logging, which these three call.
    (
        "RUST_LOG",
        "workload/src/cli.rs",
        Readers::Only(&["producer", "consumer", "remainder"]),
    ),
    // The 2016 demo's rate and work variables.
    (
        "MSS_PRODUCER_SLEEP_MS",
        "producer/src/config.rs",
        Readers::Only(&["producer"]),
    ),
    (
        "MSS_CONSUMER_SLEEP_MS",
        "consumer/src/config.rs",
        Readers::Only(&["consumer"]),
    ),
    // Backend credentials: never in the queue URL, which is logged.
    (
        "AZURE_STORAGE_CONNECTION_STRING",
        "queues/src/azure/credential.rs",
        Readers::QueueUsers,
    ),
    (
        "AZURE_STORAGE_ACCOUNT_KEY",
        "queues/src/azure/credential.rs",
        Readers::QueueUsers,
    ),
    (
        "AZURE_STORAGE_SAS_TOKEN",
        "queues/src/azure/credential.rs",
        Readers::QueueUsers,
    ),
    (
        "NSQ_AUTH_SECRET",
        "queues/src/nsq/mod.rs",
        Readers::QueueUsers,
    ),
    (
        "REDIS_PASSWORD",
        "queues/src/redis/mod.rs",
        Readers::QueueUsers,
    ),
    (
        "REDIS_USERNAME",
        "queues/src/redis/mod.rs",
        Readers::QueueUsers,
    ),
    ("NATS_USER", "queues/src/nats/auth.rs", Readers::QueueUsers),
    (
        "NATS_PASSWORD",
        "queues/src/nats/auth.rs",
        Readers::QueueUsers,
    ),
    ("NATS_TOKEN", "queues/src/nats/auth.rs", Readers::QueueUsers),
];

/// The 2016 demo's queue variables (nsqd endpoints, topic, channel; Azure account and queue). They count as
/// read by the queue-using binaries once those binaries' sources name them (a quoted literal under
/// queues/src, workload/src, producer/src or consumer/src), so a compose file or manifest may use them only after the code
/// that reads them has landed.
const LEGACY_QUEUE_ENV: &[&str] = &[
    "MSS_QUEUE_ENDPOINT",
    "MSS_TOPIC_NAME",
    "MSS_CHANNEL_NAME",
    "NSQ_STATS_ENDPOINT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_QUEUE_NAME",
];

// ---------------------------------------------------------------------------------------------- helpers

/// The workspace root (this crate is one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the deploy crate sits in the workspace")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a YAML text, with `<<:` merge keys applied, as JSON values.
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| {
            let mut v: serde_norway::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{what}: bad merge key: {e}"));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{what}: not JSON-like: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A tool from the test venv. Fails (never skips) when it is missing, saying how to install it.
fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-venv"));
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test (it builds the venv), or: python3 -m venv target/test-venv && \
         target/test-venv/bin/pip install -r scripts/requirements-test.txt (TEST_VENV may point elsewhere)",
        path.display()
    );
    path
}

/// Runs a command and returns (success, stdout + stderr).
fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v}"))
}

/// A duration in compose (`15s`, `1m30s`) or a bare number of seconds (Kubernetes).
fn duration(v: &Value, what: &str) -> Duration {
    match v {
        Value::Number(n) => {
            Duration::from_secs(n.as_u64().unwrap_or_else(|| panic!("{what}: {n}")))
        }
        Value::String(s) => {
            humantime::parse_duration(s).unwrap_or_else(|e| panic!("{what}: {s:?}: {e}"))
        }
        other => panic!("{what}: not a duration: {other}"),
    }
}

// ------------------------------------------------------------------- what the binaries accept

/// What one binary accepts: its long flags and the variables it reads.
#[derive(Debug, Default)]
struct Accepts {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

/// Reads every image binary's `--help` (flags and `[env: X=]` markers) and adds the variables read outside
/// clap.
fn accepted() -> BTreeMap<String, Accepts> {
    let mut all = BTreeMap::new();
    for bin in IMAGE_BINARIES {
        let mut cmd = Command::new(testkit::bin(bin));
        cmd.arg("--help");
        let (ok, help) = run(cmd);
        assert!(ok, "{bin} --help failed:\n{help}");
        all.insert(bin.to_string(), parse_help(&help));
    }
    let queue_users: Vec<String> = all
        .iter()
        .filter(|(_, a)| a.env.contains("QUEUE_URL"))
        .map(|(b, _)| b.clone())
        .collect();
    for (name, file, readers) in EXTRA_ENV {
        assert!(
            read(file).contains(name),
            "EXTRA_ENV says {file} reads {name}, but the name is no longer there: update the list"
        );
        let bins: Vec<String> = match readers {
            Readers::Only(b) => b.iter().map(|s| s.to_string()).collect(),
            Readers::QueueUsers => queue_users.clone(),
        };
        for b in bins {
            all.get_mut(&b)
                .unwrap_or_else(|| panic!("EXTRA_ENV names {b}, which the image does not ship"))
                .env
                .insert(name.to_string());
        }
    }
    let sources = rust_sources(&["queues/src", "workload/src", "producer/src", "consumer/src"]);
    for name in LEGACY_QUEUE_ENV {
        if sources.contains(&format!("\"{name}\"")) {
            for b in &queue_users {
                all.get_mut(b)
                    .expect("listed above")
                    .env
                    .insert(name.to_string());
            }
        }
    }
    all
}

/// `--flag` names and `[env: NAME=…]` markers from clap's long help.
fn parse_help(help: &str) -> Accepts {
    let mut a = Accepts::default();
    for line in help.lines() {
        // Option lines: "  -h, --help", "      --queue <URL>".
        let t = line.trim_start();
        let long = t.strip_prefix("--").or_else(|| {
            let b = t.as_bytes();
            (b.len() > 6 && b[0] == b'-' && &t[2..6] == ", --").then(|| &t[6..])
        });
        if let Some(flag) = long {
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                a.flags.insert(name);
            }
        }
        let mut s = line;
        while let Some(i) = s.find("[env: ") {
            let after = &s[i + 6..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                a.env.insert(name);
            }
            s = after;
        }
    }
    a
}

/// The text of every .rs file under the given directories, concatenated.
fn rust_sources(dirs: &[&str]) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    for d in dirs {
        walk(&root().join(d), &mut out);
    }
    out
}

/// One workload as a compose service or a Kubernetes container describes it.
struct Workload {
    /// "docker-compose.yml: service nsq-consumer", for messages.
    origin: String,
    argv: Vec<String>,
    env: Vec<String>,
}

/// What is wrong with a workload: a command the image lacks, a flag or a variable the binary does not take.
fn problems(w: &Workload, accepts: &BTreeMap<String, Accepts>) -> Vec<String> {
    let Some(bin) = w.argv.first() else {
        return vec![format!(
            "{}: no command (the image has no default workload: name a binary)",
            w.origin
        )];
    };
    let Some(a) = accepts.get(bin) else {
        return vec![format!(
            "{}: command {bin:?} is not a binary the image ships ({IMAGE_BINARIES:?})",
            w.origin
        )];
    };
    let mut out = Vec::new();
    for arg in &w.argv[1..] {
        if let Some(flag) = arg.strip_prefix("--") {
            let name = flag.split('=').next().unwrap_or(flag);
            if !a.flags.contains(name) {
                out.push(format!("{}: {bin} has no flag --{name}", w.origin));
            }
        }
    }
    for var in &w.env {
        if !a.env.contains(var) {
            out.push(format!(
                "{}: {bin} does not read {var} (it reads {:?})",
                w.origin, a.env
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------- compose

fn compose() -> Value {
    let mut docs = yaml_docs(&read("docker-compose.yml"), "docker-compose.yml");
    assert_eq!(docs.len(), 1, "docker-compose.yml should hold one document");
    docs.remove(0)
}

fn services(c: &Value) -> &serde_json::Map<String, Value> {
    c["services"].as_object().expect("services is a mapping")
}

/// Services built from this repository's image.
fn is_workload(svc: &Value) -> bool {
    svc.get("build").is_some()
}

fn compose_env(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                let s = str_of(i, "environment entry");
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Some(other) => panic!("environment is neither a mapping nor a list: {other}"),
    }
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} should be a list (exec form), is {v}"))
        .iter()
        .map(|s| str_of(s, what).to_string())
        .collect()
}

fn profiles(svc: &Value) -> BTreeSet<String> {
    svc.get("profiles")
        .map(|p| strings(p, "profiles").into_iter().collect())
        .unwrap_or_default()
}

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
        in_profile("sqlite"),
        set(&["sqlite-producer", "sqlite-consumer", "remainder"])
    );
    // Every service belongs to a profile, so plain `docker compose up` starts neither stack by accident.
    for (name, svc) in services(&c) {
        assert!(!profiles(svc).is_empty(), "service {name} has no profile");
        for p in profiles(svc) {
            assert!(
                p == "sqlite" || p == "nsq" || p == "azure" || p == "redis" || p == "nats",
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
        workloads, 11,
        "five producers (sqlite, nsq, azure, redis, nats), five consumers and the remainder"
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

// ------------------------------------------------------------------------------------- Dockerfile

#[test]
fn dockerfile_passes_hadolint_and_every_ignored_rule_says_why() {
    let mut cmd = Command::new(tool("hadolint"));
    cmd.arg("--no-color").arg(root().join("Dockerfile"));
    let (ok, out) = run(cmd);
    assert!(ok && out.trim().is_empty(), "hadolint:\n{out}");

    let text = read("Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rules) = line.trim().strip_prefix("# hadolint ignore=") else {
            continue;
        };
        for rule in rules.split(',') {
            // The comment block right above the ignore line names the rule and says why.
            let reason = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with('#'))
                .any(|l| l.contains(rule.trim()));
            assert!(
                reason,
                "line {}: {rule} is ignored without a comment saying why",
                i + 1
            );
        }
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    out
}

#[test]
fn image_is_static_non_root_and_ships_the_binaries_the_services_run() {
    let dockerfile = read("Dockerfile");
    // A `# syntax=` directive makes BuildKit fetch a frontend image: no build works without a registry.
    assert!(
        !dockerfile
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('#'))
            .any(|l| l.trim_start().to_ascii_lowercase().starts_with("syntax")),
        "the Dockerfile names a frontend image"
    );
    let ins = instructions(&dockerfile);
    // The global ARGs (before the first FROM) with their defaults: what a plain `docker build` uses.
    let first_from = ins
        .iter()
        .position(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let defaults: BTreeMap<&str, &str> = ins[..first_from]
        .iter()
        .filter_map(|i| i.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .collect();
    let resolve = |from: &str| -> String {
        let mut out = from.to_string();
        for (k, v) in &defaults {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        out
    };
    let froms: Vec<String> = ins
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .map(|i| resolve(i))
        .collect();
    // build (musl), prebuilt (binaries made elsewhere), binaries (whichever BINARIES names), run.
    assert_eq!(froms.len(), 4, "the stages: {froms:?}");
    assert!(
        froms[0].contains("-alpine") && froms[0].ends_with(" AS build"),
        "the build stage targets musl: {}",
        froms[0]
    );
    assert_eq!(froms[1], "FROM scratch AS prebuilt");
    assert_eq!(
        froms[2], "FROM build AS binaries",
        "by default the image compiles its binaries"
    );
    assert_eq!(froms[3], "FROM gcr.io/distroless/static-debian12:nonroot");
    let prebuilt = ins
        .iter()
        .find(|i| i.starts_with("COPY ${PREBUILT_DIR}/"))
        .expect("the prebuilt stage copies the binaries");
    let prebuilt: BTreeSet<&str> = prebuilt
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("${PREBUILT_DIR}/"))
        .collect();
    assert_eq!(
        prebuilt,
        IMAGE_BINARIES.into_iter().collect(),
        "binaries of the prebuilt stage"
    );

    let build = ins
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("--profile dist") && build.contains("--locked"),
        "{build}"
    );
    let built: BTreeSet<&str> = build
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    let copied: BTreeSet<&str> = build
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/dist/"))
        .collect();
    let expected: BTreeSet<&str> = IMAGE_BINARIES.into_iter().collect();
    assert_eq!(built, expected, "binaries built");
    assert_eq!(copied, expected, "binaries copied out of the build stage");
    assert!(
        ins.contains(&"COPY --from=binaries /out/ /usr/local/bin/".to_string()),
        "binaries on PATH"
    );

    // Non-root, numeric (so runAsNonRoot can verify it), and no shell-form entrypoint (there is no shell).
    let user = ins
        .iter()
        .rfind(|i| i.starts_with("USER "))
        .expect("a USER");
    let uid = user["USER ".len()..].split(':').next().unwrap_or("");
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "{user}");
    assert!(
        !ins.iter().any(|i| i.starts_with("ENTRYPOINT")),
        "the command names the binary"
    );
    let cmd = ins.iter().rfind(|i| i.starts_with("CMD ")).expect("a CMD");
    assert!(cmd.starts_with("CMD ["), "exec form, no shell: {cmd}");

    let ignore = read(".dockerignore");
    for must in [".git", "target", "node_modules"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore lacks {must}"
        );
    }
}

#[test]
fn image_labels_cover_both_namespaces_and_make_fills_them_from_git() {
    let ins = instructions(&read("Dockerfile"));
    let run_stage = ins
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a run stage");
    let args: BTreeSet<String> = ins[run_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("ARG "))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let labels: BTreeMap<String, String> = ins[run_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("LABEL "))
        .flat_map(|l| {
            // key="value" pairs; values hold spaces but no quotes.
            l.split('"')
                .collect::<Vec<_>>()
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| {
                    (
                        p[0].trim().trim_end_matches('=').to_string(),
                        p[1].to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let from_arg = |key: &str, arg: &str| {
        let v = labels
            .get(key)
            .unwrap_or_else(|| panic!("label {key} is missing"));
        assert_eq!(
            v,
            &format!("${{{arg}}}"),
            "label {key} should come from build arg {arg}"
        );
        assert!(
            args.contains(arg),
            "build arg {arg} is not declared in the run stage"
        );
    };
    for (key, arg) in [
        ("org.opencontainers.image.created", "BUILD_DATE"),
        ("org.opencontainers.image.revision", "VCS_REF"),
        ("org.opencontainers.image.version", "VERSION"),
        ("org.opencontainers.image.source", "VCS_URL"),
        ("org.label-schema.build-date", "BUILD_DATE"),
        ("org.label-schema.vcs-ref", "VCS_REF"),
        ("org.label-schema.version", "VERSION"),
        ("org.label-schema.vcs-url", "VCS_URL"),
    ] {
        from_arg(key, arg);
    }
    for key in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.vendor",
        "org.label-schema.docker.dockerfile",
    ] {
        assert!(
            labels.get(key).is_some_and(|v| !v.is_empty()),
            "label {key} is missing"
        );
    }
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(labels["org.label-schema.license"], "Apache-2.0");
    assert_eq!(labels["org.label-schema.schema-version"], "1.0");

    // The recipe: `make -n image` prints the docker build with every build arg filled.
    let mut make = Command::new("make");
    make.arg("-n").arg("-C").arg(root()).arg("image");
    let (ok, out) = run(make);
    assert!(ok, "make -n image failed:\n{out}");
    let flat = out.replace("\\\n", " ");
    assert!(flat.contains("docker build"), "{out}");
    let value = |arg: &str| -> String {
        let needle = format!("--build-arg {arg}=");
        let i = flat
            .find(&needle)
            .unwrap_or_else(|| panic!("make image does not pass {arg}:\n{out}"));
        flat[i + needle.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    for arg in &args {
        assert!(!value(arg).is_empty(), "make image passes an empty {arg}");
    }
    assert_eq!(
        value("VERSION"),
        env!("CARGO_PKG_VERSION"),
        "the workspace version"
    );
    let rev = value("VCS_REF");
    assert!(
        rev == "unknown" || rev.chars().all(|c| c.is_ascii_hexdigit()),
        "VCS_REF {rev:?}"
    );
    let date = value("BUILD_DATE");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.contains('T'),
        "BUILD_DATE {date:?} is not RFC 3339 UTC"
    );
}

// ------------------------------------------------------------------------------------- Kubernetes

/// Every manifest of a variant (`nsq`, `azure`), base included, as listed by the kustomizations.
fn variant(name: &str) -> Vec<Value> {
    fn collect(dir: &str, out: &mut Vec<Value>) {
        let kust = yaml_docs(&read(&format!("{dir}/kustomization.yaml")), dir)
            .pop()
            .expect("a kustomization");
        for r in kust["resources"].as_array().expect("resources") {
            let r = str_of(r, "resource");
            let path = format!("{dir}/{r}");
            if root().join(&path).is_dir() {
                let normal = Path::new(&path)
                    .components()
                    .fold(PathBuf::new(), |mut p, c| {
                        match c {
                            std::path::Component::ParentDir => {
                                p.pop();
                            }
                            other => p.push(other),
                        }
                        p
                    });
                collect(normal.to_str().expect("utf-8 path"), out);
            } else {
                out.extend(yaml_docs(&read(&path), &path));
            }
        }
    }
    let mut out = Vec::new();
    collect(&format!("k8s/{name}"), &mut out);
    out
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Pod templates of the workload kinds, with their owner's kind and name.
fn pods(docs: &[Value]) -> Vec<(String, String, &Value)> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                &d["spec"]["template"]["spec"],
            )
        })
        .collect()
}

fn container_env(c: &Value) -> BTreeMap<String, Value> {
    c.get("env")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .map(|v| (str_of(&v["name"], "env name").to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kustomizations_list_every_manifest_in_their_folder() {
    for dir in ["k8s/base", "k8s/nsq", "k8s/azure", "k8s/redis", "k8s/nats"] {
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
    for v in ["nsq", "azure", "redis", "nats"] {
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
    for v in ["nsq", "azure", "redis", "nats"] {
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
    // nsq, azure, redis, nats.
    assert_eq!(ours, 12, "producer, consumer and remainder in each variant");
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn kubernetes_workloads_set_resources_and_run_as_non_root() {
    for v in ["nsq", "azure", "redis", "nats"] {
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
    for v in ["nsq", "azure", "redis", "nats"] {
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

/// The consumer Deployment's container, and its parsed QUEUE_URL.
fn consumer_of(docs: &[Value]) -> (&Value, QueueUrl) {
    let c = &find(docs, "Deployment", "consumer")["spec"]["template"]["spec"]["containers"][0];
    let url = str_of(&container_env(c)["QUEUE_URL"]["value"], "QUEUE_URL").to_string();
    let parsed = QueueUrl::parse(&url).unwrap_or_else(|e| panic!("{e}"));
    (c, parsed)
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

// ------------------------------------------------------------------------------------ the checker

#[test]
fn checker_rejects_unknown_commands_flags_and_variables() {
    let accepts = accepted();
    let w = |argv: &[&str], env: &[&str]| Workload {
        origin: "test".into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|s| s.to_string()).collect(),
    };
    let good = w(
        &["consumer", "--drain-timeout=8s", "--work", "sleep:1ms"],
        &[
            "QUEUE_URL",
            "CONSUMER_WORK",
            "RUST_LOG",
            "MSS_CONSUMER_SLEEP_MS",
            "AZURE_STORAGE_CONNECTION_STRING",
        ],
    );
    assert_eq!(problems(&good, &accepts), Vec::<String>::new());

    let p = problems(&w(&["consumerr"], &[]), &accepts);
    assert!(
        p.len() == 1 && p[0].contains("\"consumerr\" is not a binary"),
        "{p:?}"
    );
    let p = problems(&w(&[], &[]), &accepts);
    assert!(p.len() == 1 && p[0].contains("no command"), "{p:?}");
    let p = problems(
        &w(&["producer", "--rate", "5", "--rat", "5"], &[]),
        &accepts,
    );
    assert!(p.len() == 1 && p[0].contains("no flag --rat"), "{p:?}");
    // An unknown variable, and a real one on the wrong binary.
    let p = problems(
        &w(&["consumer"], &["QUEUE_URLL", "PRODUCER_RATE"]),
        &accepts,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("does not read QUEUE_URLL") && p[1].contains("does not read PRODUCER_RATE"),
        "{p:?}"
    );
    // The remainder opens no queue, so the backends' variables are not its own.
    let p = problems(
        &w(&["remainder"], &["AZURE_STORAGE_CONNECTION_STRING"]),
        &accepts,
    );
    assert_eq!(p.len(), 1, "{p:?}");
}

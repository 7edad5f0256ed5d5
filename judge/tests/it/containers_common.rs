//! What the offline checks of the container artefacts share (containers_*.rs): reading the files, the
//! tools of the test venv, and what each binary of the image accepts (flags and variables), to check every
//! workload a compose service or a Kubernetes container runs against.
// Each test file uses a part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use queues::QueueUrl;
use serde_json::Value;

/// The binaries the image ships, as the Dockerfile's build stage names them (checked against the Dockerfile).
pub const IMAGE_BINARIES: [&str; 5] = ["producer", "consumer", "remainder", "audit", "scorecard"];

/// Who reads a variable that clap does not list.
#[derive(Clone, Copy)]
pub enum Readers {
    /// These binaries.
    Only(&'static [&'static str]),
    /// Every binary that opens a queue (its `--help` lists QUEUE_URL): the backends read these.
    QueueUsers,
}

/// Variables the binaries read outside clap (so `--help` has no `[env: …]` marker for them), each with the
/// file that reads it. The test checks that the name still appears in that file, so this list cannot outlive
/// the code.
pub const EXTRA_ENV: &[(&str, &str, Readers)] = &[
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
    (
        "AMQP_PASSWORD",
        "queues/src/amqp/mod.rs",
        Readers::QueueUsers,
    ),
];

/// The 2016 demo's queue variables (nsqd endpoints, topic, channel; Azure account and queue). They count as
/// read by the queue-using binaries once those binaries' sources name them (a quoted literal under
/// queues/src, workload/src, producer/src or consumer/src), so a compose file or manifest may use them only after the code
/// that reads them has landed.
pub const LEGACY_QUEUE_ENV: &[&str] = &[
    "MSS_QUEUE_ENDPOINT",
    "MSS_TOPIC_NAME",
    "MSS_CHANNEL_NAME",
    "NSQ_STATS_ENDPOINT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_QUEUE_NAME",
];

// ---------------------------------------------------------------------------------------------- helpers

/// The workspace root (this crate is one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the deploy crate sits in the workspace")
        .to_path_buf()
}

pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a YAML text, with `<<:` merge keys applied, as JSON values.
pub fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
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
pub fn tool(name: &str) -> PathBuf {
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
pub fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v}"))
}

/// A duration in compose (`15s`, `1m30s`) or a bare number of seconds (Kubernetes).
pub fn duration(v: &Value, what: &str) -> Duration {
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
pub struct Accepts {
    pub flags: BTreeSet<String>,
    pub env: BTreeSet<String>,
}

/// Reads every image binary's `--help` (flags and `[env: X=]` markers) and adds the variables read outside
/// clap.
pub fn accepted() -> BTreeMap<String, Accepts> {
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
pub fn parse_help(help: &str) -> Accepts {
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
pub fn rust_sources(dirs: &[&str]) -> String {
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
pub struct Workload {
    /// "docker-compose.yml: service nsq-consumer", for messages.
    pub origin: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

/// What is wrong with a workload: a command the image lacks, a flag or a variable the binary does not take.
pub fn problems(w: &Workload, accepts: &BTreeMap<String, Accepts>) -> Vec<String> {
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

pub fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} should be a list (exec form), is {v}"))
        .iter()
        .map(|s| str_of(s, what).to_string())
        .collect()
}

// ------------------------------------------------------------------------ compose and Kubernetes

pub fn compose() -> Value {
    let mut docs = yaml_docs(&read("docker-compose.yml"), "docker-compose.yml");
    assert_eq!(docs.len(), 1, "docker-compose.yml should hold one document");
    docs.remove(0)
}

pub fn services(c: &Value) -> &serde_json::Map<String, Value> {
    c["services"].as_object().expect("services is a mapping")
}

/// Services built from this repository's image.
pub fn is_workload(svc: &Value) -> bool {
    svc.get("build").is_some()
}

pub fn compose_env(svc: &Value) -> BTreeMap<String, String> {
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

pub fn profiles(svc: &Value) -> BTreeSet<String> {
    svc.get("profiles")
        .map(|p| strings(p, "profiles").into_iter().collect())
        .unwrap_or_default()
}

/// Every manifest of a variant (`nsq`, `azure`), base included, as listed by the kustomizations.
pub fn variant(name: &str) -> Vec<Value> {
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

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Pod templates of the workload kinds, with their owner's kind and name.
pub fn pods(docs: &[Value]) -> Vec<(String, String, &Value)> {
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

pub fn container_env(c: &Value) -> BTreeMap<String, Value> {
    c.get("env")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .map(|v| (str_of(&v["name"], "env name").to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The consumer Deployment's container, and its parsed QUEUE_URL.
pub fn consumer_of(docs: &[Value]) -> (&Value, QueueUrl) {
    let c = &find(docs, "Deployment", "consumer")["spec"]["template"]["spec"]["containers"][0];
    let url = str_of(&container_env(c)["QUEUE_URL"]["value"], "QUEUE_URL").to_string();
    let parsed = QueueUrl::parse(&url).unwrap_or_else(|e| panic!("{e}"));
    (c, parsed)
}

//! The image and the compose stacks in a real Docker engine: each test starts a dockerd of its own
//! (testkit::docker), builds the workload image with `make image` from the binaries `cargo build` already
//! made on a base made here (no registry is reachable), and runs it.
//!
//! The nsq profile is not run: no nsqd package exists to make the `nsqio/nsq` image from, so it stays
//! checked offline (tests/it/containers_compose.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use testkit::docker::{self, Dockerd, IMAGE_BINARIES};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the judge crate sits in the workspace")
        .to_path_buf()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn image_builds_from_local_bases_with_every_label_filled_runs_non_root_and_each_binary_answers() {
    let started = SystemTime::now();
    let d = Dockerd::start();
    let image = docker::build_workload_image(&d, "qw-image");

    let config: Value =
        serde_json::from_str(&d.run(&["image", "inspect", "--format", "{{json .Config}}", &image]))
            .expect("image config is JSON");
    let labels: BTreeMap<String, String> = config["Labels"]
        .as_object()
        .expect("labels")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    // Every label of both namespaces holds a real value, not the Dockerfile's `unknown` default.
    let ours: Vec<_> = labels
        .iter()
        .filter(|(k, _)| k.starts_with("org.opencontainers.") || k.starts_with("org.label-schema."))
        .collect();
    assert!(ours.len() >= 19, "labels: {labels:#?}");
    for (k, v) in &ours {
        assert!(
            !v.is_empty() && *v != "unknown",
            "label {k} is {v:?}: {labels:#?}"
        );
    }
    let head = git(&["rev-parse", "HEAD"]).expect("the tests run in a git clone");
    for key in [
        "org.opencontainers.image.revision",
        "org.label-schema.vcs-ref",
    ] {
        let rev = &labels[key];
        assert!(
            rev.len() >= 12 && head.starts_with(rev.as_str()),
            "{key} {rev:?} is not the commit {head}"
        );
    }
    for key in [
        "org.opencontainers.image.version",
        "org.label-schema.version",
    ] {
        assert_eq!(labels[key], env!("CARGO_PKG_VERSION"), "{key}");
    }
    for key in [
        "org.opencontainers.image.licenses",
        "org.label-schema.license",
    ] {
        assert_eq!(labels[key], env!("CARGO_PKG_LICENSE"), "{key}");
    }
    let source = git(&["remote", "get-url", "origin"])
        .unwrap_or_else(|| format!("file://{}", root().display()));
    for key in [
        "org.opencontainers.image.source",
        "org.label-schema.vcs-url",
    ] {
        assert_eq!(labels[key], source, "{key}");
    }
    // Created: the build time, to the second.
    for key in [
        "org.opencontainers.image.created",
        "org.label-schema.build-date",
    ] {
        let at = humantime::parse_rfc3339(&labels[key])
            .unwrap_or_else(|e| panic!("{key} {:?}: {e}", labels[key]));
        let floor = started - Duration::from_secs(1);
        assert!(
            at >= floor && at <= SystemTime::now(),
            "{key} {} is not the build time",
            labels[key]
        );
    }

    // Non-root: the image says so, and the kernel agrees about a running container's process.
    let user = config["User"].as_str().unwrap_or_default();
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user:?} is not numeric"));
    assert_ne!(uid, 0, "the image runs as root");
    let id = d.run(&["run", "-d", &image, "remainder", "--mode", "sleep"]);
    let pid = d.run(&["inspect", "--format", "{{.State.Pid}}", id.trim()]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .expect("the container's process status");
    let real_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a Uid line");
    assert_eq!(real_uid, uid.to_string(), "{status}");
    d.run(&["rm", "--force", id.trim()]);

    for bin in IMAGE_BINARIES {
        let out = d.run(&["run", "--rm", &image, bin, "--version"]);
        assert_eq!(
            out.trim(),
            format!("{bin} {}", env!("CARGO_PKG_VERSION")),
            "{bin} --version"
        );
    }
}

/// One compose stack's names.
struct Stack {
    profile: &'static str,
    producer: &'static str,
    consumer: &'static str,
    /// The volume (without the project prefix) holding the consumers' shared ledger.
    ledger_volume: &'static str,
    /// The work queue as the stack's containers name it (docker-compose.yml's QUEUE_URL), for `audit --queue`.
    queue: &'static str,
}

/// The containers of a project's service, as `docker ps` lists them (running only unless `all`).
fn containers(d: &Dockerd, project: &str, service: &str, all: bool) -> Vec<String> {
    let mut args = vec![
        "ps".to_string(),
        "--quiet".into(),
        "--no-trunc".into(),
        "--filter".into(),
        format!("label=com.docker.compose.project={project}"),
        "--filter".into(),
        format!("label=com.docker.compose.service={service}"),
    ];
    if all {
        args.push("--all".into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    d.run(&refs).lines().map(str::to_string).collect()
}

fn compose(d: &Dockerd, project: &str, image: &str, args: &[&str]) -> String {
    let mut cmd = d.compose(project);
    cmd.env("WORKLOAD_IMAGE", image)
        // A short job, so that the test's messages are consumed in seconds.
        .env("CONSUMER_WORK", "sleep:5ms")
        .env_remove("PRODUCER_RATE")
        .args(args);
    docker::checked(cmd, &format!("docker compose {}", args.join(" ")))
}

/// `compose --profile P run` of `args` (the run's options, its service and command), in a one-off
/// container named `{project}-{name}`; returns its stdout and stderr. They are read from the container's log,
/// which the daemon keeps whole, then the container is removed: `compose run`'s attached stdout now and then
/// lost a short-lived container's output (seen once in CI: exit 0, nothing printed).
fn compose_run(
    d: &Dockerd,
    project: &str,
    image: &str,
    profile: &str,
    name: &str,
    args: &[&str],
) -> (String, String) {
    let container = format!("{project}-{name}");
    let mut run = vec!["--profile", profile, "run", "--name", &container, "-T"];
    run.extend(args);
    compose(d, project, image, &run);
    let logs = d
        .docker()
        .args(["logs", &container])
        .output()
        .expect("docker logs");
    d.run(&["rm", &container]);
    (
        String::from_utf8_lossy(&logs.stdout).into_owned(),
        String::from_utf8_lossy(&logs.stderr).into_owned(),
    )
}

/// up, `--scale` consumers to 3, `/metrics` from another container, a bounded producer run, `docker compose
/// stop` (every consumer exits 0 within its stop_grace_period), the audit of the files and `audit --queue` of
/// the telemetry channel (lost 0 both), `down -v` (nothing left).
fn run_stack(s: &Stack, probe_image: impl FnOnce(&Dockerd) -> String) {
    const MESSAGES: u64 = 400;
    let t = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1}s {what}", t.elapsed().as_secs_f64());
    let d = Dockerd::start();
    phase("dockerd up");
    let image = docker::build_workload_image(&d, "qw-compose");
    let probe = probe_image(&d);
    phase("images built");
    let project = format!("qw-{}", s.profile);
    let profile = ["--profile", s.profile];

    let scale = format!("{}=3", s.consumer);
    let mut up = profile.to_vec();
    up.extend(["up", "--detach", "--scale", &scale, s.consumer, "remainder"]);
    compose(&d, &project, &image, &up);
    assert!(
        testkit::eventually(Duration::from_secs(30), || containers(
            &d, &project, s.consumer, false
        )
        .len()
            == 3),
        "three {} containers should run: {}",
        s.consumer,
        d.run(&["ps", "--all"])
    );

    phase("three consumers run");
    // /metrics from another container on the stack's network, by service name.
    let network = format!("{project}_default");
    for (service, role) in [(s.consumer, "consumer"), ("remainder", "remainder")] {
        let url = format!("http://{service}:9100/metrics");
        let (status, body) = docker::http_get_from_network(&d, &probe, &network, &url);
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            body.contains(&format!("role=\"{role}\"")) && body.contains("# TYPE mw_"),
            "{url}:\n{body}"
        );
    }

    phase("/metrics answered");
    // A bounded producer run, its stdout kept for the audit.
    let count = MESSAGES.to_string();
    let env_count = format!("PRODUCER_COUNT={count}");
    let run = ["-e", &env_count, "-e", "PRODUCER_RATE=200", s.producer];
    let (producer_out, err) = compose_run(&d, &project, &image, s.profile, "producer", &run);
    let summary: Value = producer_out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .unwrap_or_else(|| panic!("no producer summary:\n{producer_out}{err}"));
    assert_eq!(summary["sent"], MESSAGES, "{summary}");
    let work = d.scratch("run");
    let producer_file = work.join("producer.jsonl");
    std::fs::write(&producer_file, &producer_out).expect("keep the producer's stdout");

    phase("producer done");
    let ledger = d
        .data_root()
        .join("volumes")
        .join(format!("{project}_{}", s.ledger_volume))
        .join("_data/consumers.ledger");
    let lines = || {
        std::fs::read_to_string(&ledger)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    };
    assert!(
        testkit::eventually(Duration::from_secs(60), || lines() >= MESSAGES),
        "the consumers' ledger has {} of {MESSAGES} lines",
        lines()
    );

    phase("every message consumed");
    // Stop: SIGTERM, each consumer drains and exits 0 well within stop_grace_period (no SIGKILL: 137).
    let consumers = containers(&d, &project, s.consumer, false);
    let grace: u64 = d
        .run(&[
            "inspect",
            "--format",
            "{{.Config.StopTimeout}}",
            &consumers[0],
        ])
        .trim()
        .parse()
        .expect("compose sets the stop timeout from stop_grace_period");
    assert_eq!(grace, 15, "docker-compose.yml's stop_grace_period");
    let t0 = Instant::now();
    let mut stop = profile.to_vec();
    stop.push("stop");
    compose(&d, &project, &image, &stop);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(grace),
        "compose stop took {took:?}"
    );
    let mut acked = 0;
    for c in &consumers {
        let code = d.run(&["inspect", "--format", "{{.State.ExitCode}}", c]);
        assert_eq!(code.trim(), "0", "consumer {c} exited {code}");
        // The consumer's own summary (its stdout): an independent count of what it acked.
        let logs = d.docker().args(["logs", c]).output().expect("docker logs");
        let summary = String::from_utf8_lossy(&logs.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["kind"] == "summary")
            .unwrap_or_else(|| panic!("consumer {c} wrote no summary"));
        acked += summary["acked"].as_u64().expect("acked");
    }
    assert_eq!(acked, MESSAGES, "the consumers' summaries");

    phase("stopped");
    // The audit over the run: the producer's stdout and the shared ledger.
    let out = testkit::command("audit")
        .arg("--producer")
        .arg(&producer_file)
        .arg("--ledger")
        .arg(&ledger)
        .output()
        .expect("run audit");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit stdout is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "audit: {report}");
    assert_eq!(report["produced"], MESSAGES, "{report}");
    assert_eq!(report["consumed"], MESSAGES, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");

    phase("audited");
    // The same run off the telemetry channel (docker-compose.yml turns it on): the image's own audit in a
    // one-off container of the consumer's service (its queue settings and volume), as a user would run it
    // where no ledger file is shared; compose starts the queue's server again (`stop` stopped it). Lost 0,
    // and the count the consumers' summaries and the ledger saw.
    let run_id = summary["run_id"].as_str().expect("the producer's run_id");
    let audit = [
        s.consumer,
        "audit",
        "--queue",
        s.queue,
        "--run",
        run_id,
        "--save",
        "/data/audit-telemetry",
    ];
    let (out, err) = compose_run(&d, &project, &image, s.profile, "audit", &audit);
    let report: Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["role"] == "audit")
        .unwrap_or_else(|| panic!("audit --queue printed no report:\n{out}{err}"));
    assert_eq!(report["produced"], MESSAGES, "audit --queue: {report}");
    assert_eq!(report["consumed"], acked, "audit --queue: {report}");
    assert_eq!(report["lost"], 0, "audit --queue: {report}");
    assert_eq!(report["duplicates"], 0, "audit --queue: {report}");
    // What it drained is kept on the volume, in the file ledger's format, one file per consumer.
    let saved = d
        .data_root()
        .join("volumes")
        .join(format!("{project}_{}", s.ledger_volume))
        .join("_data/audit-telemetry")
        .join(run_id);
    let (mut files, mut entries) = (0, 0);
    for e in std::fs::read_dir(&saved)
        .unwrap_or_else(|e| panic!("{}: {e}", saved.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ledger"))
    {
        files += 1;
        entries += std::fs::read_to_string(e.path())
            .expect("a saved ledger")
            .lines()
            .count() as u64;
    }
    assert!(
        (1..=consumers.len()).contains(&files),
        "{files} ledgers for {} consumers in {}",
        consumers.len(),
        saved.display()
    );
    assert_eq!(entries, acked, "the saved ledgers' entries");

    phase("audited off the telemetry channel");
    let mut down = profile.to_vec();
    down.extend(["down", "--volumes"]);
    compose(&d, &project, &image, &down);
    phase("down");
    let label = format!("label=com.docker.compose.project={project}");
    for what in [
        vec!["ps", "--all", "--quiet", "--filter", &label],
        vec!["network", "ls", "--quiet", "--filter", &label],
        vec!["volume", "ls", "--quiet", "--filter", &label],
    ] {
        assert_eq!(d.run(&what).trim(), "", "left after down: {what:?}");
    }
    drop(d);
    phase("dockerd stopped");
}

#[test]
fn compose_sqlite_profile_scales_to_three_stops_cleanly_and_audits_lost_zero() {
    run_stack(
        &Stack {
            profile: "sqlite",
            producer: "sqlite-producer",
            consumer: "sqlite-consumer",
            ledger_volume: "sqlite-data",
            queue: "sqlite:/data/queue.db",
        },
        docker::build_node_image,
    );
}

#[test]
fn compose_azure_profile_on_a_local_azurite_image_scales_stops_cleanly_and_audits_lost_zero() {
    // The tag compose names is the version package.json pins.
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("package.json")).expect("package.json"),
    )
    .expect("package.json is JSON");
    let version = pinned["devDependencies"]["azurite"]
        .as_str()
        .expect("azurite pinned");
    assert!(
        docker::AZURITE_IMAGE.ends_with(&format!(":{version}")),
        "{} vs package.json's {version}",
        docker::AZURITE_IMAGE
    );
    run_stack(
        &Stack {
            profile: "azure",
            producer: "azure-producer",
            consumer: "azure-consumer",
            ledger_volume: "azure-ledgers",
            queue: "azure://devstoreaccount1/microscaling-demo?endpoint=http://azurite:10001/devstoreaccount1",
        },
        docker::build_azurite_image,
    );
}

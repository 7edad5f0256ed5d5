//! `scorecard watch --consumers docker:LABEL=VALUE` in a real Docker engine (a dockerd of the test's own,
//! testkit::docker): the count equals the containers running with the label at each step, and a recorded
//! series goes through the same steps.

use std::time::Duration;

use judge::scorecard::Series;
use judge::scorecard::sources::ConsumerSource;
use testkit::Proc;
use testkit::docker::{self, Dockerd};

const LABEL: &str = "io.example.role";

/// Starts a container of `image` (a remainder that sleeps) with `LABEL=value`; returns its id.
fn start(d: &Dockerd, image: &str, value: &str) -> String {
    let label = format!("{LABEL}={value}");
    d.run(&[
        "run",
        "--detach",
        "--label",
        &label,
        image,
        "remainder",
        "--mode",
        "sleep",
    ])
    .trim()
    .to_string()
}

#[test]
fn docker_source_counts_exactly_the_running_containers_with_the_label_at_each_step() {
    let d = Dockerd::start();
    let image = docker::build_workload_image(&d, "qw-scorecard");
    let source = ConsumerSource::Docker {
        socket: d.host(),
        label: LABEL.into(),
        value: Some("consumer".into()),
    };
    assert_eq!(source.to_string(), format!("docker:{LABEL}=consumer"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    workload::tls::ensure_crypto_provider();
    let http = reqwest::Client::new();
    let count = || {
        rt.block_on(source.count(&http))
            .unwrap_or_else(|e| panic!("count: {e}"))
    };

    // Containers that must never count: another value of the label, and one with the label that has stopped.
    start(&d, &image, "producer");
    let stopped = start(&d, &image, "consumer");
    d.run(&["stop", "--time", "5", &stopped]);

    let out = tempfile::tempdir().unwrap();
    let mut cmd = testkit::command("scorecard");
    docker_env(&d, &mut cmd);
    cmd.args(["watch", "--queue"])
        .arg(testkit::sqlite_url(out.path()))
        .args(["--consumers", &format!("docker:{LABEL}=consumer")])
        .args([
            "--shape",
            "const:0",
            "--target",
            "5",
            "--duration",
            "12s",
            "--interval",
            "200ms",
        ])
        .arg("--out")
        .arg(out.path());
    // The queue file must exist: watch never creates the queue it watches.
    testkit::publish_raw(&testkit::sqlite_url(out.path()), Vec::new());
    let mut watch = Proc::spawn("scorecard", cmd);

    assert_eq!(count(), 0, "only a stopped container carries the value");
    std::thread::sleep(Duration::from_millis(1500));
    let mut running = Vec::new();
    let mut steps = vec![0];
    for (add, remove) in [(2, 0), (1, 0), (0, 2), (0, 1)] {
        for _ in 0..add {
            running.push(start(&d, &image, "consumer"));
        }
        for _ in 0..remove {
            let id = running.pop().unwrap();
            d.run(&["stop", "--time", "5", &id]);
        }
        assert_eq!(count(), running.len(), "after +{add} -{remove}");
        steps.push(running.len());
        std::thread::sleep(Duration::from_millis(1500));
    }

    assert!(
        watch.wait(Duration::from_secs(30)).success(),
        "{}",
        watch.stderr()
    );
    let series: Series = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("series.json")).expect("series.json"),
    )
    .expect("series.json parses");
    let mut seen: Vec<usize> = series.samples.iter().map(|s| s.consumers).collect();
    seen.dedup();
    // Every step, in order; a poll between two `docker run`s may see a count in between, nothing else.
    let mut rest = seen.iter();
    for step in &steps {
        assert!(
            rest.any(|n| n == step),
            "the series {seen:?} misses step {step} of {steps:?}"
        );
    }
    assert!(seen.iter().all(|&n| n <= 3), "{seen:?}");
}

fn docker_env(d: &Dockerd, cmd: &mut std::process::Command) {
    cmd.env("DOCKER_HOST", d.host());
}

#[test]
fn a_docker_host_that_is_not_a_unix_socket_is_refused_in_one_line() {
    let mut cmd = testkit::command("scorecard");
    cmd.env("DOCKER_HOST", "tcp://user:hunter2@10.0.0.1:2376")
        .args([
            "watch",
            "--queue",
            "sqlite:/nonexistent/q.db",
            "--consumers",
            "docker:a=b",
            "--shape",
            "const:0",
            "--target",
            "1",
        ]);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a unix socket"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

//! `demo --engine docker` in a real dockerd of the test's own: the producer, the consumers and the remainders
//! run as containers of the workload image (built from this build's binaries), the autoscaler adds and
//! removes consumer containers, and nothing of the run (containers, networks, volumes) is left in the engine
//! when it ends, is interrupted or fails.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use judge::demo::docker::{ROLE_LABEL, RUN_LABEL};
use judge::scorecard::Series;
use testkit::docker::{self, Dockerd};
use testkit::{Proc, u};

fn demo(d: &Dockerd, image: &str, args: &[&str]) -> Proc {
    let mut cmd = testkit::command("demo");
    d.env(&mut cmd);
    cmd.args(["--engine", "docker", "--image", image])
        .args(args);
    Proc::spawn("demo", cmd)
}

/// Fails naming whatever of a demo run is still in the engine: containers, networks, volumes.
fn nothing_left(d: &Dockerd, stderr: &str) {
    // Shown with --no-capture: what the demo said.
    eprintln!("---- the demo's stderr:\n{stderr}");
    let filter = format!("label={RUN_LABEL}");
    for what in [
        vec!["ps", "--all", "--quiet", "--filter", &filter],
        vec!["network", "ls", "--quiet", "--filter", &filter],
        vec!["volume", "ls", "--quiet", "--filter", &filter],
        // Nor anything else: the test's engine ran nothing but the demo.
        vec!["ps", "--all", "--quiet"],
        vec!["volume", "ls", "--quiet"],
    ] {
        assert_eq!(d.run(&what).trim(), "", "left behind: {what:?}\n{stderr}");
    }
}

/// Counts the demo's running containers by role while it runs: the most seen of each.
struct Watch {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<[usize; 3]>>,
    polls: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const ROLES: [&str; 3] = ["producer", "consumer", "remainder"];

impl Watch {
    fn start(d: &Dockerd) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new([0; 3]));
        let polls = Arc::new(AtomicUsize::new(0));
        let host = d.host();
        let (s, p, n) = (stop.clone(), peaks.clone(), polls.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = std::process::Command::new(docker::DOCKER)
                    .env("DOCKER_HOST", &host)
                    .args(["ps", "--filter", &format!("label={RUN_LABEL}")])
                    .args(["--format", &format!("{{{{.Label \"{ROLE_LABEL}\"}}}}")])
                    .output();
                if let Ok(out) = out {
                    let text = String::from_utf8_lossy(&out.stdout).to_string();
                    let mut peaks = p.lock().unwrap();
                    for (i, role) in ROLES.iter().enumerate() {
                        let k = text.lines().filter(|l| l.trim() == *role).count();
                        peaks[i] = peaks[i].max(k);
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Watch {
            stop,
            peaks,
            polls,
            thread: Some(thread),
        }
    }

    fn peaks(mut self) -> ([usize; 3], usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let peaks = *self.peaks.lock().unwrap();
        (peaks, self.polls.load(Ordering::Relaxed))
    }
}

/// One `--autoscale on --scenario FILE` run: its summary, series, the most containers of each role seen
/// running, and its stderr. Asserts the run succeeded, lost nothing and left nothing in the engine.
fn autoscaled_run(
    d: &Dockerd,
    image: &str,
    scenario: &Path,
) -> (serde_json::Value, Series, [usize; 3], String) {
    let out = tempfile::tempdir().unwrap();
    let watch = Watch::start(d);
    let mut p = demo(
        d,
        image,
        &[
            "--autoscale",
            "on",
            "--scenario",
            &scenario.display().to_string(),
            "--scorecard-dir",
            &out.path().display().to_string(),
        ],
    );
    let status = p.wait(Duration::from_secs(120));
    let (peaks, polls) = watch.peaks();
    let stderr = p.stderr();
    assert!(status.success(), "demo failed: {status}\n{stderr}");
    let summary = p.summary().expect("a summary line");
    assert_eq!(u(&summary, "lost"), 0, "{summary}\n{stderr}");
    assert!(u(&summary, "consumed") >= 600, "{summary}");
    assert_eq!(
        u(&summary, "consumed"),
        u(&summary, "produced"),
        "{summary}"
    );
    assert!(polls > 10, "{polls} polls");
    let series: Series =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("series.json")).unwrap())
            .unwrap();
    assert_eq!(series.lost, Some(0));
    assert!(out.path().join("scorecard.json").is_file());
    nothing_left(d, &stderr);
    (summary, series, peaks, stderr)
}

#[test]
fn docker_engine_autoscales_a_burst_out_and_back_in_with_containers_under_each_policy() {
    let d = Dockerd::start();
    let image = docker::build_workload_image(&d, "qw-demo");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");

    // The microscaling policy.
    let (_, series, peaks, stderr) = autoscaled_run(&d, &image, &dir.join("burst-short.toml"));
    // The children were containers: one producer, up to max=4 consumers, remainders in the spare slots.
    assert_eq!(peaks[0], 1, "producer containers: {peaks:?}");
    assert_eq!(peaks[1], 4, "consumer containers: {peaks:?}\n{stderr}");
    assert!(peaks[2] >= 1, "remainder containers: {peaks:?}");
    let s = &series.samples;
    for x in s {
        assert_eq!(x.consumers + x.remainders, 4, "{x:?}");
    }
    let peak = s
        .iter()
        .position(|x| x.consumers == 4)
        .unwrap_or_else(|| panic!("never scaled out to max=4: {s:?}"));
    assert!(
        s[peak..].iter().any(|x| x.consumers < 2 && x.t < 12.0),
        "never scaled back in before the producer stopped: {s:?}"
    );

    // The keda policy (KEDA's activation and the HPA's rules), each consumer container 1 s from start to
    // ready: it scales out on the burst and back in after its cooldown.
    let (summary, series, peaks, stderr) =
        autoscaled_run(&d, &image, &dir.join("burst-short-keda.toml"));
    assert!(u(&summary, "consumers_max") >= 2, "{summary}\n{stderr}");
    assert!(peaks[1] >= 2, "consumer containers: {peaks:?}\n{stderr}");
    let s = &series.samples;
    let most = s.iter().map(|x| x.consumers).max().unwrap_or(0);
    let peak = s.iter().position(|x| x.consumers == most).unwrap();
    assert!(
        s[peak..].iter().any(|x| x.consumers < most),
        "never scaled back in: {s:?}"
    );
}

#[test]
fn docker_engine_interrupted_by_sigint_stops_its_containers_and_leaves_nothing() {
    let d = Dockerd::start();
    let image = docker::build_workload_image(&d, "qw-demo");
    let mut p = demo(
        &d,
        &image,
        &["--duration", "60s", "--consumers", "2", "--rate", "50"],
    );
    let filter = format!("label={RUN_LABEL}");
    // Producer, two consumers and the remainder, all running.
    assert!(
        testkit::eventually(Duration::from_secs(60), || {
            d.run(&["ps", "--quiet", "--filter", &filter])
                .lines()
                .count()
                == 4
        }),
        "the demo's four containers never ran:\n{}",
        p.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    p.signal(libc::SIGINT);
    let status = p.wait(Duration::from_secs(60));
    let stderr = p.stderr();
    // Stopped on request: the producer, then the drain, then the rest, within their graces.
    assert!(status.success(), "{status}\n{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(45), "{:?}", t0.elapsed());
    let summary = p.summary().expect("a summary line");
    assert_eq!(u(&summary, "lost"), 0, "{summary}\n{stderr}");
    assert!(u(&summary, "produced") > 0, "{summary}");
    nothing_left(&d, &stderr);
}

#[test]
fn docker_engine_failures_are_one_clear_error_and_leave_nothing() {
    let d = Dockerd::start();
    // An image the engine does not hold: refused before anything starts, saying how to make it.
    let mut p = demo(&d, "qw-no-such-image:1", &["--duration", "5s"]);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("qw-no-such-image:1") && stderr.contains("make image"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    nothing_left(&d, &stderr);

    // An image without the consumer: its containers cannot start their binary. The demo stops, names the
    // consumer and shows the engine's reason from its log, and removes every container it started.
    let image = docker::build_image_without(&d, "qw-no-consumer:1", "consumer");
    let mut p = demo(&d, &image, &["--duration", "20s", "--consumers", "2"]);
    let status = p.wait(Duration::from_secs(60));
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("consumer"), "{stderr}");
    assert!(
        stderr.contains("exited unexpectedly") && stderr.contains("exec"),
        "names the failure and its reason: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    nothing_left(&d, &stderr);
    // A failed demo keeps its directory for the logs: this test has read what it needed.
    let kept = stderr
        .split("kept in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the kept directory is named");
    assert!(kept.contains("/queue-demo-"), "{kept}");
    std::fs::remove_dir_all(kept).unwrap();
}

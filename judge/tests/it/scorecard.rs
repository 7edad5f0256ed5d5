//! The scorecard against real runs: the demo's autoscaler on a short burst scenario (graded, charted, and
//! re-graded from its own series), and the consumer count read from nsqd's `/stats` while real consumer
//! processes come and go. Build every binary first: `cargo build --workspace --bins`.

use std::path::Path;
use std::time::Duration;

use judge::scorecard::chart::{MARK_NAMES, SERIES_NAMES};
use judge::scorecard::sources::ConsumerSource;
use judge::scorecard::{Scorecard, Series, score};
use serde_json::Value;
use testkit::Proc;
use testkit::fake_nsqd::FakeNsqd;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `card` as scorecard.json holds it: figures to `json::DECIMALS` places.
fn as_written(card: &Scorecard) -> Scorecard {
    serde_json::from_value(judge::scorecard::json::rounded(card).unwrap()).unwrap()
}

/// Every series of the chart is drawn and named, the `marks` expected are named and no other, no axis label
/// reads like `2000.0`, and the file is well-formed XML.
fn check_chart(path: &Path, marks: &[&str]) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the chart is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for name in SERIES_NAMES {
        assert!(
            texts.iter().any(|t| t.starts_with(name)),
            "no legend entry {name:?} in the chart: {texts:?}"
        );
    }
    for mark in MARK_NAMES {
        assert_eq!(
            texts.contains(&mark),
            marks.contains(&mark),
            "mark {mark:?} in the chart: {texts:?}"
        );
    }
    assert!(
        !texts
            .iter()
            .any(|t| t.ends_with(".0") && t.parse::<f64>().is_ok()),
        "integers labelled as integers: {texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("target=")),
        "a title for people, not a config string: {texts:?}"
    );
    // depth (twice), consumers, remainders, producer rate: one line each (plus legend marks).
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(lines >= 5, "{lines} polylines");
}

#[test]
fn demo_autoscales_a_burst_out_and_back_in_and_grades_it() {
    let out = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/burst-short.toml");
    let mut cmd = testkit::command("demo");
    cmd.arg("--autoscale")
        .arg("on")
        .arg("--scenario")
        .arg(&scenario)
        .arg("--scorecard-dir")
        .arg(out.path());
    let mut demo = Proc::spawn("demo", cmd);
    let status = demo.wait(Duration::from_secs(60));
    let stderr = demo.stderr();
    assert!(status.success(), "demo failed: {status}\n{stderr}");
    let summary = demo.summary().expect("a summary line");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert!(summary["consumed"].as_u64() >= Some(600), "{summary}");
    assert!(
        stderr.contains("peak overshoot"),
        "the table on stderr:\n{stderr}"
    );

    let series: Series = read_json(&out.path().join("series.json"));
    let card: Scorecard = read_json(&out.path().join("scorecard.json"));
    let s = &series.samples;
    assert_eq!((series.target, series.band_low), (20, 14));
    assert_eq!(series.changes_s, vec![2.0], "the burst at 2 s");
    assert_eq!(series.lost, Some(0));
    // Consumers plus remainders fill the 4 slots at every decision.
    for x in s {
        assert_eq!(x.consumers + x.remainders, 4, "{x:?}");
    }
    // Out after the burst: more consumers after 2 s than before, up to the maximum.
    let peak = s
        .iter()
        .position(|x| x.consumers == 4)
        .expect("scaled out to max=4");
    assert!(s[peak].t > 2.0, "{:?}", s[peak]);
    // Back in after the drain, while the producer still runs (it stops at 12 s).
    let back_in = s[peak..]
        .iter()
        .find(|x| x.consumers < 2 && x.t < 12.0)
        .unwrap_or_else(|| panic!("never scaled back in: {s:?}"));
    assert!(
        back_in.depth.is_some_and(|d| d <= series.target),
        "{back_in:?}"
    );

    // The scorecard is the pure function of the recorded series (rounded as written)...
    assert_eq!(as_written(&score(&series)), card);
    // ... and its figures are what the raw samples say.
    let peak_depth = s.iter().filter_map(|x| x.depth).max().unwrap();
    assert_eq!(card.peak_overshoot, peak_depth - 20);
    assert!(card.peak_overshoot > 400, "the burst overshot: {card:?}");
    let consumer_seconds: f64 = s
        .windows(2)
        .map(|w| w[0].consumers as f64 * (w[1].t - w[0].t))
        .sum();
    assert!(
        (card.consumer_seconds - consumer_seconds).abs() <= testkit::ROUNDING_SLACK,
        "{} vs {consumer_seconds} from the samples",
        card.consumer_seconds
    );
    let burst = &card.reactions[0];
    assert_eq!(burst.change_s, 2.0);
    assert!(
        burst.scale_out_after_s.is_some_and(|t| t < 2.0),
        "{burst:?}"
    );
    assert!(
        burst.left_band && burst.back_in_band_after_s.is_some(),
        "{burst:?}"
    );
    assert_eq!(card.lost, Some(0));
    // The demo records what the demand is made of, so the run is graded against it too: the burst leaves
    // the engine short of consumers for a while, and the figures are fractions of the run.
    assert_eq!(series.consumer_slots, Some(1));
    assert!(series.work.is_some(), "{:?}", series.work);
    let e = card.elasticity.as_ref().expect("elasticity figures");
    assert!(e.timeshare_under > 0.0 && e.timeshare_under <= 1.0, "{e:?}");
    assert!((0.0..=1.0).contains(&e.timeshare_over), "{e:?}");
    check_chart(&out.path().join("chart.svg"), &["load up"]);

    // The scorecard binary re-grades the file to the same figures.
    let regraded = tempfile::tempdir().unwrap();
    let mut cmd = testkit::command("scorecard");
    cmd.arg("grade")
        .arg(out.path().join("series.json"))
        .arg("--out")
        .arg(regraded.path());
    let mut grade = Proc::spawn("scorecard", cmd);
    assert!(
        grade.wait(Duration::from_secs(20)).success(),
        "{}",
        grade.stderr()
    );
    let printed: Vec<Value> = grade.stats();
    let again: Scorecard = serde_json::from_value(printed[0].clone()).unwrap();
    assert_eq!(again, card);
    check_chart(&regraded.path().join("chart.svg"), &["load up"]);
}

#[test]
fn nsqd_stats_count_the_consumer_processes_running() {
    let nsqd = FakeNsqd::start();
    let url = nsqd.url("jobs", "workers");
    let source: ConsumerSource = format!("nsqd:http://{}/jobs/workers", nsqd.http_addr())
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    workload::tls::ensure_crypto_provider();
    let http = reqwest::Client::new();
    let count = || rt.block_on(source.count(&http)).unwrap_or(usize::MAX);
    let client_ids = || -> Vec<String> {
        let doc: Value = rt
            .block_on(async {
                http.get(format!("http://{}/stats?format=json", nsqd.http_addr()))
                    .send()
                    .await?
                    .json()
                    .await
            })
            .unwrap();
        doc["topics"][0]["channels"][0]["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["client_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(count(), 0);
    let mut consumers: Vec<Proc> = Vec::new();
    for n in 1..=3 {
        let mut cmd = testkit::command("consumer");
        cmd.arg("--queue").arg(&url);
        consumers.push(Proc::spawn("consumer", cmd));
        assert!(
            testkit::eventually(Duration::from_secs(10), || count() == n),
            "{} clients for {n} consumers",
            count()
        );
    }
    // Each client is one of our processes, named as our client identifies itself.
    let mut ids = client_ids();
    ids.sort();
    let mut expected: Vec<String> = consumers
        .iter()
        .map(|p| format!("queue-workload-{}", p.pid()))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    while let Some(mut p) = consumers.pop() {
        p.signal(libc::SIGTERM);
        assert!(p.wait(Duration::from_secs(15)).success(), "{}", p.stderr());
        let n = consumers.len();
        assert!(
            testkit::eventually(Duration::from_secs(10), || count() == n),
            "{} clients for {n} consumers",
            count()
        );
    }
}

#[test]
fn marathon_tasks_running_follow_the_apps_instances() {
    let fake = testkit::fake_marathon::FakeMarathon::start();
    let source: ConsumerSource = format!("marathon:{}/queue/consumer", fake.url())
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    workload::tls::ensure_crypto_provider();
    let http = reqwest::Client::new();
    // No such app yet: Marathon answers 404, which is an error, not zero.
    assert!(rt.block_on(source.count(&http)).is_err());
    for n in [3, 1, 0] {
        let app = serde_json::json!({"id": "/queue/consumer", "args": ["x"], "instances": n,
            "container": {"type": "DOCKER", "docker": {"image": "i"}}});
        let status = rt.block_on(async {
            http.put(format!("{}/v2/apps/queue/consumer?force=true", fake.url()))
                .json(&app)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert!(matches!(status, Ok(200 | 201)), "{status:?}");
        assert!(
            testkit::eventually(Duration::from_secs(10), || {
                rt.block_on(source.count(&http)).ok() == Some(n)
            }),
            "tasksRunning never reached {n}"
        );
    }
}

#[test]
fn scorecard_watch_records_nsqds_depth_and_consumers_as_they_change() {
    let nsqd = FakeNsqd::start();
    let url = nsqd.url("jobs", "workers");
    let out = tempfile::tempdir().unwrap();
    let mut cmd = testkit::command("scorecard");
    cmd.args(["watch", "--queue", &url, "--consumers"])
        .arg(format!("nsqd:http://{}/jobs/workers", nsqd.http_addr()))
        .args([
            "--shape",
            "const:0",
            "--target",
            "5",
            "--duration",
            "4s",
            "--interval",
            "250ms",
        ])
        .arg("--out")
        .arg(out.path());
    let mut watch = Proc::spawn("scorecard", cmd);
    std::thread::sleep(Duration::from_millis(1000));
    let mut consumers: Vec<Proc> = (0..2)
        .map(|_| {
            let mut cmd = testkit::command("consumer");
            cmd.arg("--queue").arg(&url);
            Proc::spawn("consumer", cmd)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut last = consumers.pop().unwrap();
    last.signal(libc::SIGTERM);
    assert!(last.wait(Duration::from_secs(10)).success());
    assert!(
        watch.wait(Duration::from_secs(20)).success(),
        "{}",
        watch.stderr()
    );
    let series: Series = read_json(&out.path().join("series.json"));
    let counts: Vec<usize> = series.samples.iter().map(|s| s.consumers).collect();
    // None at first, both once they subscribed, one after the other stopped, in that order.
    let first_two = counts
        .iter()
        .position(|&n| n == 2)
        .unwrap_or_else(|| panic!("{counts:?}"));
    assert!(
        counts[..first_two].iter().all(|&n| n <= 2) && counts[0] == 0,
        "{counts:?}"
    );
    assert_eq!(counts.last(), Some(&1), "{counts:?}");
    assert!(
        series.samples.iter().all(|s| s.depth == Some(0)),
        "{:?}",
        series.samples
    );
    check_chart(&out.path().join("chart.svg"), &[]);
    drop(consumers);
}

#[test]
fn scorecard_watch_with_nothing_to_read_fails_instead_of_grading() {
    let dir = tempfile::tempdir().unwrap();
    let watch = |queue: &str, source: &str| {
        let mut cmd = testkit::command("scorecard");
        cmd.args(["watch", "--queue", queue, "--consumers", source])
            .args(["--shape", "const:10", "--target", "5"])
            .args(["--duration", "1s", "--interval", "250ms", "--out"])
            .arg(dir.path().join("out"));
        let mut p = Proc::spawn("scorecard", cmd);
        let status = p.wait(Duration::from_secs(20));
        (status, p.stderr(), p.lines().join("\n"))
    };

    // A queue file that is not there is a mistyped path: refused, and not created.
    let missing = dir.path().join("none.db");
    let (status, err, out) = watch(
        &format!("sqlite:{}", missing.display()),
        "nsqd:http://127.0.0.1:9/t/c",
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no queue at"), "{err}");
    assert!(!missing.exists(), "watching created the queue file");
    assert!(
        out.is_empty(),
        "no scorecard for a run that was never seen: {out}"
    );

    // A consumer-count source that never answers (port 9: discard, closed here): no grade, exit 1, and the
    // password in the source URL is never printed.
    let nsqd = FakeNsqd::start();
    let (status, err, out) = watch(
        &nsqd.url("jobs", "workers"),
        "marathon:http://ops:hunter2@127.0.0.1:9/app",
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("could not read the consumer count"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(out.is_empty(), "{out}");

    // A Prometheus that is not there: the warning says why (the cause under reqwest's "error sending
    // request"), on one line, without the password.
    let (status, err, _) = watch(
        &nsqd.url("jobs", "workers"),
        "prometheus:http://ops:hunter2@127.0.0.1:9?query=up",
    );
    assert_eq!(status.code(), Some(1), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("cannot read the consumer count"))
        .unwrap_or_else(|| panic!("a warning: {err}"));
    assert!(warning.contains("onnection refused"), "{warning}");
    assert!(!err.contains("hunter2"), "{err}");
    // Once, not once a poll: the 1 s watch polled it 4 times or more.
    assert_eq!(
        err.matches("cannot read the consumer count").count(),
        1,
        "{err}"
    );
}

/// `scorecard watch --queue` lists every backend of this build, from the queue registry (Azure was missing
/// from the roles' lists).
#[test]
fn watch_help_lists_every_scheme_of_this_build() {
    for flag in ["-h", "--help"] {
        let mut cmd = testkit::command("scorecard");
        cmd.args(["watch", flag]);
        let mut p = Proc::spawn("scorecard", cmd);
        assert_eq!(p.wait(Duration::from_secs(10)).code(), Some(0));
        let out = p.lines().join("\n");
        for form in [
            "sqlite:PATH",
            "nsq://HOST",
            "azure://ACCOUNT/QUEUE",
            "nats://HOST",
        ] {
            assert!(out.contains(form), "{flag} should name {form}: {out}");
        }
    }
}

#[test]
fn demo_runs_the_keda_policy_from_a_scenario_and_says_so() {
    let out = tempfile::tempdir().unwrap();
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/burst-short-keda.toml");
    let mut cmd = testkit::command("demo");
    cmd.arg("--autoscale")
        .arg("on")
        .arg("--scenario")
        .arg(&scenario)
        .arg("--scorecard-dir")
        .arg(out.path());
    let mut demo = Proc::spawn("demo", cmd);
    let status = demo.wait(Duration::from_secs(60));
    let stderr = demo.stderr();
    assert!(status.success(), "demo failed: {status}\n{stderr}");
    let summary = demo.summary().expect("a summary line");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert!(summary["consumed"].as_u64() >= Some(600), "{summary}");

    // The series, the scorecard, its table and the chart say which policy ran, with what.
    let series: Series = read_json(&out.path().join("series.json"));
    let card: Scorecard = read_json(&out.path().join("scorecard.json"));
    assert_eq!(series.policy.as_deref(), Some("keda"));
    // The scenario's work, stamped by the producer, is what the demand is worked out from (the demo's own
    // default, 25 ms, was recorded before).
    assert_eq!(series.work.as_deref(), Some("sleep:10ms"));
    let settings = series.settings.clone().unwrap_or_default();
    for s in [
        "policy=keda",
        "polling=1s",
        "cooldown=3s",
        "start-delay=1s",
        "scaler=azure",
    ] {
        assert!(settings.contains(s), "{s} not in {settings}");
    }
    assert_eq!(
        (card.policy.as_ref(), card.settings.as_ref()),
        (series.policy.as_ref(), series.settings.as_ref())
    );
    assert!(
        stderr.contains(&format!("  {:<26} {settings}", "policy")),
        "the table's policy line:\n{stderr}"
    );
    let chart = std::fs::read_to_string(out.path().join("chart.svg")).unwrap();
    assert!(
        chart.contains("local autoscaler (keda policy)"),
        "the chart's title"
    );
    check_chart(&out.path().join("chart.svg"), &["load up"]);
    assert_eq!(as_written(&score(&series)), card);
    assert_eq!(card.lost, Some(0));

    let s = &series.samples;
    // Out after the burst, to max=4.
    let peak = s
        .iter()
        .position(|x| x.consumers == 4)
        .unwrap_or_else(|| panic!("never scaled out to max=4: {s:?}"));
    assert!(s[peak].t > 2.0, "{:?}", s[peak]);
    // Remainders give up their slots at once, consumers take 1 s to be ready: for a while after each
    // scale-out fewer than the 4 slots are running, and never more.
    for x in s {
        assert!(x.consumers + x.remainders <= 4, "{x:?}");
    }
    assert!(
        s.iter().any(|x| x.consumers + x.remainders < 4),
        "no consumer was ever starting: {s:?}"
    );
    // Back in once the burst is drained (3 s of stabilisation), while the producer still runs.
    assert!(
        s[peak..].iter().any(|x| x.consumers < 4 && x.t < 12.0),
        "never scaled back in: {s:?}"
    );
}

//! The scorecard's Prometheus source against a real Prometheus server (Debian's `prometheus`), scraping real
//! consumers' `/metrics` every 500 ms: the count it reads follows the consumers as they start and stop (SIGTERM
//! and SIGKILL), its errors are one clear line, and `scorecard watch` records that count and the engine's
//! decision beside it and grades each. Build the binaries first: `cargo build --workspace --bins`.

use std::path::Path;
use std::time::Duration;

use judge::scorecard::sources::{ConsumerSource, SourceError};
use judge::scorecard::{Scorecard, Series};
use testkit::Proc;
use testkit::prometheus::{Prometheus, free_port};

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn prometheus_counts_the_consumers_running_as_they_start_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let queue = testkit::sqlite_url(dir.path());
    // The queue exists before the watch opens it (watch never creates one).
    assert_eq!(testkit::depth(&queue).total(), 0);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let targets: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let prom = Prometheus::start("consumers", &targets, "500ms");
    let running = format!("prometheus:{}?query=count(mw_consumer_slots)", prom.url());
    // A stand-in for an engine's decision that Prometheus can compute here: the targets configured (3), as a
    // Deployment's spec.replicas would be while its pods come up one by one.
    let decided = format!(
        r#"prometheus:{}/?query=count(up{{job="consumers"}})"#,
        prom.url()
    );
    let source: ConsumerSource = running.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    workload::tls::ensure_crypto_provider();
    let http = reqwest::Client::new();
    let count = |s: &ConsumerSource| rt.block_on(s.count(&http));
    // Each count holds for two of the watch's 250 ms intervals, so the watch records every step too.
    let expect = |n: usize| {
        let mut last = None;
        let ok = testkit::eventually(Duration::from_secs(15), || {
            let got = count(&source).ok();
            last = got;
            got == Some(n)
        });
        assert!(
            ok,
            "Prometheus counts {last:?} for {n} consumers\n{}",
            prom.stderr()
        );
        std::thread::sleep(Duration::from_millis(600));
    };

    let out = tempfile::tempdir().unwrap();
    let mut cmd = testkit::command("scorecard");
    cmd.args(["watch", "--queue", &queue, "--consumers", &running])
        .args(["--decided", &decided])
        .args(["--shape", "const:50", "--target", "5"])
        .args(["--work", "sleep:20ms", "--consumer-slots", "1"])
        .args(["--duration", "120s", "--interval", "250ms", "--out"])
        .arg(out.path());
    let mut watch = Proc::spawn("scorecard", cmd);

    expect(0);
    let mut consumers: Vec<Proc> = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        let mut cmd = testkit::command("consumer");
        cmd.args(["--queue", &queue, "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"));
        consumers.push(Proc::spawn("consumer", cmd));
        expect(n + 1);
        if n == 1 {
            // Two series and no aggregation: an error that names them, not their sum.
            let bare: ConsumerSource = format!("prometheus:{}?query=mw_consumer_slots", prom.url())
                .parse()
                .unwrap();
            let e = count(&bare).unwrap_err();
            assert!(matches!(e, SourceError::Prometheus { .. }), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("returned 2 series") && text.contains("sum(…)"),
                "{text}"
            );
            assert!(!text.contains('\n'), "{text}");
        }
    }
    // Bad PromQL: Prometheus' own error, on one line, with the URL it asked.
    let broken: ConsumerSource = format!("prometheus:{}?query=count(mw_consumer_slots", prom.url())
        .parse()
        .unwrap();
    let text = count(&broken).unwrap_err().to_string();
    assert!(
        text.contains("/api/v1/query") && text.contains("bad_data") && !text.contains('\n'),
        "{text}"
    );
    // Stopped gracefully, then killed outright: either way the count goes down.
    let mut last = consumers.pop().unwrap();
    last.signal(libc::SIGTERM);
    assert!(
        last.wait(Duration::from_secs(15)).success(),
        "{}",
        last.stderr()
    );
    expect(2);
    let mut killed = consumers.pop().unwrap();
    killed.signal(libc::SIGKILL);
    killed.wait(Duration::from_secs(5));
    expect(1);
    let mut first = consumers.pop().unwrap();
    first.signal(libc::SIGTERM);
    assert!(
        first.wait(Duration::from_secs(15)).success(),
        "{}",
        first.stderr()
    );
    expect(0);
    watch.signal(libc::SIGTERM);
    let status = watch.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", watch.stderr());

    let series: Series = read_json(&out.path().join("series.json"));
    let card: Scorecard = read_json(&out.path().join("scorecard.json"));
    let mut steps: Vec<usize> = series.samples.iter().map(|s| s.consumers).collect();
    steps.dedup();
    assert_eq!(steps, [0, 1, 2, 3, 2, 1, 0], "{:?}", series.samples);
    // The decision was read at every poll: 0 before Prometheus' first scrape (no `up` series yet), then 3
    // once it had tried every target, and 3 from then on.
    let decisions: Vec<usize> = series
        .samples
        .iter()
        .map(|s| s.decided.expect("read at every poll"))
        .collect();
    let three = decisions.iter().position(|&d| d == 3).expect("3 targets");
    assert!(decisions[three..].iter().all(|&d| d == 3), "{decisions:?}");
    // Each is graded: the consumers running reached 3, the decision rose to 3 and held.
    assert_eq!(card.max_consumers, 3);
    let d = card.decided.as_ref().expect("the decision graded");
    assert_eq!((d.max_consumers, d.direction_changes), (3, 0));
    assert!(card.elasticity.is_some(), "{card:?}");
    // The decision against a demand of 1 throughout (50 msgs/s × 20 ms over 1 slot), recomputed from the
    // samples: a_O is the mean of (decided − 1)⁺, each sample held until the next.
    let e = d.elasticity.as_ref().expect("graded against the demand");
    let s = &series.samples;
    let idle: f64 = s
        .windows(2)
        .map(|w| (w[0].decided.unwrap() as f64 - 1.0).max(0.0) * (w[1].t - w[0].t))
        .sum();
    let span = s.last().unwrap().t - s[0].t;
    assert!(
        (e.accuracy_over - idle / span).abs() <= testkit::ROUNDING_SLACK,
        "{} from the samples: {e:?}",
        idle / span
    );
    let missing: f64 = s
        .windows(2)
        .filter(|w| w[0].decided == Some(0))
        .map(|w| w[1].t - w[0].t)
        .sum();
    assert!(
        (e.accuracy_under - missing / span).abs() <= testkit::ROUNDING_SLACK,
        "{} from the samples: {e:?}",
        missing / span
    );
    assert!(e.accuracy_over > 0.0, "{e:?}");
    assert!(
        watch.stderr().contains("engine's decision"),
        "{}",
        watch.stderr()
    );
}

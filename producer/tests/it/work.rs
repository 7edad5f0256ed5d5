//! `producer --work DIST` draws each message's work and stamps the concrete value into its envelope, so every
//! consumer does the same work for a message. Checked by reading the envelopes back off a real SQLite queue.

use std::time::Duration;

use testkit::{Proc, command, sqlite_url, u};
use workload::envelope::Envelope;
use workload::work::Work;

/// Runs a producer with `--work spec` for `count` messages, unpaced, and returns each message's work, in
/// sequence order.
fn stamped(spec: &str, seed: &str, count: u64) -> Vec<Work> {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut cmd = command("producer");
    cmd.args([
        "--queue",
        &url,
        "--rate",
        "0",
        "--count",
        &count.to_string(),
    ])
    .args(["--work", spec, "--seed", seed, "--producer-id", "1"]);
    let mut p = Proc::spawn("producer", cmd);
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().unwrap(), "sent"), count);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut envelopes: Vec<Envelope> = runtime.block_on(async {
        let queue = queues::open(&url).await.unwrap();
        let mut all = Vec::new();
        while (all.len() as u64) < count {
            let got = queue
                .receive(1000, Duration::from_secs(60), Duration::from_millis(200))
                .await
                .unwrap();
            assert!(!got.is_empty(), "the queue ran dry at {}", all.len());
            all.extend(got.iter().map(|d| Envelope::decode(&d.body).unwrap()));
        }
        all
    });
    envelopes.sort_by_key(|e| e.seq);
    envelopes
        .into_iter()
        .map(|e| e.work.expect("a stamped work"))
        .collect()
}

fn millis(w: &Work) -> f64 {
    match w {
        Work::Sleep(d) => d.as_secs_f64() * 1e3,
        other => panic!("expected sleep work, got {other:?}"),
    }
}

#[test]
fn each_message_carries_its_own_draw_within_the_cap() {
    let works = stamped("sleep:uniform(10ms..20ms)", "11", 2000);
    let ms: Vec<f64> = works.iter().map(millis).collect();
    assert!(ms.iter().all(|m| (10.0..=20.0).contains(m)), "{ms:?}");
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    // 2,000 draws of U(10, 20): sd of the mean 0.065 ms.
    assert!((mean - 15.0).abs() < 0.4, "mean {mean}");
    let mut distinct = ms.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(
        distinct.len() > 1000,
        "only {} distinct works",
        distinct.len()
    );

    let capped = stamped("sleep:exp(50ms,max=60ms)", "11", 500);
    assert!(capped.iter().map(millis).all(|m| m <= 60.0));
}

#[test]
fn the_seed_repeats_the_draws() {
    let a = stamped("sleep:exp(5ms)", "3", 300);
    assert_eq!(a, stamped("sleep:exp(5ms)", "3", 300));
    assert_ne!(a, stamped("sleep:exp(5ms)", "4", 300));
}

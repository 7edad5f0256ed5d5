//! `consumer --work DIST` draws a work per message when the message carries none, within the cap.
//!
//! Observed through `busy_s` (time spent working messages): with one message in flight at a time, it is the
//! sum of the drawn sleeps plus each sleep's timer overshoot (tokio's timer rounds up to the next 1 ms tick).

use std::time::Duration;

use testkit::{Proc, command, sqlite_url, u};

const MESSAGES: u64 = 300;

/// Fills a fresh queue with messages that carry no work, consumes them one at a time with `--work spec`, and
/// returns the consumer's busy time in seconds.
fn busy_s(spec: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let n = MESSAGES.to_string();
    let mut producer = command("producer");
    producer.args(["--queue", &url, "--rate", "0", "--count", &n]);
    let mut p = Proc::spawn("producer", producer);
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());

    let mut consumer = command("consumer");
    consumer
        .args(["--queue", &url, "--work", spec, "--seed", "5"])
        .args(["--max-in-flight", "1", "--count", &n]);
    let mut c = Proc::spawn("consumer", consumer);
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    let summary = c.summary().expect("consumer summary");
    assert_eq!(u(&summary, "acked"), MESSAGES);
    summary["busy_s"].as_f64().expect("busy_s")
}

#[test]
fn messages_without_work_get_a_fresh_draw_each() {
    // Mean of U(2 ms, 10 ms) is 6 ms: 1.8 s in all, plus each sleep's timer overshoot: ~1 ms on a quiet
    // machine, 2.4 ms a message seen at load 6.7 (a benchmark beside the tests), so up to 3.5 ms allowed.
    let busy = busy_s("sleep:uniform(2ms..10ms)");
    let n = MESSAGES as f64;
    assert!(
        (n * 0.0055..n * 0.0095).contains(&busy),
        "busy {busy}s for {n} draws"
    );
    // The same distribution capped at 3 ms: no draw above it.
    let capped = busy_s("sleep:uniform(2ms..10ms,max=3ms)");
    assert!(capped < n * 0.005, "busy {capped}s with a 3 ms cap");
}

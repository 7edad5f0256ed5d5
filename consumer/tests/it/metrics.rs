//! `/metrics` on the real producer, consumer and remainder binaries: scraped mid-run, parsed by the
//! Prometheus project's own Python parser (the OpenMetrics one, strict: `# EOF`, types, units, `_total`), and
//! checked against the JSON summary each process writes at exit. Plus the failures: a port in use (exit 1
//! before the run starts) and a bad address (exit 2).
//!
//! The parser comes from the test venv (`prometheus-client` in scripts/requirements-test.txt), found through
//! TEST_VENV as the other tool-driven tests do; a missing venv fails the test, never skips it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::fake_nsqd::FakeNsqd;
use testkit::{Proc, command, depth, eventually, sqlite_url, u};

/// Parses an exposition with `prometheus_client.openmetrics.parser` and prints every sample as JSON.
const PARSE_PY: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append({"family": f.name, "type": f.type, "unit": f.unit, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// One sample as the Python parser saw it.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    unit: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed by the parser that is not ours.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The single sample called `name` (with any `role`/`backend` labels); panics when absent or repeated.
    fn get(&self, name: &str) -> f64 {
        let found: Vec<&Sample> = self.0.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "exactly one sample {name}: {found:?}");
        found[0].value
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }

    fn family(&self, family: &str) -> &Sample {
        self.0
            .iter()
            .find(|s| s.family == family)
            .unwrap_or_else(|| panic!("no family {family}"))
    }
}

fn python() -> PathBuf {
    let venv = std::env::var_os("TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv"));
    let path = venv.join("bin/python");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test (it builds the venv), or: python3 -m venv target/test-venv && \
         target/test-venv/bin/pip install -r scripts/requirements-test.txt (TEST_VENV may point elsewhere)",
        path.display()
    );
    path
}

/// Parses `text` with the Python OpenMetrics parser; panics with its error when it refuses the text.
fn parse(text: &str) -> Scrape {
    let mut child = Command::new(python())
        .args(["-c", PARSE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap().into(),
            kind: s["type"].as_str().unwrap().into(),
            unit: s["unit"].as_str().unwrap().into(),
            name: s["name"].as_str().unwrap().into(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect();
    Scrape(samples)
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` over HTTP/1.1; returns the status code, the content type and the body. `None` when the
/// endpoint is not (yet) listening.
fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_string();
    Some((status, ctype, body.to_string()))
}

/// Scrapes `/metrics` (waiting up to 10 s for the endpoint) and parses it.
fn scrape(port: u16) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((status, ctype, body)) = get(port, "/metrics") {
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                ctype,
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            );
            return parse(&body);
        }
        assert!(Instant::now() < deadline, "no /metrics on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn with_metrics(mut cmd: Command, port: u16) -> Command {
    cmd.args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
    cmd
}

/// Every sample has the role label and the backend where given, and no other label but a histogram's `le`:
/// so nothing of the queue URL (which can carry keys) is exported.
fn assert_labels(s: &Scrape, role: &str, backend: Option<&str>) {
    assert!(!s.0.is_empty());
    for sample in &s.0 {
        let label = |k: &str| sample.labels.get(k).map(String::as_str);
        assert_eq!(label("role"), Some(role), "{sample:?}");
        assert_eq!(label("backend"), backend, "{sample:?}");
        assert!(
            sample
                .labels
                .keys()
                .all(|k| ["role", "backend", "le"].contains(&k.as_str())),
            "{sample:?}"
        );
    }
}

#[test]
fn consumer_metrics_parse_mid_run_and_agree_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let n = 3000;
    let mut p = command("producer");
    p.args([
        "--queue",
        &url,
        "--count",
        &n.to_string(),
        "--rate",
        "20000",
    ]);
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().unwrap(), "sent"), n);

    let port = free_port();
    let mut c = command("consumer");
    c.args([
        "--queue",
        &url,
        "--work",
        "sleep:1ms",
        "--max-in-flight",
        "20",
    ])
    .args(["--stats-interval", "100ms"]);
    let mut c = Proc::spawn("consumer", with_metrics(c, port));

    // Mid-run: some acked, not all.
    c.wait_for_line(Duration::from_secs(20), |v| {
        v["acked"].as_u64().unwrap_or(0) > 0
    });
    let mid = scrape(port);
    assert_labels(&mid, "consumer", Some("sqlite"));
    let acked_mid = mid.get("mw_messages_acked_total");
    assert!(acked_mid > 0.0 && acked_mid <= n as f64, "{acked_mid}");
    for (family, kind, unit) in [
        ("mw_messages_acked", "counter", ""),
        ("mw_end_to_end_seconds", "histogram", "seconds"),
        ("mw_work_seconds", "histogram", "seconds"),
        ("mw_consumer_busy_seconds", "counter", "seconds"),
        ("mw_consumer_in_flight_messages", "gauge", ""),
    ] {
        let s = mid.family(family);
        assert_eq!((s.kind.as_str(), s.unit.as_str()), (kind, unit), "{family}");
    }

    // Done: every message acked and the queue empty, so nothing moves between the last scrape and the stop.
    assert!(eventually(Duration::from_secs(30), || depth(&url).total() == 0));
    c.wait_for_line(Duration::from_secs(10), |v| {
        u(v, "acked") == n && u(v, "in_flight") == 0
    });
    // The depth gauge is polled every stats interval: wait for a poll after the drain.
    let end = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            scrape(port)
        })
        .find(|s| s.has("mw_queue_visible_messages") && s.get("mw_queue_visible_messages") == 0.0)
        .expect("the consumer's depth gauge reads 0 once the queue is drained");
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(15)).success(), "{}", c.stderr());
    let summary = c.summary().expect("consumer summary");

    for field in [
        "received",
        "acked",
        "released",
        "foreign",
        "redelivered",
        "errors",
        "throttled",
        "failed",
        "poison",
        "unreleased",
    ] {
        let name = match field {
            "errors" => "mw_queue_errors_total".to_string(),
            "throttled" => "mw_queue_throttled_total".to_string(),
            f => format!("mw_messages_{f}_total"),
        };
        assert_eq!(
            end.get(&name),
            u(&summary, field) as f64,
            "{name} vs summary {field}"
        );
    }
    assert_eq!(
        end.get("mw_acks_lease_lost_total"),
        u(&summary, "lease_lost") as f64
    );
    assert_eq!(end.get("mw_consumer_in_flight_messages"), 0.0);
    assert_eq!(end.get("mw_consumer_slots"), u(&summary, "slots") as f64);
    assert_eq!(
        end.get("mw_end_to_end_seconds_count"),
        n as f64,
        "one e2e per acked message"
    );
    assert_eq!(
        end.get("mw_work_seconds_count"),
        n as f64,
        "one work time per message"
    );
    let busy = end.get("mw_consumer_busy_seconds_total");
    let busy_s = summary["busy_s"].as_f64().unwrap();
    assert!(
        (busy / 20.0 - busy_s).abs() < 1e-5,
        "busy {busy} s over 20 slots vs busy_s {busy_s}"
    );
    // 1 ms of sleep per message: the histogram's sum is at least that.
    assert!(end.get("mw_work_seconds_sum") >= n as f64 * 0.001);
}

#[test]
fn producer_metrics_agree_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let port = free_port();
    // One message every 2 s: once a scrape sees a new one, the next is far enough off that the last scrape
    // and the summary see the same count.
    let mut p = command("producer");
    p.args([
        "--queue",
        &url,
        "--rate",
        "0.5",
        "--stats-interval",
        "100ms",
    ]);
    let mut p = Proc::spawn("producer", with_metrics(p, port));
    let first = scrape(port);
    assert_labels(&first, "producer", Some("sqlite"));
    let sent0 = first.get("mw_messages_sent_total");
    let deadline = Instant::now() + Duration::from_secs(15);
    let end = loop {
        let s = scrape(port);
        if s.get("mw_messages_sent_total") > sent0 {
            break scrape(port);
        }
        assert!(Instant::now() < deadline, "no message sent within 15 s");
        std::thread::sleep(Duration::from_millis(30));
    };
    p.signal(libc::SIGTERM);
    assert!(p.wait(Duration::from_secs(10)).success(), "{}", p.stderr());
    let summary = p.summary().expect("producer summary");

    let sent = u(&summary, "sent");
    assert!(sent >= 1);
    assert_eq!(end.get("mw_messages_sent_total"), sent as f64);
    assert_eq!(
        end.get("mw_messages_attempted_total"),
        u(&summary, "seq_end") as f64
    );
    assert_eq!(
        end.get("mw_messages_unconfirmed_total"),
        u(&summary, "unconfirmed") as f64
    );
    assert_eq!(
        end.get("mw_publish_errors_total"),
        u(&summary, "errors") as f64
    );
    assert_eq!(
        end.get("mw_publish_throttled_total"),
        u(&summary, "throttled") as f64
    );
    assert_eq!(
        end.get("mw_lateness_seconds_count"),
        sent as f64,
        "one lateness per sent message"
    );
    let s = end.family("mw_lateness_seconds");
    assert_eq!((s.kind.as_str(), s.unit.as_str()), ("histogram", "seconds"));
    // No consumer: the producer sees its messages waiting (the gauge, polled every 100 ms, may miss the last).
    let visible = end.get("mw_queue_visible_messages") as u64;
    assert!(
        visible + 1 >= sent && visible <= sent,
        "visible {visible}, sent {sent}"
    );
}

#[test]
fn remainder_exports_its_units() {
    let port = free_port();
    let mut r = command("remainder");
    r.args(["--threads", "1", "--stats-interval", "100ms"]);
    let mut r = Proc::spawn("remainder", with_metrics(r, port));
    r.wait_for_line(Duration::from_secs(10), |v| u(v, "units") > 0);
    let s = scrape(port);
    assert_labels(&s, "remainder", None);
    let units = s.get("mw_remainder_units_total");
    assert!(units > 0.0);
    assert_eq!(s.get("mw_remainder_threads"), 1.0);
    assert!(s.get("mw_remainder_unit_seconds") > 0.0);
    r.signal(libc::SIGTERM);
    assert!(r.wait(Duration::from_secs(10)).success(), "{}", r.stderr());
    // The units keep coming until the stop: the summary counts at least what the scrape saw.
    assert!(u(&r.summary().unwrap(), "units") as f64 >= units);
}

#[test]
fn consumer_on_the_fake_nsqd_exports_nsq_depth() {
    let fake = FakeNsqd::start();
    let url = fake.url("t", "c");
    let port = free_port();
    let mut c = command("consumer");
    c.args([
        "--queue",
        &url,
        "--work",
        "none",
        "--stats-interval",
        "100ms",
    ]);
    let mut c = Proc::spawn("consumer", with_metrics(c, port));
    let mut p = command("producer");
    p.args(["--queue", &url, "--count", "200", "--rate", "2000"]);
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(20)).success(), "{}", p.stderr());
    c.wait_for_line(Duration::from_secs(20), |v| u(v, "acked") == 200);
    let s = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            scrape(port)
        })
        .find(|s| s.has("mw_queue_visible_messages") && s.get("mw_queue_visible_messages") == 0.0)
        .expect("the depth gauge reads nsqd's empty channel");
    assert_labels(&s, "consumer", Some("nsq"));
    assert_eq!(s.get("mw_messages_acked_total"), 200.0);
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(15)).success(), "{}", c.stderr());
    assert_eq!(u(&c.summary().unwrap(), "acked"), 200);
}

#[test]
fn other_paths_are_404() {
    let port = free_port();
    let mut r = command("remainder");
    r.args(["--threads", "1", "--mode", "sleep"]);
    let _r = Proc::spawn("remainder", with_metrics(r, port));
    scrape(port);
    let (status, _, _) = get(port, "/").unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = get(port, "/metrics/x").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn a_port_in_use_fails_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (name, args) in [
        ("producer", vec!["--queue", url.as_str(), "--count", "10"]),
        ("consumer", vec!["--queue", url.as_str()]),
        ("remainder", vec!["--threads", "1"]),
    ] {
        let mut cmd = command(name);
        cmd.args(&args).args(["--metrics-addr", &addr]);
        let mut proc = Proc::spawn(name, cmd);
        let status = proc.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{name}: {}", proc.stderr());
        let err = proc.stderr();
        assert!(
            err.contains(&format!("cannot serve metrics on {addr}"))
                && err.contains("--metrics-addr"),
            "{name}: {err}"
        );
        assert!(
            proc.lines().is_empty(),
            "{name} started its run: {:?}",
            proc.lines()
        );
    }
    assert!(!dir.path().join("queue.db").exists(), "no queue was opened");
}

#[test]
fn a_bad_address_is_a_usage_error() {
    for (name, bad) in [
        ("producer", "nonsense"),
        ("consumer", "127.0.0.1"),
        ("remainder", "host:99999"),
    ] {
        let mut cmd = command(name);
        if name != "remainder" {
            cmd.args(["--queue", "sqlite:/nonexistent/q.db"]);
        }
        cmd.args(["--metrics-addr", bad]);
        let mut proc = Proc::spawn(name, cmd);
        let status = proc.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{name} {bad}: {}", proc.stderr());
        assert!(
            proc.stderr().contains("expected HOST:PORT"),
            "{name}: {}",
            proc.stderr()
        );
    }
    // The environment variable is checked the same way.
    let mut cmd = command("remainder");
    cmd.env("METRICS_ADDR", ":port");
    let mut proc = Proc::spawn("remainder", cmd);
    assert_eq!(
        proc.wait(Duration::from_secs(10)).code(),
        Some(2),
        "{}",
        proc.stderr()
    );
}

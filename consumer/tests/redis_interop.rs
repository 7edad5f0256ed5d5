//! Interoperability with the Redis project's Python client (`redis` from PyPI, pinned and installed by
//! scripts/test into target/redis-py): what our producer sends, Python reads in our consumer group and
//! decodes; Python's envelopes are consumed by ours; Python's plain entries are counted as foreign.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::redis::RedisServer;
use testkit::{Proc, command, ledger_entries, tally, u};
use workload::envelope::Envelope;

fn python() -> PathBuf {
    testkit::venv_python("REDIS_PY_VENV", "redis-py", "Python's redis")
}

fn script(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/redis_interop.py"
        ))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn python_redis_and_ours_understand_each_other() {
    let server = RedisServer::start();
    let port = server.port().to_string();

    // Ours → Python, which reads in the group our consumers use and sees a first delivery.
    let url = server.url("to-python", "");
    let mut p = command("producer");
    p.args([
        "--queue", &url, "--count", "10", "--rate", "0", "--run-id", "abc",
    ])
    .args(["--size", "300"]);
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(20)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().unwrap(), "sent"), 10);
    let got: Vec<(u64, serde_json::Map<String, serde_json::Value>)> =
        serde_json::from_str(&script(&["read", &port, "to-python", "10"])).expect("json");
    assert_eq!(got.len(), 10);
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|(count, fields)| {
            assert_eq!(*count, 1);
            let body = fields["body"].as_str().expect("a body field");
            let e = Envelope::decode(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body:?}"));
            assert_eq!(e.run_id, 0xabc);
            assert!(body.len() >= 300, "padding survived");
            e.seq
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(
        server.figures("to-python", "to-python"),
        (10, 0, Some(0)),
        "Python acked all"
    );

    // Python → ours: its envelopes are consumed, its plain entries are foreign (acked, not lost, not counted).
    script(&["send", &port, "from-python", "def", "10"]);
    script(&["plain", &port, "from-python", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = command("consumer");
    c.args([
        "--queue",
        &server.url("from-python", ""),
        "--count",
        "14",
        "--ledger",
    ])
    .arg(dir.path().join("c.ledger"));
    let mut c = Proc::spawn("consumer", c);
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    let s = c.summary().unwrap();
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (14, 4), "{s}");
    assert_eq!(tally(&ledger_entries(dir.path()), 10), (10, 0, 0, 0));
    assert_eq!(
        server.figures("from-python", "from-python"),
        (0, 0, Some(0))
    );
}

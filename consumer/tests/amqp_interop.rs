//! Interoperability with pika, the Python AMQP 0-9-1 client of RabbitMQ's own tutorials (pinned, installed by
//! scripts/test into target/pika-py): what our producer publishes, pika consumes and decodes; what pika
//! publishes with publisher confirms (our envelope, and plain bodies), our consumer consumes, the envelopes
//! audited by `audit` against pika's confirmed count, the plain ones counted as foreign.
//!
//! One RabbitMQ node for the file (it takes seconds to start), each direction on its own queue.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::amqp::Rabbit;
use testkit::{Proc, command, ledger_entries, tally, u};
use workload::envelope::Envelope;

fn python() -> PathBuf {
    testkit::venv_python("PIKA_PY_VENV", "pika-py", "Python's pika")
}

fn script(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/amqp_interop.py"
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
fn pika_and_ours_understand_each_other() {
    let r = Rabbit::start();
    let port = r.port().to_string();

    // Ours → pika: every message our producer counted as sent, pika consumes once and decodes.
    let url = r.url("to-python", "");
    let mut p = command("producer");
    p.args([
        "--queue", &url, "--count", "50", "--rate", "0", "--run-id", "abc", "--size", "300",
    ])
    .env_remove("AMQP_PASSWORD");
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().unwrap(), "sent"), 50);
    let got: Vec<(Option<u64>, bool, String)> =
        serde_json::from_str(&script(&["read", &port, "to-python", "50"])).expect("json");
    assert_eq!(got.len(), 50);
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|(count, redelivered, body)| {
            // A first delivery: no x-delivery-count header yet, not flagged redelivered.
            assert_eq!((*count, *redelivered), (None, false), "{body:?}");
            let e = Envelope::decode(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body:?}"));
            assert_eq!(e.run_id, 0xabc);
            assert!(body.len() >= 300, "padding survived");
            e.seq
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    assert_eq!(
        testkit::amqp::depth(&url).visible,
        0,
        "pika acked everything"
    );

    // pika → ours: its confirmed envelopes are consumed and audited, its plain bodies are foreign (acked,
    // not lost, not counted as ours).
    let dir = tempfile::tempdir().unwrap();
    let summary = script(&["send", &port, "from-python", "def", "200"]);
    std::fs::write(dir.path().join("pika.out"), &summary).unwrap();
    script(&["plain", &port, "from-python", "7"]);
    let from = r.url("from-python", "");
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).unwrap();
    let mut c = command("consumer");
    c.args(["--queue", &from, "--count", "207", "--work", "none"])
        .args(["--max-in-flight", "32", "--ledger"])
        .arg(ledgers.join("c.ledger"))
        .env_remove("AMQP_PASSWORD");
    let mut c = Proc::spawn("consumer", c);
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    let s = c.summary().unwrap();
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (207, 7), "{s}");
    assert_eq!(tally(&ledger_entries(&ledgers), 200), (200, 0, 0, 0));
    let mut audit = command("audit");
    audit
        .arg("--producer")
        .arg(dir.path().join("pika.out"))
        .arg("--ledger")
        .arg(&ledgers);
    let mut a = Proc::spawn("audit", audit);
    assert!(a.wait(Duration::from_secs(20)).success(), "{}", a.stderr());
    let verdict = a.summary().expect("the audit's line");
    assert_eq!(
        (
            u(&verdict, "produced"),
            u(&verdict, "consumed"),
            u(&verdict, "lost"),
            u(&verdict, "duplicates")
        ),
        (200, 200, 0, 0),
        "{verdict}"
    );
    let d = testkit::amqp::depth(&from);
    assert_eq!(d.visible, 0, "everything pika sent was taken: {d:?}");
}

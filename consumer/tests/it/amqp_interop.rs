//! Interoperability with pika, the Python AMQP 0-9-1 client of RabbitMQ's own tutorials (pinned, installed by
//! scripts/test into target/pika-py): what our producer publishes, pika consumes and decodes; what pika
//! publishes with publisher confirms (our envelope, and plain bodies), our consumer consumes, the envelopes
//! audited by `audit` against pika's confirmed count, the plain ones counted as foreign.
//!
//! One RabbitMQ node for the file (it takes seconds to start), each direction on its own queue.

use testkit::amqp::{self, Rabbit};
use testkit::{delivery, interop, ledger_entries, tally, u};

fn script(args: &[&str]) -> String {
    interop::Python::new(
        "PIKA_PY_VENV",
        "pika-py",
        "Python's pika",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/amqp_interop.py"),
    )
    .run(args)
}

#[test]
fn pika_and_ours_understand_each_other() {
    let r = Rabbit::start();
    let port = r.port().to_string();

    // Ours → pika: every message our producer counted as sent, pika consumes once and decodes.
    let url = r.url("to-python", "");
    interop::send_ours(&url, 50, amqp::clear_credentials);
    let got: Vec<(Option<u64>, bool, String)> =
        serde_json::from_str(&script(&["read", &port, "to-python", "50"])).expect("json");
    let bodies: Vec<&str> = got
        .iter()
        .map(|(count, redelivered, body)| {
            // A first delivery: no x-delivery-count header yet, not flagged redelivered.
            assert_eq!((*count, *redelivered), (None, false), "{body:?}");
            body.as_str()
        })
        .collect();
    interop::assert_ours(&bodies, 50);
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
    let s = interop::consume(
        &from,
        207,
        amqp::clear_credentials,
        &ledgers.join("c.ledger"),
        &["--work", "none", "--max-in-flight", "32"],
    );
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (207, 7), "{s}");
    assert_eq!(tally(&ledger_entries(&ledgers), 200), (200, 0, 0, 0));
    let (code, verdict) = delivery::audit(&dir.path().join("pika.out"), &ledgers);
    assert_eq!(code, 0, "{verdict}");
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

//! Interoperability with nats-py, the NATS project's Python client (pinned, installed by scripts/test into
//! target/nats-py): what our producer publishes, nats-py pulls from the same durable consumer and decodes;
//! what nats-py publishes (plain bodies, not our envelope), our consumer acks and counts as foreign.

use testkit::nats::{self, NatsServer};
use testkit::{interop, u};

fn script(args: &[&str]) -> String {
    interop::Python::new(
        "NATS_PY_VENV",
        "nats-py",
        "Python's nats-py",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats_client.py"),
    )
    .run(args)
}

#[test]
fn nats_py_reads_our_messages_and_ours_count_its_plain_ones_as_foreign() {
    let server = NatsServer::start();
    let address = format!("nats://127.0.0.1:{}", server.port());

    // Ours → nats-py, through the durable consumer our producer created.
    let url = server.url("to-python", "");
    interop::send_ours(&url, 10, nats::clear_credentials);
    let bodies: Vec<String> =
        serde_json::from_str(&script(&["read", &address, "to-python", "workers", "10"]))
            .expect("json");
    interop::assert_ours(&bodies, 10);
    assert_eq!(
        server.jsz_consumer("to-python", "workers"),
        Some((0, 0)),
        "nats-py acked them"
    );

    // nats-py → ours: plain bodies, acked and counted as foreign, none in the ledger.
    let url = server.url("from-python", "");
    nats::depth(&url); // creates the stream and consumer, as a producer of ours would
    script(&["send", &address, "from-python", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let s = interop::consume(
        &url,
        10,
        nats::clear_credentials,
        &dir.path().join("c.ledger"),
        &[],
    );
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (10, 10), "{s}");
    assert!(testkit::ledger_entries(dir.path()).is_empty());
    assert_eq!(server.jsz_consumer("from-python", "workers"), Some((0, 0)));
}

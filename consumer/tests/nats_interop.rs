//! Interoperability with nats-py, the NATS project's Python client (pinned, installed by scripts/test into
//! target/nats-py): what our producer publishes, nats-py pulls from the same durable consumer and decodes;
//! what nats-py publishes (plain bodies, not our envelope), our consumer acks and counts as foreign.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::nats::{self, NatsServer};
use testkit::{Proc, command, u};
use workload::envelope::Envelope;

fn python() -> PathBuf {
    testkit::venv_python("NATS_PY_VENV", "nats-py", "Python's nats-py")
}

fn script(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats_client.py"))
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
fn nats_py_reads_our_messages_and_ours_count_its_plain_ones_as_foreign() {
    let server = NatsServer::start();
    let address = format!("nats://127.0.0.1:{}", server.port());

    // Ours → nats-py, through the durable consumer our producer created.
    let url = server.url("to-python", "");
    let mut p = command("producer");
    nats::clear_credentials(&mut p).args([
        "--queue", &url, "--count", "10", "--rate", "0", "--run-id", "abc", "--size", "300",
    ]);
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(20)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().unwrap(), "sent"), 10);
    let bodies: Vec<String> =
        serde_json::from_str(&script(&["read", &address, "to-python", "workers", "10"]))
            .expect("json");
    let mut seqs: Vec<u64> = bodies
        .iter()
        .map(|b| {
            let e = Envelope::decode(b.as_bytes()).unwrap_or_else(|e| panic!("{e}: {b:?}"));
            assert_eq!(e.run_id, 0xabc);
            assert!(b.len() >= 300, "padding survived");
            e.seq
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
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
    let mut c = command("consumer");
    nats::clear_credentials(&mut c)
        .args(["--queue", &url, "--count", "10", "--ledger"])
        .arg(dir.path().join("c.ledger"));
    let mut c = Proc::spawn("consumer", c);
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    let s = c.summary().unwrap();
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (10, 10), "{s}");
    assert!(testkit::ledger_entries(dir.path()).is_empty());
    assert_eq!(server.jsz_consumer("from-python", "workers"), Some((0, 0)));
}

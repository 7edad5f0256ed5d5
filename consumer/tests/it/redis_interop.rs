//! Interoperability with the Redis project's Python client (`redis` from PyPI, pinned and installed by
//! scripts/test into target/redis-py): what our producer sends, Python reads in our consumer group and
//! decodes; Python's envelopes are consumed by ours; Python's plain entries are counted as foreign.

use testkit::redis::{self, RedisServer};
use testkit::{interop, ledger_entries, tally, u};

fn script(args: &[&str]) -> String {
    interop::Python::new(
        "REDIS_PY_VENV",
        "redis-py",
        "Python's redis",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/redis_interop.py"),
    )
    .run(args)
}

#[test]
fn python_redis_and_ours_understand_each_other() {
    let server = RedisServer::start();
    let port = server.port().to_string();

    // Ours → Python, which reads in the group our consumers use and sees a first delivery.
    interop::send_ours(&server.url("to-python", ""), 10, redis::clear_credentials);
    let got: Vec<(u64, serde_json::Map<String, serde_json::Value>)> =
        serde_json::from_str(&script(&["read", &port, "to-python", "10"])).expect("json");
    let bodies: Vec<&str> = got
        .iter()
        .map(|(count, fields)| {
            assert_eq!(*count, 1);
            fields["body"].as_str().expect("a body field")
        })
        .collect();
    interop::assert_ours(&bodies, 10);
    assert_eq!(
        server.figures("to-python", "to-python"),
        (10, 0, Some(0)),
        "Python acked all"
    );

    // Python → ours: its envelopes are consumed, its plain entries are foreign (acked, not lost, not counted).
    script(&["send", &port, "from-python", "def", "10"]);
    script(&["plain", &port, "from-python", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let s = interop::consume(
        &server.url("from-python", ""),
        14,
        redis::clear_credentials,
        &dir.path().join("c.ledger"),
        &[],
    );
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (14, 4), "{s}");
    assert_eq!(tally(&ledger_entries(dir.path()), 10), (10, 0, 0, 0));
    assert_eq!(
        server.figures("from-python", "from-python"),
        (0, 0, Some(0))
    );
}

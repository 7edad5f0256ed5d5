//! Interoperability with Microsoft's Python SDK (`azure-storage-queue` v12, pinned and installed by
//! scripts/test into target/azure-py): what our producer sends, Python reads and decodes; what Python
//! sends, our consumer consumes; in both body encodings.

use testkit::azurite::{self, Azurite};
use testkit::{interop, ledger_entries, tally, u};

fn script(args: &[&str]) -> String {
    interop::Python::new(
        "AZURE_PY_VENV",
        "azure-py",
        "Python's azure-storage-queue",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/azure_interop.py"),
    )
    .run(args)
}

fn both_ways(encoding: &str) {
    let az = Azurite::start();
    let conn = az.connection_string();
    let opt = if encoding == "base64" {
        "encoding=base64"
    } else {
        ""
    };

    // Ours → Python.
    let queue = format!("to-python-{encoding}");
    let url = az.url(&queue, opt);
    interop::send_ours(&url, 10, azurite::with_key);
    let bodies: Vec<String> =
        serde_json::from_str(&script(&["read", &conn, &queue, encoding, "10"])).expect("json");
    interop::assert_ours(&bodies, 10);

    // Python → ours.
    let queue = format!("from-python-{encoding}");
    script(&["send", &conn, &queue, encoding, "def", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let s = interop::consume(
        &az.url(&queue, opt),
        10,
        azurite::with_key,
        &dir.path().join("c.ledger"),
        &[],
    );
    assert_eq!((u(&s, "acked"), u(&s, "foreign")), (10, 0));
    assert_eq!(tally(&ledger_entries(dir.path()), 10), (10, 0, 0, 0));
}

#[test]
fn python_sdk_and_ours_understand_each_other_raw() {
    both_ways("raw");
}

#[test]
fn python_sdk_and_ours_understand_each_other_base64() {
    both_ways("base64");
}

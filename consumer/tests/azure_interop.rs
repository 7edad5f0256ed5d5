//! Interoperability with Microsoft's Python SDK (`azure-storage-queue` v12, pinned and installed by
//! scripts/test into target/azure-py): what our producer sends, Python reads and decodes; what Python
//! sends, our consumer consumes; in both body encodings.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::azurite::{self, Azurite};
use testkit::{Proc, command, ledger_entries, tally, u};
use workload::envelope::Envelope;

fn python() -> PathBuf {
    let venv = std::env::var_os("AZURE_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| azurite::repo_root().join("target/azure-py"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test, which installs Python's azure-storage-queue there",
        py.display()
    );
    py
}

fn script(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/azure_interop.py"
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
    let mut p = command("producer");
    p.args([
        "--queue", &url, "--count", "10", "--rate", "0", "--run-id", "abc", "--size", "300",
    ]);
    azurite::with_key(&mut p);
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(20)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().unwrap(), "sent"), 10);
    let bodies: Vec<String> =
        serde_json::from_str(&script(&["read", &conn, &queue, encoding, "10"])).expect("json");
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

    // Python → ours.
    let queue = format!("from-python-{encoding}");
    script(&["send", &conn, &queue, encoding, "def", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = command("consumer");
    c.args(["--queue", &az.url(&queue, opt), "--count", "10", "--ledger"])
        .arg(dir.path().join("c.ledger"));
    azurite::with_key(&mut c);
    let mut c = Proc::spawn("consumer", c);
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    let s = c.summary().unwrap();
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

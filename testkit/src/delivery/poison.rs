//! The failure model's scenario (`--fail-rate 1 --max-deliveries 3`) and the checks it makes, shared with
//! the failure tests that run on fewer backends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use workload::ledger::{Entry, Outcome};

use super::{Backend, sum};
use crate::{Proc, command, u};

/// The identity every stats line keeps (see consumer/src/consume.rs), checked on each consumer's summary:
/// `received = acked + lease_lost + failed + released + unreleased + in_flight`, and what was set aside
/// (poison, foreign) was acked.
pub fn assert_counts_add_up(consumers: &[Proc]) {
    for c in consumers {
        let s = c.summary().expect("consumer summary");
        assert_slot_identity(&s, &c.name);
        assert!(
            u(&s, "poison") + u(&s, "foreign") <= u(&s, "acked") + u(&s, "lease_lost"),
            "{s}"
        );
    }
}

/// The slot identity one consumer stats line keeps, interval or summary:
/// `received = acked + lease_lost + failed + released + unreleased + in_flight`.
pub fn assert_slot_identity(line: &serde_json::Value, who: &str) {
    let settled = [
        "acked",
        "lease_lost",
        "failed",
        "released",
        "unreleased",
        "in_flight",
    ]
    .iter()
    .map(|f| u(line, f))
    .sum::<u64>();
    assert_eq!(
        u(line, "received"),
        settled,
        "{who}: slot identity broken: {line}"
    );
}

/// Every ledger line in `dir` with its outcome; no line may be malformed.
pub fn ledger_outcomes(dir: &Path) -> Vec<(Entry, Outcome)> {
    let mut all = Vec::new();
    for file in std::fs::read_dir(dir).expect("read ledger dir") {
        let path = file.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "ledger") {
            let report = workload::ledger::read_outcomes(&path, |e, o| all.push((e, o)))
                .expect("read ledger");
            assert_eq!(report.malformed, 0, "{}", path.display());
        }
    }
    all
}

/// Writes a producer's stats lines to `path`, as the audit reads them.
pub fn save_stats(p: &Proc, path: &Path) -> PathBuf {
    std::fs::write(path, p.lines().join("\n") + "\n").expect("write producer stats");
    path.to_path_buf()
}

/// Runs the real `audit` on the producer's stats and the ledgers; returns its exit code and JSON line.
pub fn audit(producer: &Path, ledgers: &Path) -> (i32, serde_json::Value) {
    let mut cmd = command("audit");
    cmd.arg("--producer")
        .arg(producer)
        .arg("--ledger")
        .arg(ledgers);
    let mut a = Proc::spawn("audit", cmd);
    let status = a.wait(Duration::from_secs(20));
    let line = a
        .summary()
        .unwrap_or_else(|| panic!("no audit line: {}", a.stderr()));
    (status.code().unwrap_or(-1), line)
}

/// `--fail-rate 1 --max-deliveries 3` on two consumers: every one of `n` messages is delivered exactly three
/// times (it fails on the first two and is given back after `fail_delay`; it fails on the third, its last
/// allowed delivery, and is set aside), ends as poison in the ledger, the audit loses nothing, and the run
/// ends. `foreign` bodies the caller published first are acked at their first delivery: the failure model
/// applies to work, and they get none.
pub fn every_message_ends_as_poison(b: &Backend, n: u64, fail_delay: &str, foreign: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).expect("ledger dir");
    let p = b.produce(n);
    let sent = p.producer_summary().expect("producer summary").sent;
    assert_eq!(sent, n);
    let producer = save_stats(&p, &dir.path().join("producer.jsonl"));
    let args = [
        "--fail-rate",
        "1",
        "--max-deliveries",
        "3",
        "--fail-delay",
        fail_delay,
        "--work",
        "none",
        "--max-in-flight",
        "20",
        "--batch",
        "20",
    ];
    let mut cs = b.consumers(&ledgers, 2, &args);
    b.drain_and_stop(&mut cs, Duration::from_secs(60));

    assert_eq!(
        sum(&cs, "received"),
        3 * sent + foreign,
        "three deliveries each"
    );
    assert_eq!(sum(&cs, "failed"), 2 * sent, "given back twice each");
    assert_eq!(sum(&cs, "redelivered"), 2 * sent);
    assert_eq!(sum(&cs, "poison"), sent);
    assert_eq!(sum(&cs, "foreign"), foreign);
    assert_eq!(sum(&cs, "acked"), sent + foreign, "poison is acked");
    assert_eq!(sum(&cs, "lease_lost"), 0);
    assert_counts_add_up(&cs);

    // The ledgers: one poison line per message, each after exactly three deliveries; nothing consumed.
    let lines = ledger_outcomes(&ledgers);
    assert_eq!(lines.len() as u64, sent);
    let mut seqs: Vec<u64> = lines.iter().map(|(e, _)| e.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>());
    assert!(
        lines
            .iter()
            .all(|(_, o)| *o == Outcome::Poison { deliveries: 3 }),
        "every line is poison after 3 deliveries"
    );

    let (code, a) = audit(&producer, &ledgers);
    assert_eq!(code, 0, "{a}");
    assert_eq!(
        (u(&a, "produced"), u(&a, "consumed"), u(&a, "poison")),
        (sent, 0, sent),
        "{a}"
    );
    assert_eq!((u(&a, "lost"), u(&a, "duplicates")), (0, 0), "{a}");
}

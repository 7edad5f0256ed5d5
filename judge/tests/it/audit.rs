//! The real `audit` binary on hand-made producer stats and ledgers, and on what the real producer and consumer
//! write. Build every binary first: `cargo build --workspace --bins`.

use std::path::Path;
use std::time::Duration;

use testkit::Proc;
use workload::contract;

const RUN: &str = "9f3a0c2e4b1d7a65";

fn audit(args: &[&str]) -> Proc {
    let mut cmd = testkit::command("audit");
    cmd.args(args);
    Proc::spawn("audit", cmd)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn producer_line(kind: &str, producer_id: u32, sent: u64) -> String {
    format!(
        r#"{{"role":"producer","kind":"{kind}","ts_us":1,"elapsed_s":1.0,"run_id":"{RUN}","producer_id":{producer_id},"sent":{sent},"errors":0,"rate":10.0}}"#
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn a_known_loss_and_duplicate_are_reported_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let producer = dir.path().join("producer.jsonl");
    write(
        &producer,
        &format!(
            "{}\n{}\n",
            producer_line("interval", 7, 4),
            producer_line("summary", 7, 10)
        ),
    );
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir(&ledgers).expect("mkdir");
    // Seq 7 is lost, seq 2 is acked twice (once by each consumer), one entry is from another run, and the
    // second consumer was killed mid-write.
    let a: String = (0..5).map(|s| format!("{RUN} 7 {s}\n")).collect();
    let b: String = [2, 5, 6, 8, 9]
        .iter()
        .map(|s| format!("{RUN} 7 {s}\n"))
        .collect::<String>()
        + "00000000000000aa 7 0\n"
        + &format!("{RUN} 7 ");
    write(&ledgers.join("consumer-1.ledger"), &a);
    write(&ledgers.join("consumer-2.ledger"), &b);
    write(&ledgers.join("README.txt"), "not a ledger");

    let mut p = audit(&[
        "--producer",
        path_str(&producer),
        "--ledger",
        path_str(&ledgers),
    ]);
    let status = p.wait(Duration::from_secs(10));
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let s = audit_summary(&p);
    assert_eq!(
        [
            s.produced,
            s.consumed,
            s.lost,
            s.duplicates,
            s.unexpected,
            s.malformed_ledger_lines
        ],
        [10, 9, 1, 1, 1, 1],
        "{s:?}"
    );
    assert!(stderr.contains("lost seqs: 7"), "{stderr}");
    assert!(stderr.contains(RUN), "the table names the run: {stderr}");
}

#[test]
fn a_killed_producer_is_audited_from_its_last_interval_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = dir.path().join("p1.jsonl");
    let p2 = dir.path().join("p2.jsonl");
    write(&p1, &(producer_line("summary", 1, 3) + "\n"));
    write(&p2, &(producer_line("interval", 2, 2) + "\n"));
    let ledger = dir.path().join("c.ledger");
    write(
        &ledger,
        &format!("{RUN} 1 0\n{RUN} 1 1\n{RUN} 1 2\n{RUN} 2 0\n{RUN} 2 1\n"),
    );
    let mut p = audit(&[
        "--producer",
        path_str(&p1),
        path_str(&p2),
        "--ledger",
        path_str(&ledger),
    ]);
    let status = p.wait(Duration::from_secs(10));
    let stderr = p.stderr();
    assert!(status.success(), "{stderr}");
    let s = audit_summary(&p);
    assert_eq!((s.produced, s.lost), (5, 0), "{s:?}");
    assert!(
        stderr.contains("wrote no summary") && stderr.contains("p2.jsonl"),
        "{stderr}"
    );
}

#[test]
fn bad_usage_and_missing_files_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let producer = dir.path().join("p.jsonl");
    write(&producer, &(producer_line("summary", 1, 1) + "\n"));
    let missing = dir.path().join("nope.ledger");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let not_stats = dir.path().join("notes.txt");
    write(&not_stats, "hello\n");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--producer", path_str(&producer)],
            "--ledger".to_string(),
        ),
        (
            vec![
                "--producer",
                path_str(&producer),
                "--ledger",
                path_str(&missing),
            ],
            format!("cannot read ledger {}", missing.display()),
        ),
        (
            vec![
                "--producer",
                path_str(&missing),
                "--ledger",
                path_str(&empty),
            ],
            format!("cannot read producer stats {}", missing.display()),
        ),
        (
            vec![
                "--producer",
                path_str(&producer),
                "--ledger",
                path_str(&empty),
            ],
            "no *.ledger files".to_string(),
        ),
        (
            vec![
                "--producer",
                path_str(&not_stats),
                "--ledger",
                path_str(&missing),
            ],
            "no producer stats lines".to_string(),
        ),
    ];
    for (args, needle) in cases {
        let mut p = audit(&args);
        let status = p.wait(Duration::from_secs(10));
        let stderr = p.stderr();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&needle), "{args:?}: {needle} in {stderr}");
        assert!(p.lines().is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn what_the_real_producer_and_consumer_write_audits_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testkit::sqlite_url(dir.path());
    let mut producer = testkit::command("producer");
    producer.args(["--queue", &url, "--rate", "0", "--count", "300"]);
    let mut producer = Proc::spawn("producer", producer);
    assert!(producer.wait(Duration::from_secs(20)).success());
    let stats = dir.path().join("producer.jsonl");
    write(&stats, &(producer.lines().join("\n") + "\n"));
    let ledger = dir.path().join("c.ledger");
    let mut consumer = testkit::command("consumer");
    consumer.args([
        "--queue",
        &url,
        "--work",
        "none",
        "--count",
        "300",
        "--ledger",
        path_str(&ledger),
    ]);
    let mut consumer = Proc::spawn("consumer", consumer);
    assert!(consumer.wait(Duration::from_secs(20)).success());

    let mut p = audit(&[
        "--producer",
        path_str(&stats),
        "--ledger",
        path_str(&ledger),
    ]);
    let status = p.wait(Duration::from_secs(10));
    assert!(status.success(), "{}", p.stderr());
    let s = audit_summary(&p);
    assert_eq!((s.produced, s.consumed, s.lost), (300, 300, 0));
}

/// The audit's summary line, typed.
fn audit_summary(p: &Proc) -> contract::Audit {
    p.audit_report()
        .unwrap_or_else(|| panic!("no audit summary line: {}", p.stderr()))
}

/// A queue with no telemetry channel (a mistyped URL) is an error, even when the save directory holds an
/// earlier audit's records: those belong to another queue.
#[test]
fn audit_queue_without_a_channel_is_an_error_not_an_old_report() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("saved");
    std::fs::create_dir_all(save.join("00000000000000ab")).unwrap();
    let url = format!("sqlite:{}", dir.path().join("never-used.db").display());
    let mut p = audit(&["--queue", &url, "--save", path_str(&save)]);
    let status = p.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", p.stderr());
    assert!(
        p.stderr().contains("no telemetry channel") && p.lines().is_empty(),
        "{}",
        p.stderr()
    );
}

/// A file that is not a ledger (a text file, a binary, an empty file) is refused, exit 2, with one line that
/// says so, instead of being audited as a ledger of nothing (every message lost, exit 1).
#[test]
fn files_that_are_not_ledgers_are_refused_not_audited_as_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let producer = dir.path().join("p.jsonl");
    write(&producer, &(producer_line("summary", 1, 3) + "\n"));
    let text = dir.path().join("passwd");
    write(
        &text,
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n",
    );
    let binary = dir.path().join("a.out");
    std::fs::write(&binary, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0").expect("write");
    let empty = dir.path().join("empty.ledger");
    write(&empty, "");
    for (file, says) in [
        (
            &text,
            "is not a ledger (line 1: expected `RUN PRODUCER SEQ`",
        ),
        (&binary, "found binary data"),
        (&empty, "no ledger lines in"),
    ] {
        let mut p = audit(&[
            "--producer",
            path_str(&producer),
            "--ledger",
            path_str(file),
        ]);
        let status = p.wait(Duration::from_secs(10));
        let stderr = p.stderr();
        assert_eq!(status.code(), Some(2), "{}: {stderr}", file.display());
        assert!(
            stderr.contains(says),
            "{}: {says} in {stderr}",
            file.display()
        );
        assert!(stderr.contains(path_str(file)), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(p.lines().is_empty(), "nothing on stdout");
    }
    // An empty ledger beside one with entries is a consumer that acked nothing: audited as usual.
    let full = dir.path().join("c.ledger");
    write(&full, &format!("{RUN} 1 0\n{RUN} 1 1\n{RUN} 1 2\n"));
    let mut p = audit(&[
        "--producer",
        path_str(&producer),
        "--ledger",
        path_str(&full),
        path_str(&empty),
    ]);
    let status = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
}

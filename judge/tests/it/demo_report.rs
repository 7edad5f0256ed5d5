//! The real `demo` binary's final report and start-up errors: what it says about unexpected ledger entries,
//! the files of a kept directory, and binaries missing from where it looks. Build every binary first:
//! `cargo build --workspace --bins`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use testkit::{Proc, u};

use super::demo::{RemoveOnDrop, demo, kept_dir};

/// Writes an executable shell script `name` in `dir`.
fn script(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write script");
    let mut perms = std::fs::metadata(&path).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
}

#[test]
fn unexpected_ledger_entries_are_reported_and_exit_0_as_the_audit_does() {
    // A producer that first runs another producer (another run id) on the demo's queue, then becomes the
    // demo's: the consumers record that run's messages too, which the demo's producer never sent.
    let bins = tempfile::tempdir().expect("tempdir");
    let other = bins.path().join("other-run.jsonl");
    let real = testkit::bin("producer");
    script(
        bins.path(),
        "producer",
        &format!(
            "#!/bin/sh\nprev=\nfor a in \"$@\"; do\n  [ \"$prev\" = --queue ] && queue=$a\n  prev=$a\ndone\n\
             '{real}' --queue \"$queue\" --rate 50 --duration 1s --producer-id 7 > '{other}' || exit 9\n\
             exec '{real}' \"$@\"\n",
            real = real.display(),
            other = other.display()
        ),
    );
    std::os::unix::fs::symlink(testkit::bin("consumer"), bins.path().join("consumer"))
        .expect("symlink");
    let mut p = demo(&[
        "--bin-dir",
        bins.path().to_str().expect("utf-8 temp path"),
        "--duration",
        "3s",
        "--rate",
        "100",
        "--consumers",
        "2",
        "--max-in-flight",
        "4",
        "--no-remainder",
    ]);
    let status = p.wait(Duration::from_secs(60));
    let stderr = p.stderr();
    let summary = p.summary().expect("a summary line");
    let sent_by_other = std::fs::read_to_string(&other)
        .expect("the other run's output")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .map(|v| u(&v, "sent"))
        .expect("the other run's summary");
    assert!(sent_by_other > 0, "{stderr}");
    assert_eq!(
        u(&summary, "unexpected"),
        sent_by_other,
        "{summary}\n{stderr}"
    );
    assert_eq!(u(&summary, "lost"), 0, "{summary}\n{stderr}");
    // `audit` exits 0 when nothing is lost, unexpected entries or not: the demo too.
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "  consumed   {} (lost 0, duplicates {}, unexpected {sent_by_other})\n",
            u(&summary, "consumed"),
            u(&summary, "duplicates")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "  unexpected {sent_by_other} ledger entr(ies) for messages the producer never confirmed sending"
        )),
        "{stderr}"
    );
    // The verdict does not read as clean.
    assert!(
        stderr.contains(&format!(
            "OK: every message the queue confirmed was consumed, but {sent_by_other} ledger entr(ies) are \
             UNEXPECTED: for messages the producer never confirmed sending\n"
        )),
        "{stderr}"
    );
}

#[test]
fn keep_lists_exactly_the_files_left_in_the_directory() {
    let mut p = demo(&[
        "--duration",
        "2s",
        "--rate",
        "50",
        "--consumers",
        "2",
        "--no-remainder",
        "--keep",
    ]);
    let status = p.wait(Duration::from_secs(30));
    let stderr = p.stderr();
    let dir = kept_dir(&stderr);
    let _cleanup = RemoveOnDrop(dir.clone());
    assert!(status.success(), "{status}\n{stderr}");
    // "  files      DIR (ledgers/, logs/, producer.jsonl, queue.db)"
    let prefix = format!("  files      {} (", dir.display());
    let listed: BTreeSet<String> = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no files line for {}:\n{stderr}", dir.display()))
        .split(", ")
        .map(String::from)
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("the kept directory")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    assert_eq!(listed, present, "{stderr}");
    for name in ["ledgers/", "logs/", "producer.jsonl", "queue.db"] {
        assert!(listed.contains(name), "{name} in {listed:?}");
    }
}

#[test]
fn a_bin_dir_without_the_binaries_names_what_is_missing_there() {
    // Everything missing.
    let empty = tempfile::tempdir().expect("tempdir");
    let dir = empty.path().to_str().expect("utf-8 temp path");
    let mut p = demo(&["--bin-dir", dir]);
    let status = p.wait(Duration::from_secs(10));
    let stderr = p.stderr();
    // A --bin-dir without the binaries is the user's input: exit 2.
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: --bin-dir {dir} has no producer, consumer or remainder binary: point --bin-dir at the \
             directory holding them, or leave it out to use the ones beside the demo"
        )
    );
    assert!(p.lines().is_empty(), "nothing on stdout");

    // Only the remainder missing: only it is named; with --no-remainder it is not needed.
    let bins = tempfile::tempdir().expect("tempdir");
    for real in ["producer", "consumer"] {
        std::os::unix::fs::symlink(testkit::bin(real), bins.path().join(real)).expect("symlink");
    }
    let dir = bins.path().to_str().expect("utf-8 temp path");
    let mut p = demo(&["--bin-dir", dir]);
    let status = p.wait(Duration::from_secs(10));
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: --bin-dir {dir} has no remainder binary: point --bin-dir"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("cargo build"), "{stderr}");
}

#[test]
fn binaries_missing_beside_the_demo_say_how_to_build_them() {
    // The demo alone in a directory: it looks beside itself, where a build would put them.
    let alone = tempfile::tempdir().expect("tempdir");
    let exe = alone.path().join("demo");
    std::fs::hard_link(testkit::bin("demo"), &exe)
        .or_else(|_| std::fs::copy(testkit::bin("demo"), &exe).map(drop))
        .expect("the demo in a directory of its own");
    let mut cmd = std::process::Command::new(&exe);
    cmd.env("RUST_LOG", "warn");
    let mut p = Proc::spawn("demo", cmd);
    let status = p.wait(Duration::from_secs(10));
    let stderr = p.stderr();
    // The build is what is missing, not the user's input: exit 1.
    assert_eq!(status.code(), Some(1), "{stderr}");
    let dir = alone.path().display();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: missing {dir}/producer, {dir}/consumer, {dir}/remainder: build all binaries first: cargo \
             build --release (the demo runs the binaries beside it; --bin-dir DIR points elsewhere)"
        )
    );
}

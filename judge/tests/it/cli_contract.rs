//! What every binary promises on its command line, checked on the real binaries: each names itself in `-V`,
//! the defaults point at the image the build recipe makes, bad usage exits 2 and a runtime failure 1 (the same
//! rule everywhere), and errors are one line that says each thing once.

use std::path::Path;
use std::time::Duration;

use testkit::{Proc, command};

const VERSION: &str = env!("CARGO_PKG_VERSION");

const BINARIES: &[&str] = &[
    "producer",
    "consumer",
    "remainder",
    "demo",
    "audit",
    "scorecard",
    "marathon-install",
    "marathon-uninstall",
];

/// Runs `name` with `args` in `dir` to completion; returns (exit code, stdout, stderr).
pub(crate) fn run_in(dir: &Path, name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = command(name);
    cmd.current_dir(dir).args(args);
    let mut p = Proc::spawn(name, cmd);
    let status = p.wait(Duration::from_secs(20));
    (status.code(), p.lines().join("\n"), p.stderr())
}

/// Each case (binary, arguments, what the error says) is bad usage: exit 2, nothing on stdout, one line on
/// stderr starting `error: `, and no usage dump. Returns each case's error line.
pub(crate) fn assert_usage_errors(dir: &Path, cases: &[(&str, &[&str], &[&str])]) -> Vec<String> {
    let mut errors = Vec::new();
    for (bin, args, says) in cases {
        let (code, out, err) = run_in(dir, bin, args);
        assert_eq!(code, Some(2), "{bin} {args:?}: {err}");
        assert!(out.is_empty(), "{bin} {args:?}: {out}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{bin} {args:?}: one line: {err}"
        );
        assert!(err.starts_with("error: "), "{bin} {args:?}: {err}");
        assert!(!err.contains("Usage:"), "{bin} {args:?}: {err}");
        for s in *says {
            assert!(err.contains(s), "{bin} {args:?}: {s:?} in {err}");
        }
        errors.push(err);
    }
    errors
}

fn workspace_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_binary_names_itself_in_its_version() {
    let dir = tempfile::tempdir().unwrap();
    for name in BINARIES {
        let (code, out, err) = run_in(dir.path(), name, &["-V"]);
        assert_eq!(code, Some(0), "{name} -V: {err}");
        assert_eq!(out, format!("{name} {VERSION}"), "{name} -V");
    }
}

#[test]
fn defaults_name_the_image_the_makefile_builds_and_no_invented_repository() {
    let image = format!("queue-workload:{VERSION}");
    let makefile = workspace_file("Makefile");
    assert!(
        makefile.contains("IMAGE      ?= queue-workload\n")
            && makefile.contains("TAG        ?= $(VERSION)"),
        "make image tags queue-workload:$(VERSION)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_in(dir.path(), "marathon-install", &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).expect("dry run prints the group");
    let apps = body["apps"].as_array().expect("apps");
    let ours: Vec<_> = apps
        .iter()
        .map(|a| a["container"]["docker"]["image"].as_str().unwrap_or(""))
        .filter(|i| i.contains("queue-workload"))
        .collect();
    assert!(!ours.is_empty(), "{body}");
    assert!(ours.iter().all(|i| *i == image), "{ours:?}");
    let compose = workspace_file("docker-compose.yml");
    assert!(
        compose.contains(&format!("image: ${{WORKLOAD_IMAGE:-{image}}}")),
        "compose defaults to {image}"
    );
    for manifest in [
        "k8s/base/remainder.yaml",
        "k8s/nsq/producer.yaml",
        "k8s/nsq/consumer.yaml",
        "k8s/azure/producer.yaml",
        "k8s/azure/consumer.yaml",
    ] {
        let text = workspace_file(manifest);
        assert!(text.contains(&format!("image: {image}")), "{manifest}");
    }
    // The repository no one published must not be advertised anywhere the build writes it.
    for file in ["Cargo.toml", "Makefile", "Dockerfile"] {
        assert!(
            !workspace_file(file).contains("github.com/microscaling/queue-workload"),
            "{file} names a repository that does not exist"
        );
    }
}

#[test]
fn marathon_install_takes_every_work_spec_the_consumer_takes() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [
        "none",
        "sleep:300ms",
        "cpu:5ms",
        "sleep:exp(20ms)",
        "cpu:lognormal(5ms,1.0)",
        "sleep:uniform(1ms..5ms)",
        "sleep:normal(10ms,2ms,max=50ms)",
    ] {
        // The consumer takes the spec: flags are parsed before the queue URL is checked, so the refusal is the
        // URL's, not the spec's...
        let (code, _, err) = run_in(
            dir.path(),
            "consumer",
            &["--queue", "kafka://x", "--work", spec],
        );
        assert_eq!(code, Some(2), "consumer --work {spec}: {err}");
        assert!(
            err.contains("unknown scheme") && !err.contains("--work"),
            "consumer --work {spec}: {err}"
        );
        // ...so marathon-install must too, and pass it on unchanged in meaning.
        let (code, out, err) = run_in(
            dir.path(),
            "marathon-install",
            &["--dry-run", "--consumer-work", spec],
        );
        assert_eq!(
            code,
            Some(0),
            "marathon-install --consumer-work {spec}: {err}"
        );
        let body: serde_json::Value = serde_json::from_str(&out).expect("group JSON");
        let consumer = body["apps"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|a| a["id"].as_str().is_some_and(|i| i.ends_with("/consumer")))
            })
            .expect("consumer app");
        let work = consumer["env"]["CONSUMER_WORK"]
            .as_str()
            .expect("CONSUMER_WORK");
        let kind = spec.split(['(', ':']).take(2).collect::<Vec<_>>().join(":");
        assert!(work.starts_with(&kind), "{spec} became {work}");
    }
}

/// One case of the exit status rule.
struct Case {
    bin: &'static str,
    args: &'static [&'static str],
    code: i32,
    /// Text the one-line error must hold.
    says: &'static str,
}

#[test]
fn bad_usage_exits_2_and_runtime_failures_exit_1_in_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-series.json"), "{\"x\":1}").unwrap();
    std::fs::write(dir.path().join("not-a-db"), "plain text, not SQLite").unwrap();
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    let cases = [
        // A file named on the command line that is missing or not what the flag wants: usage.
        Case {
            bin: "scorecard",
            args: &["grade", "missing.json"],
            code: 2,
            says: "missing.json",
        },
        Case {
            bin: "scorecard",
            args: &["grade", "not-series.json"],
            code: 2,
            says: "not a series file",
        },
        // A directory: the one line says what was expected, not "Is a directory".
        Case {
            bin: "scorecard",
            args: &["grade", "a-dir"],
            code: 2,
            says: "a-dir is a directory without a series.json in it",
        },
        Case {
            bin: "scorecard",
            args: &[
                "watch",
                "--queue",
                "sqlite:q.db",
                "--consumers",
                "telemetry",
                "--scenario",
                "a-dir",
            ],
            code: 2,
            says: "scenario a-dir is a directory",
        },
        // An --out that cannot be a directory is found before the watch, not after it.
        Case {
            bin: "scorecard",
            args: &[
                "watch",
                "--queue",
                "sqlite:q.db",
                "--consumers",
                "telemetry",
                "--target",
                "5",
                "--duration",
                "1s",
                "--out",
                "not-a-db/out",
            ],
            code: 2,
            says: "--out not-a-db/out: not-a-db is not a directory",
        },
        Case {
            bin: "scorecard",
            args: &[
                "watch",
                "--queue",
                "sqlite:q.db",
                "--consumers",
                "nsqd:http://127.0.0.1:1/t/c",
            ],
            code: 2,
            says: "--target",
        },
        Case {
            bin: "scorecard",
            args: &[
                "watch",
                "--queue",
                "kafka://x",
                "--consumers",
                "nsqd:http://127.0.0.1:1/t/c",
                "--target",
                "5",
                "--duration",
                "1s",
            ],
            code: 2,
            says: "unknown scheme",
        },
        Case {
            bin: "audit",
            args: &["--producer", "missing.jsonl", "--ledger", "."],
            code: 2,
            says: "missing.jsonl",
        },
        // Clap's `requires` let these through, and the file audit ignored them.
        Case {
            bin: "audit",
            args: &["--producer", "p.jsonl", "--ledger", ".", "--run", "abc"],
            code: 2,
            says: "--run and --save go with --queue",
        },
        Case {
            bin: "audit",
            args: &["--producer", "p.jsonl", "--ledger", ".", "--save", "kept"],
            code: 2,
            says: "--run and --save go with --queue",
        },
        // A channel that cannot be read: the audit could not run (exit 1 would say messages were lost).
        Case {
            bin: "audit",
            args: &["--queue", "redis://127.0.0.1:1/s"],
            code: 2,
            says: "Connection refused",
        },
        Case {
            bin: "demo",
            args: &["--rate=-1"],
            code: 2,
            says: "--rate",
        },
        Case {
            bin: "demo",
            args: &["--scenario", "missing.toml"],
            code: 2,
            says: "missing.toml",
        },
        Case {
            bin: "producer",
            args: &["--queue", "kafka://x"],
            code: 2,
            says: "unknown scheme",
        },
        Case {
            bin: "producer",
            args: &["--queue", "sqlite:q.db", "--rate", "-5"],
            code: 2,
            says: "0 or more (got -5)",
        },
        // A run that can send nothing is refused, not a silent "sent 0" with exit 0.
        Case {
            bin: "producer",
            args: &[
                "--queue",
                "sqlite:q.db",
                "--shape",
                "const:0",
                "--count",
                "3",
            ],
            code: 2,
            says: "sends no message",
        },
        Case {
            bin: "demo",
            args: &["--bin-dir", "/nonexistent"],
            code: 2,
            says: "--bin-dir /nonexistent has no producer, consumer or remainder binary",
        },
        Case {
            bin: "consumer",
            args: &["--queue", "sqlite:q.db", "--fail-rate", "2"],
            code: 2,
            says: "--fail-rate",
        },
        Case {
            bin: "remainder",
            args: &["--threads", "0"],
            code: 2,
            says: "--threads",
        },
        Case {
            bin: "marathon-install",
            args: &["--timeout", "0s", "--dry-run"],
            code: 2,
            says: "--timeout",
        },
        Case {
            bin: "marathon-uninstall",
            args: &["--marathon-url", "not a url"],
            code: 2,
            says: "not a url",
        },
        // The run started and something failed: runtime.
        Case {
            bin: "producer",
            args: &["--queue", "sqlite:no/such/dir/q.db", "--count", "1"],
            code: 1,
            says: "no/such/dir",
        },
        Case {
            bin: "consumer",
            args: &["--queue", "sqlite:not-a-db"],
            code: 1,
            says: "not a SQLite database",
        },
        Case {
            bin: "consumer",
            args: &["--queue", "sqlite:."],
            code: 1,
            says: ". is a directory: name a file",
        },
        Case {
            bin: "marathon-uninstall",
            args: &["--marathon-url", "http://127.0.0.1:1", "--timeout", "2s"],
            code: 1,
            says: "cannot connect",
        },
    ];
    for c in cases {
        let (code, out, err) = run_in(dir.path(), c.bin, c.args);
        assert_eq!(
            code,
            Some(c.code),
            "{} {:?} exited {code:?}: {err}",
            c.bin,
            c.args
        );
        assert!(err.contains(c.says), "{} {:?}: {err}", c.bin, c.args);
        assert!(!err.contains("panicked"), "{} {:?}: {err}", c.bin, c.args);
        let error_lines: Vec<_> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(
            error_lines.len(),
            1,
            "{} {:?}: one error line: {err}",
            c.bin,
            c.args
        );
        if c.bin != "demo" {
            assert!(
                out.is_empty(),
                "{} {:?}: no stats on an error: {out}",
                c.bin,
                c.args
            );
        }
    }
}

#[test]
fn errors_say_each_thing_once_and_a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-db"), "plain text, not SQLite").unwrap();
    let (_, _, err) = run_in(dir.path(), "scorecard", &["grade", "missing.json"]);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    let (_, _, err) = run_in(
        dir.path(),
        "audit",
        &["--producer", "missing.jsonl", "--ledger", "."],
    );
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    let (_, _, err) = run_in(dir.path(), "demo", &["--scenario", "missing.toml"]);
    assert!(err.matches("os error 2").count() <= 1, "{err}");
    // One hint, one naming of the flag: --autoscale's message points to the README, so not to --help too.
    for bad in ["x", "bogus=1", "target=x"] {
        let (code, _, err) = run_in(dir.path(), "demo", &["--autoscale", bad]);
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(err.matches("(see ").count(), 1, "{err}");
        assert_eq!(err.matches("--autoscale").count(), 1, "{err}");
    }

    for bin in ["producer", "consumer"] {
        let (_, _, err) = run_in(
            dir.path(),
            bin,
            &["--queue", "sqlite:no/such/dir/q.db", "--count", "1"],
        );
        assert!(
            err.contains("directory no/such/dir does not exist"),
            "{bin}: {err}"
        );
        assert!(
            !err.contains("unable to open database file"),
            "{bin}: {err}"
        );
        let (_, _, err) = run_in(
            dir.path(),
            bin,
            &["--queue", "sqlite:not-a-db", "--count", "1"],
        );
        assert_eq!(err.matches("cannot open queue").count(), 1, "{bin}: {err}");
        assert_eq!(
            err.matches("not a SQLite database").count(),
            1,
            "{bin}: {err}"
        );
    }
}

/// Clap's own errors (a bad value, an unknown flag, a missing argument) and values out of range are one line
/// naming the flag, as every other error is: no usage block, no blank lines.
#[test]
fn bad_flag_values_are_one_line_naming_the_flag_and_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "producer",
            &["--rate", "abc"],
            &["--rate", "abc", "not a number of messages per second"],
        ),
        (
            "demo",
            &["--rate", "fast"],
            &["--rate", "not a number of messages per second"],
        ),
        ("demo", &["--rate", "-3"], &["--rate", "0 or more"]),
        (
            "marathon-install",
            &["--consumer-cpus", "half"],
            &["--consumer-cpus", "\"half\" is not a number"],
        ),
        ("producer", &["--rat", "5"], &["--rat", "--rate"]),
        ("consumer", &["--max-in-flight", "x"], &["--max-in-flight"]),
        ("remainder", &["--threads", "x"], &["--threads"]),
        (
            "demo",
            &["--engine", "bogus"],
            &["--engine", "process, docker"],
        ),
        ("scorecard", &["compare", "one"], &["<RUN>"]),
        ("marathon-install", &["--bogus"], &["--bogus"]),
        (
            "marathon-uninstall",
            &["--timeout", "soon"],
            &["--timeout", "soon"],
        ),
        // Negative durations, spaced or not, and absurd ones.
        (
            "demo",
            &["--duration", "-5s"],
            &["--duration", "not negative", "unit"],
        ),
        ("demo", &["--duration=-5s"], &["--duration", "not negative"]),
        (
            "consumer",
            &["--lease", "-1s"],
            &["--lease", "not negative"],
        ),
        (
            "demo",
            &["--duration", "400d"],
            &["--duration", "more than a year"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--duration", "9999h"],
            &["--duration", "more than a year"],
        ),
        // Rates above 10M/s, as a flag or in a shape.
        ("demo", &["--rate", "2e7"], &["--rate", "10000000"]),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--rate", "20000000"],
            &["--rate", "10000000"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--shape", "step:1,20000000@1s"],
            &["--shape", "10000000"],
        ),
        // The audit's usage names both of its forms.
        ("audit", &[], &["--producer", "--ledger", "--queue"]),
        (
            "audit",
            &["--run", "zz", "--queue", "sqlite:q.db"],
            &["--run", "1 to 16 hex digits"],
        ),
        (
            "producer",
            &["--queue", "sqlite:q.db", "--run-id", "xyz"],
            &["--run-id", "1 to 16 hex digits"],
        ),
    ];
    assert_usage_errors(dir.path(), cases);
    // Help is still clap's, on stdout, exit 0.
    let (code, out, _) = run_in(dir.path(), "producer", &["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Usage:"), "{out}");
}

/// The demo's outputs are checked before anything starts: a --scorecard-dir or --json that cannot be
/// written is bad usage at once, and no temporary directory is left behind.
#[test]
fn demo_outputs_that_cannot_be_written_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), "not a directory").unwrap();
    for (args, says) in [
        (
            ["--scorecard-dir", "a-file/scorecard"],
            "--scorecard-dir a-file/scorecard",
        ),
        (
            ["--json", "/nonexistent/x.json"],
            "--json /nonexistent/x.json",
        ),
    ] {
        let mut cmd = command("demo");
        cmd.current_dir(dir.path())
            .env("TMPDIR", tmp.path())
            .args(args)
            .args(["--duration", "30s"]);
        let mut p = Proc::spawn("demo", cmd);
        // At once: not after a 30 s run.
        let status = p.wait(Duration::from_secs(20));
        let err = p.stderr();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{args:?}: left behind {left:?}");
    }
}

/// `audit --run` takes a run id in the form the producer's --run-id does (1 to 16 hex digits).
#[test]
fn audit_run_takes_the_producers_run_id_form() {
    let dir = tempfile::tempdir().unwrap();
    for run in ["1f", "00000000000000ab", "ABC"] {
        let (code, _, err) = run_in(
            dir.path(),
            "audit",
            &["--queue", "sqlite:q.db", "--run", run],
        );
        // The id is accepted: what fails is the channel, which no producer made here.
        assert!(!err.contains("--run"), "--run {run}: {err}");
        assert!(err.contains("telemetry"), "--run {run}: {err}");
        assert_eq!(code, Some(2), "--run {run}: {err}");
    }
}

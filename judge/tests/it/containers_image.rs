//! Offline checks of the Dockerfile and the image recipe (judge/tests/it/engine.rs builds and runs the image in a
//! real engine): hadolint, a static non-root image shipping the binaries the services run, labels of both
//! namespaces filled by `make image`; and the workload checker itself, shared with the compose and
//! Kubernetes checks.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::containers_common::*;

// ------------------------------------------------------------------------------------- Dockerfile

#[test]
fn dockerfile_passes_hadolint_and_every_ignored_rule_says_why() {
    let mut cmd = Command::new(tool("hadolint"));
    cmd.arg("--no-color").arg(root().join("Dockerfile"));
    let (ok, out) = run(cmd);
    assert!(ok && out.trim().is_empty(), "hadolint:\n{out}");

    let text = read("Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rules) = line.trim().strip_prefix("# hadolint ignore=") else {
            continue;
        };
        for rule in rules.split(',') {
            // The comment block right above the ignore line names the rule and says why.
            let reason = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with('#'))
                .any(|l| l.contains(rule.trim()));
            assert!(
                reason,
                "line {}: {rule} is ignored without a comment saying why",
                i + 1
            );
        }
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    out
}

#[test]
fn image_is_static_non_root_and_ships_the_binaries_the_services_run() {
    let dockerfile = read("Dockerfile");
    // A `# syntax=` directive makes BuildKit fetch a frontend image: no build works without a registry.
    assert!(
        !dockerfile
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('#'))
            .any(|l| l.trim_start().to_ascii_lowercase().starts_with("syntax")),
        "the Dockerfile names a frontend image"
    );
    let ins = instructions(&dockerfile);
    // The global ARGs (before the first FROM) with their defaults: what a plain `docker build` uses.
    let first_from = ins
        .iter()
        .position(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let defaults: BTreeMap<&str, &str> = ins[..first_from]
        .iter()
        .filter_map(|i| i.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .collect();
    let resolve = |from: &str| -> String {
        let mut out = from.to_string();
        for (k, v) in &defaults {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        out
    };
    let froms: Vec<String> = ins
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .map(|i| resolve(i))
        .collect();
    // build (musl), prebuilt (binaries made elsewhere), binaries (whichever BINARIES names), run.
    assert_eq!(froms.len(), 4, "the stages: {froms:?}");
    assert!(
        froms[0].contains("-alpine") && froms[0].ends_with(" AS build"),
        "the build stage targets musl: {}",
        froms[0]
    );
    assert_eq!(froms[1], "FROM scratch AS prebuilt");
    assert_eq!(
        froms[2], "FROM build AS binaries",
        "by default the image compiles its binaries"
    );
    assert_eq!(froms[3], "FROM gcr.io/distroless/static-debian12:nonroot");
    let prebuilt = ins
        .iter()
        .find(|i| i.starts_with("COPY ${PREBUILT_DIR}/"))
        .expect("the prebuilt stage copies the binaries");
    let prebuilt: BTreeSet<&str> = prebuilt
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("${PREBUILT_DIR}/"))
        .collect();
    assert_eq!(
        prebuilt,
        IMAGE_BINARIES.into_iter().collect(),
        "binaries of the prebuilt stage"
    );

    let build = ins
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("--profile dist") && build.contains("--locked"),
        "{build}"
    );
    let built: BTreeSet<&str> = build
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    let copied: BTreeSet<&str> = build
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/dist/"))
        .collect();
    let expected: BTreeSet<&str> = IMAGE_BINARIES.into_iter().collect();
    assert_eq!(built, expected, "binaries built");
    assert_eq!(copied, expected, "binaries copied out of the build stage");
    assert!(
        ins.contains(&"COPY --from=binaries /out/ /usr/local/bin/".to_string()),
        "binaries on PATH"
    );

    // Non-root, numeric (so runAsNonRoot can verify it), and no shell-form entrypoint (there is no shell).
    let user = ins
        .iter()
        .rfind(|i| i.starts_with("USER "))
        .expect("a USER");
    let uid = user["USER ".len()..].split(':').next().unwrap_or("");
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "{user}");
    assert!(
        !ins.iter().any(|i| i.starts_with("ENTRYPOINT")),
        "the command names the binary"
    );
    let cmd = ins.iter().rfind(|i| i.starts_with("CMD ")).expect("a CMD");
    assert!(cmd.starts_with("CMD ["), "exec form, no shell: {cmd}");

    let ignore = read(".dockerignore");
    for must in [".git", "target", "node_modules"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore lacks {must}"
        );
    }
}

#[test]
fn image_labels_cover_both_namespaces_and_make_fills_them_from_git() {
    let ins = instructions(&read("Dockerfile"));
    let run_stage = ins
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a run stage");
    let args: BTreeSet<String> = ins[run_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("ARG "))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let labels: BTreeMap<String, String> = ins[run_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("LABEL "))
        .flat_map(|l| {
            // key="value" pairs; values hold spaces but no quotes.
            l.split('"')
                .collect::<Vec<_>>()
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| {
                    (
                        p[0].trim().trim_end_matches('=').to_string(),
                        p[1].to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let from_arg = |key: &str, arg: &str| {
        let v = labels
            .get(key)
            .unwrap_or_else(|| panic!("label {key} is missing"));
        assert_eq!(
            v,
            &format!("${{{arg}}}"),
            "label {key} should come from build arg {arg}"
        );
        assert!(
            args.contains(arg),
            "build arg {arg} is not declared in the run stage"
        );
    };
    for (key, arg) in [
        ("org.opencontainers.image.created", "BUILD_DATE"),
        ("org.opencontainers.image.revision", "VCS_REF"),
        ("org.opencontainers.image.version", "VERSION"),
        ("org.opencontainers.image.source", "VCS_URL"),
        ("org.label-schema.build-date", "BUILD_DATE"),
        ("org.label-schema.vcs-ref", "VCS_REF"),
        ("org.label-schema.version", "VERSION"),
        ("org.label-schema.vcs-url", "VCS_URL"),
    ] {
        from_arg(key, arg);
    }
    for key in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.vendor",
        "org.label-schema.docker.dockerfile",
    ] {
        assert!(
            labels.get(key).is_some_and(|v| !v.is_empty()),
            "label {key} is missing"
        );
    }
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(labels["org.label-schema.license"], "Apache-2.0");
    assert_eq!(labels["org.label-schema.schema-version"], "1.0");

    // The recipe: `make -n image` prints the docker build with every build arg filled.
    let mut make = Command::new("make");
    make.arg("-n").arg("-C").arg(root()).arg("image");
    let (ok, out) = run(make);
    assert!(ok, "make -n image failed:\n{out}");
    let flat = out.replace("\\\n", " ");
    assert!(flat.contains("docker build"), "{out}");
    let value = |arg: &str| -> String {
        let needle = format!("--build-arg {arg}=");
        let i = flat
            .find(&needle)
            .unwrap_or_else(|| panic!("make image does not pass {arg}:\n{out}"));
        flat[i + needle.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    for arg in &args {
        assert!(!value(arg).is_empty(), "make image passes an empty {arg}");
    }
    assert_eq!(
        value("VERSION"),
        env!("CARGO_PKG_VERSION"),
        "the workspace version"
    );
    let rev = value("VCS_REF");
    assert!(
        rev == "unknown" || rev.chars().all(|c| c.is_ascii_hexdigit()),
        "VCS_REF {rev:?}"
    );
    let date = value("BUILD_DATE");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.contains('T'),
        "BUILD_DATE {date:?} is not RFC 3339 UTC"
    );
}

// ------------------------------------------------------------------------------------ the checker

#[test]
fn checker_rejects_unknown_commands_flags_and_variables() {
    let accepts = accepted();
    let w = |argv: &[&str], env: &[&str]| Workload {
        origin: "test".into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|s| s.to_string()).collect(),
    };
    let good = w(
        &["consumer", "--drain-timeout=8s", "--work", "sleep:1ms"],
        &[
            "QUEUE_URL",
            "CONSUMER_WORK",
            "RUST_LOG",
            "MSS_CONSUMER_SLEEP_MS",
            "AZURE_STORAGE_CONNECTION_STRING",
        ],
    );
    assert_eq!(problems(&good, &accepts), Vec::<String>::new());

    let p = problems(&w(&["consumerr"], &[]), &accepts);
    assert!(
        p.len() == 1 && p[0].contains("\"consumerr\" is not a binary"),
        "{p:?}"
    );
    let p = problems(&w(&[], &[]), &accepts);
    assert!(p.len() == 1 && p[0].contains("no command"), "{p:?}");
    let p = problems(
        &w(&["producer", "--rate", "5", "--rat", "5"], &[]),
        &accepts,
    );
    assert!(p.len() == 1 && p[0].contains("no flag --rat"), "{p:?}");
    // An unknown variable, and a real one on the wrong binary.
    let p = problems(
        &w(&["consumer"], &["QUEUE_URLL", "PRODUCER_RATE"]),
        &accepts,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("does not read QUEUE_URLL") && p[1].contains("does not read PRODUCER_RATE"),
        "{p:?}"
    );
    // The remainder opens no queue, so the backends' variables are not its own.
    let p = problems(
        &w(&["remainder"], &["AZURE_STORAGE_CONNECTION_STRING"]),
        &accepts,
    );
    assert_eq!(p.len(), 1, "{p:?}");
}

//! The README's "Stats: the stdout contract" tables against the structs of `workload::contract`: every
//! documented field is written, and every written field is documented, per role and kind.

use std::collections::BTreeSet;

use workload::contract::{Kind, examples};

const README: &str = include_str!("../../README.md");

/// The text of the README section that starts with `heading`, up to the next heading of any level.
fn section(heading: &str) -> &'static str {
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let body = &README[start + heading.len()..];
    let end = body.find("\n#").unwrap_or(body.len());
    &body[..end]
}

/// The table rows (`| a | b |`) of `text`, split into trimmed cells, header and separator rows left out.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .filter(|cells: &Vec<&str>| !matches!(cells[0], "field" | "role"))
        .collect()
}

/// The `backticked` names in `text`, leaving out those inside parentheses (explanations, values).
fn names(text: &str) -> BTreeSet<String> {
    let mut depth = 0usize;
    let mut outside = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The documented fields of `role`'s `kind` lines, the common ones included.
fn documented(role: &str, kind: Kind) -> BTreeSet<String> {
    let all = rows(section("## Stats: the stdout contract"));
    let mut fields = BTreeSet::new();
    // The first table: the fields every line starts with (`peak_rss_kib` in summaries only).
    for row in all
        .iter()
        .filter(|r| r[0].starts_with('`') && r[0] != format!("`{role}`"))
    {
        let summary_only = row[1].starts_with("summary lines only");
        let is_role_row = [
            "`producer`",
            "`consumer`",
            "`remainder`",
            "`demo`",
            "`audit`",
        ]
        .contains(&row[0]);
        if !is_role_row && (kind == Kind::Summary || !summary_only) {
            fields.insert(row[0].trim_matches('`').to_string());
        }
    }
    let row = all
        .iter()
        .find(|r| r[0] == format!("`{role}`"))
        .unwrap_or_else(|| panic!("README documents no role {role}"));
    let text = row[1];
    let own = if let Some(rest) = text.strip_prefix("interval: ") {
        // `demo`: "interval: …; summary: …"
        let (interval, summary) = rest
            .split_once("; summary: ")
            .expect("the demo row documents both kinds");
        if kind == Kind::Interval {
            interval
        } else {
            summary
        }
    } else {
        // "…; the summary also has …" / "…; the summary adds …"
        match (text.split_once("; the summary"), kind) {
            (Some((interval, _)), Kind::Interval) => interval,
            _ => text,
        }
    };
    fields.extend(names(own));
    fields
}

#[test]
fn every_emitted_field_is_documented_and_every_documented_field_is_emitted() {
    let examples = examples();
    assert_eq!(examples.len(), 9, "every role and kind has an example");
    for (role, kind, value) in examples {
        let emitted: BTreeSet<String> = value
            .as_object()
            .expect("a line is an object")
            .keys()
            .cloned()
            .collect();
        let documented = documented(role, kind);
        let undocumented: Vec<_> = emitted.difference(&documented).collect();
        let unwritten: Vec<_> = documented.difference(&emitted).collect();
        assert!(
            undocumented.is_empty() && unwritten.is_empty(),
            "{role} {kind:?}: written but not in the README: {undocumented:?}; in the README but not \
             written: {unwritten:?}"
        );
    }
}

#[test]
fn the_tables_are_read_as_meant() {
    let producer = documented("producer", Kind::Interval);
    assert!(
        producer.contains("sent") && producer.contains("elapsed_s") && producer.contains("role"),
        "{producer:?}"
    );
    assert!(!producer.contains("unconfirmed_ranges") && !producer.contains("peak_rss_kib"));
    let summary = documented("producer", Kind::Summary);
    assert!(summary.contains("unconfirmed_ranges") && summary.contains("peak_rss_kib"));
    let remainder = documented("remainder", Kind::Interval);
    assert!(
        !remainder.contains("sched_idle") && !remainder.contains("priority"),
        "{remainder:?}"
    );
    assert!(!documented("consumer", Kind::Summary).contains("--max-in-flight"));
}

/// The README's shell blocks run as written after its first command, which builds into target/release/ and
/// puts nothing on PATH: no line starts with one of our binaries by bare name (`audit …` instead of
/// `target/release/audit …`). Lines inside a container (`docker run … producer`, indented continuations)
/// name the binary on the image's PATH, and are not at the start of a line.
#[test]
fn shell_blocks_name_our_binaries_by_their_path() {
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
    let mut bare = Vec::new();
    let mut in_sh = false;
    for (i, line) in README.lines().enumerate() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim_start_matches('`') == "sh";
            continue;
        }
        // An indented line continues the command above (`kubectl run … --command --` then `producer …`).
        if !in_sh || line.starts_with(' ') {
            continue;
        }
        // Leading VAR=value assignments are the environment, not the command.
        let command = line
            .split_whitespace()
            .find(|w| !w.contains('='))
            .unwrap_or_default();
        if BINARIES.contains(&command) {
            bare.push(format!("README.md:{}: {line}", i + 1));
        }
    }
    assert!(bare.is_empty(), "bare binary names:\n{}", bare.join("\n"));
}

//! The build a newcomer runs first (`cargo build --release`, the README's demo command) stays quick, and the
//! image's build stays small: checked on the workspace manifest, since timing a cold build is a benchmark's
//! job, not a test's.

use std::path::Path;

fn manifest() -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("workspace Cargo.toml");
    text.parse().expect("workspace Cargo.toml parses")
}

fn profile<'a>(m: &'a toml::Table, name: &str) -> &'a toml::Table {
    m["profile"][name]
        .as_table()
        .unwrap_or_else(|| panic!("[profile.{name}]"))
}

#[test]
fn the_release_profile_has_no_lto_and_no_debug_info() {
    let m = manifest();
    let release = profile(&m, "release");
    // LTO optimised and linked each of the eight binaries one by one: 517 of 838 CPU-seconds of a cold build.
    let lto = release.get("lto").and_then(|v| {
        v.as_str()
            .map(str::to_owned)
            .or(v.as_bool().map(|b| b.to_string()))
    });
    assert!(
        matches!(lto.as_deref(), None | Some("false") | Some("off")),
        "release lto = {lto:?}"
    );
    assert_eq!(
        release.get("debug").and_then(|v| v.as_bool()),
        Some(false),
        "release debug info"
    );
}

#[test]
fn the_dist_profile_keeps_lto_and_strips_for_images() {
    let m = manifest();
    let dist = profile(&m, "dist");
    assert_eq!(dist["inherits"].as_str(), Some("release"));
    assert_eq!(dist["lto"].as_str(), Some("thin"));
    assert_eq!(dist["strip"].as_str(), Some("symbols"));
}

#[test]
fn a_plain_cargo_build_leaves_out_the_test_only_testkit() {
    let m = manifest();
    let ws = m["workspace"].as_table().expect("[workspace]");
    let members: Vec<&str> = ws["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let default: Vec<&str> = ws["default-members"]
        .as_array()
        .expect("default-members: without it `cargo build` builds testkit too")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!default.contains(&"testkit"), "{default:?}");
    for m in members.iter().filter(|m| **m != "testkit") {
        assert!(default.contains(m), "{m} is not built by `cargo build`");
    }
}

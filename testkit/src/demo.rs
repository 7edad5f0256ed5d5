//! `demo` with its autoscaler on a real backend: the run every backend's demo test makes, written once.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{Proc, command, u};

/// Runs `demo --autoscale on` with `scenario` (a short burst) on `url`, the backend's credentials set by
/// `env`, and checks it: exit 0 within `limit`, nothing lost or duplicated, everything produced consumed (at
/// least 600), the consumers scaled out, and the burst's backlog (over 100) seen in the depth the demo read
/// from `backend`. Returns the summary line for the backend's own checks.
pub fn autoscaled_burst(
    scenario: &Path,
    url: &str,
    env: fn(&mut Command) -> &mut Command,
    limit: Duration,
    backend: &str,
) -> Value {
    let out = tempfile::tempdir().expect("temp dir");
    let mut cmd = command("demo");
    env(&mut cmd)
        .args(["--queue", url, "--autoscale", "on"])
        .arg("--scenario")
        .arg(scenario)
        .arg("--scorecard-dir")
        .arg(out.path());
    let mut demo = Proc::spawn("demo", cmd);
    let status = demo.wait(limit);
    let stderr = demo.stderr();
    assert!(status.success(), "demo failed: {status}\n{stderr}");
    let summary = demo.summary().expect("a summary line");
    assert_eq!(u(&summary, "lost"), 0, "{summary}");
    assert_eq!(u(&summary, "duplicates"), 0, "{summary}");
    assert!(u(&summary, "consumed") >= 600, "{summary}");
    assert_eq!(
        u(&summary, "consumed"),
        u(&summary, "produced"),
        "{summary}"
    );
    // The burst's backlog, read from the backend, scaled the consumers out.
    assert!(u(&summary, "consumers_max") > 1, "{summary}\n{stderr}");
    let series = std::fs::read_to_string(out.path().join("series.json")).expect("series.json");
    let series: Value = serde_json::from_str(&series).expect("series.json is JSON");
    let peak = series["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["depth"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        peak > 100,
        "the burst showed in the depth read from {backend}: {peak}"
    );
    summary
}

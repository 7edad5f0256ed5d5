//! `scorecard compare` on two recorded runs of one scenario (synthetic series files whose every value is
//! known): the table is recomputed here from the raw samples, with the demand worked out by hand and the
//! elastic speedup by its own formula, and the overlaid SVG is parsed (every run's depth and consumers drawn
//! and named, the load changes marked). Build the binaries first: `cargo build --workspace --bins`.

use std::collections::HashMap;
use std::time::Duration;

use judge::scorecard::compare_chart::PALETTE;
use judge::scorecard::{Sample, Series};
use serde_json::Value;
use testkit::Proc;

/// step:100,400@10s,100@20s × sleep:20ms over 1 slot: a demand of 2 consumers, 8 from 10 s, 2 from 20 s.
fn demand_at(t: f64) -> f64 {
    if (10.0..20.0).contains(&t) { 8.0 } else { 2.0 }
}

/// A run sampled every second for 30 s; `lag` seconds late in following the demand, `extra` consumers above it.
fn run(lag: f64, extra: usize, title: &str) -> Series {
    let samples = (0..=30)
        .map(|i| {
            let t = f64::from(i);
            let consumers = demand_at((t - lag).max(0.0)) as usize + extra;
            // The depth grows while the engine is short and drains after.
            let short = demand_at(t) > consumers as f64;
            Sample {
                t,
                depth: Some(if short { 40 * i as u64 } else { 10 }),
                consumers,
                remainders: 0,
                produce_rate: demand_at(t) * 50.0,
                busy_s: None,
                decided: None,
            }
        })
        .collect();
    Series {
        title: Some(title.into()),
        policy: None,
        settings: None,
        target: 50,
        band_low: 35,
        shape: Some("step:100,400@10s,100@20s".into()),
        changes_s: vec![10.0, 20.0],
        change_directions: Vec::new(),
        manual: Vec::new(),
        consumed: 9_000,
        lost: Some(0),
        work: Some("sleep:20ms".into()),
        consumer_slots: Some(1),
        started_us: None,
        samples,
    }
}

/// The figures the test recomputes, by the definitions in the README (each sample held until the next).
fn expected(s: &Series) -> HashMap<&'static str, f64> {
    let x = &s.samples;
    let span = x.last().unwrap().t - x[0].t;
    let (mut cs, mut err, mut band, mut au, mut ao, mut tu, mut to, mut thu, mut tho) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut moved_s, mut moved_d, mut unstable) = (0.0, 0.0, 0.0);
    for w in x.windows(2) {
        let dt = w[1].t - w[0].t;
        let (d, c) = (demand_at(w[0].t), w[0].consumers as f64);
        let depth = w[0].depth.unwrap() as f64;
        cs += c * dt;
        err += (depth - 50.0).abs() * dt;
        band += if depth <= 50.0 { dt } else { 0.0 };
        if d > c {
            au += (d - c) * dt;
            tu += dt;
            thu += (d - c) / d * dt;
        }
        if c > d {
            ao += (c - d) * dt;
            to += dt;
            tho += (c - d) / d * dt;
        }
        let (ds, dd) = (w[1].consumers as f64 - c, demand_at(w[1].t) - d);
        moved_s += ds.abs();
        moved_d += dd.abs();
        if ds.signum() * f64::from(ds != 0.0) != dd.signum() * f64::from(dd != 0.0) {
            unstable += dt;
        }
    }
    HashMap::from([
        ("consumer·s", cs),
        ("∫|depth − target| dt", err),
        ("time in band", 100.0 * band / span),
        (
            "peak overshoot",
            x.iter().map(|s| s.depth.unwrap()).max().unwrap() as f64 - 50.0,
        ),
        (
            "max consumers",
            x.iter().map(|s| s.consumers).max().unwrap() as f64,
        ),
        ("consumer·s per 1k msgs", cs * 1000.0 / 9000.0),
        ("lost", 0.0),
        ("a_U (consumers)", au / span),
        ("a_O (consumers)", ao / span),
        ("τ_U", 100.0 * tu / span),
        ("τ_O", 100.0 * to / span),
        ("θ_U", 100.0 * thu / span),
        ("θ_O", 100.0 * tho / span),
        ("jitter", (moved_s - moved_d) / (span / 60.0)),
        ("υ (instability)", 100.0 * unstable / span),
    ])
}

/// Herbst et al.'s elastic speedup: the geometric mean of baseline ÷ run over θ_U, θ_O, τ_U, τ_O, υ, each
/// floored at 0.1 %.
fn speedup(run: &HashMap<&str, f64>, base: &HashMap<&str, f64>) -> f64 {
    let names = ["θ_U", "θ_O", "τ_U", "τ_O", "υ (instability)"];
    let product: f64 = names
        .iter()
        .map(|n| base[n].max(0.1) / run[n].max(0.1))
        .product();
    product.powf(1.0 / 5.0)
}

#[test]
fn compare_tabulates_every_figure_and_overlays_every_run() {
    let dir = tempfile::tempdir().unwrap();
    // The slow run as the demo's autoscaler records it: its policy and settings.
    let mut slow = run(5.0, 1, "step: local autoscaler (keda policy)");
    slow.policy = Some("keda".into());
    slow.settings = Some("policy=keda,target=50,min=0,max=8".into());
    let runs = [("quick", run(1.0, 0, "step: quick engine")), ("slow", slow)];
    for (name, series) in &runs {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(
            dir.path().join(name).join("series.json"),
            serde_json::to_string(series).unwrap(),
        )
        .unwrap();
    }
    let mut cmd = testkit::command("scorecard");
    cmd.current_dir(dir.path())
        .args(["compare", "quick", "slow/series.json", "--out", "out"]);
    let mut p = Proc::spawn("scorecard", cmd);
    let status = p.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", p.stderr());
    let printed: Vec<Value> = p.stats();
    let doc = &printed[0];
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/compare.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, &on_disk);
    let labels: Vec<&str> = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["quick", "slow"]);
    let engines: Vec<&str> = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["engine"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["quick engine", "local autoscaler: keda"]);

    // Every figure, recomputed here, in each run's column.
    let want: Vec<HashMap<&str, f64>> = runs.iter().map(|(_, s)| expected(s)).collect();
    let rows: HashMap<&str, Vec<Option<f64>>> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let values = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(Value::as_f64)
                .collect();
            (r["figure"].as_str().unwrap(), values)
        })
        .collect();
    for (i, w) in want.iter().enumerate() {
        for (figure, value) in w {
            let got = rows
                .get(figure)
                .unwrap_or_else(|| panic!("no row {figure:?}: {rows:?}"))[i]
                .unwrap_or_else(|| panic!("{figure} of run {i} missing"));
            // compare.json writes figures to 6 decimal places.
            assert!(
                (got - value).abs() <= 5e-7,
                "{figure} of run {i}: {got} ≠ {value}"
            );
        }
    }
    // The quick run's scale-out 1 s after the step up; the slow one's 5 s.
    assert_eq!(rows["worst scale-out"], [Some(1.0), Some(5.0)]);
    // Both are back in band before the step down (the slow one at 15 s): no change left unanswered.
    assert_eq!(rows["never back in band"], [Some(0.0), Some(0.0)]);
    assert_eq!(rows["worst back in band"], [Some(1.0), Some(5.0)]);
    // The speedup of each against the first: 1 for the first, the geometric mean of the ratios for the other.
    let s = rows["elastic speedup vs the first"].clone();
    assert!((s[0].unwrap() - 1.0).abs() < 1e-12, "{s:?}");
    let slow = speedup(&want[1], &want[0]);
    assert!((s[1].unwrap() - slow).abs() <= 5e-7, "{s:?} vs {slow}");
    assert!(slow < 1.0, "the slow engine follows demand worse: {slow}");
    // The table on stderr: one column per run, the speedup printed.
    let table = p.stderr();
    assert!(table.contains("| figure | quick | slow |"), "{table}");
    // Under the paths, what ran in each column, as the runs' records say.
    assert!(
        table.contains("| engine | quick engine | local autoscaler: keda |"),
        "{table}"
    );
    assert!(
        table.contains("| settings | — | policy=keda,target=50,min=0,max=8 |"),
        "{table}"
    );
    // Every row has one cell per run (a `|` inside a figure's name is escaped).
    for line in table.lines().filter(|l| l.starts_with('|')) {
        assert_eq!(line.replace("\\|", "").matches('|').count(), 4, "{line}");
    }
    assert!(
        table.contains(&format!(
            "| elastic speedup vs the first | 1.00 | {slow:.2} |"
        )),
        "{table}"
    );

    // The overlaid chart: each run's depth and consumers drawn (a step line in its colour on each panel)
    // and named, the load changes marked.
    let svg = std::fs::read_to_string(dir.path().join("out/compare.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let texts: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for name in [
        "depth: quick",
        "depth: slow",
        "consumers: quick",
        "consumers: slow",
        "load up",
        "load down",
    ] {
        assert!(texts.contains(&name), "{name:?} not in {texts:?}");
    }
    for colour in &PALETTE[..2] {
        let hex = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
        // A legend swatch has 2 points; a run's step line one pair per sample.
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(hex.as_str()))
            .filter(|n| {
                n.attribute("points")
                    .map_or(0, |p| p.split_whitespace().count())
                    > 30
            })
            .count();
        assert_eq!(lines, 2, "depth and consumers in {hex}");
    }

    // A run that is not a series: bad usage, one line naming it.
    std::fs::write(dir.path().join("junk.json"), "{}").unwrap();
    let mut cmd = testkit::command("scorecard");
    cmd.current_dir(dir.path())
        .args(["compare", "quick", "junk.json"]);
    let mut p = Proc::spawn("scorecard", cmd);
    assert_eq!(p.wait(Duration::from_secs(20)).code(), Some(2));
    let err = p.stderr();
    assert!(err.contains("junk.json is not a series file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The longest run of digits after a decimal point in `text` (a JSON document).
fn most_decimals(text: &str) -> usize {
    let mut most = 0;
    let mut after_point: Option<usize> = None;
    for c in text.chars() {
        after_point = match (c, after_point) {
            ('.', _) => Some(0),
            (d, Some(n)) if d.is_ascii_digit() => Some(n + 1),
            _ => None,
        };
        most = most.max(after_point.unwrap_or(0));
    }
    most
}

#[test]
fn figures_are_written_to_six_decimals_without_float_noise() {
    let dir = tempfile::tempdir().unwrap();
    // Sample times a tenth of a second apart (0.1 × 3 is 0.30000000000000004 in binary) and rates with
    // noise in their last digit, as sums of rounded rates have.
    let mut series = run(1.0, 0, "noisy");
    for (i, s) in series.samples.iter_mut().enumerate() {
        s.t = 0.1 * i as f64;
        s.produce_rate = 0.1 + 0.2;
        s.busy_s = Some(0.1 * i as f64 / 3.0);
    }
    series.changes_s = vec![1.0, 2.0];
    let raw = serde_json::to_string(&series).unwrap();
    assert!(raw.contains("0.30000000000000004"), "a noisy input: {raw}");
    std::fs::write(dir.path().join("series.json"), raw).unwrap();
    let mut cmd = testkit::command("scorecard");
    cmd.current_dir(dir.path())
        .args(["grade", "series.json", "--out", "out"]);
    let mut p = Proc::spawn("scorecard", cmd);
    let status = p.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", p.stderr());
    for name in ["series.json", "scorecard.json"] {
        let text = std::fs::read_to_string(dir.path().join("out").join(name)).unwrap();
        assert!(most_decimals(&text) <= 6, "{name}: {text}");
        assert!(!text.contains("0.30000000000000004"), "{name}: {text}");
    }
    let written: Series =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/series.json")).unwrap())
            .unwrap();
    assert_eq!(written.samples[3].t, 0.3);
    assert_eq!(written.samples[3].produce_rate, 0.3);
    // The figures are the full-precision ones, rounded where written: the same to 6 places.
    let card: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/scorecard.json")).unwrap(),
    )
    .unwrap();
    let full = judge::scorecard::score(&series);
    let got = card["consumer_seconds"].as_f64().unwrap();
    assert!(
        (got - full.consumer_seconds).abs() <= testkit::ROUNDING_SLACK,
        "{got} vs {}",
        full.consumer_seconds
    );
    let stdout = p.lines().join("\n");
    assert!(most_decimals(&stdout) <= 6, "{stdout}");

    // compare.json likewise.
    let mut cmd = testkit::command("scorecard");
    cmd.current_dir(dir.path())
        .args(["compare", "series.json", "out", "--out", "cmp"]);
    let mut p = Proc::spawn("scorecard", cmd);
    let status = p.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", p.stderr());
    let text = std::fs::read_to_string(dir.path().join("cmp/compare.json")).unwrap();
    assert!(most_decimals(&text) <= 6, "compare.json: {text}");
}

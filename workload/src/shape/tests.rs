//! The shapes' grammar, rates, integrals and due times, and replay files' errors.

use super::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

fn parse(spec: &str) -> Shape {
    match Shape::parse(spec) {
        Ok(s) => s,
        Err(e) => panic!("{spec}: {e}"),
    }
}

fn err(spec: &str) -> String {
    match Shape::parse(spec) {
        Ok(s) => panic!("{spec} parsed as {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_documented_examples_parse_and_display_back() {
    for spec in [
        "const:200",
        "step:100,500@30s,100@60s",
        "ramp:0..1000/60s",
        "sine:500+-400/120s",
        "burst:5000@10s",
        "poisson:200",
        "const:100+burst:5000@10s",
        "ramp:100..1000/1m@30s+sine:50+-50/10s",
    ] {
        assert_eq!(parse(spec).to_string(), spec);
    }
    assert_eq!(Shape::constant(250.0).to_string(), "const:250");
}

#[test]
fn const_and_step_integrate_piecewise() {
    let c = parse("const:200");
    assert!(close(c.sent_by(secs(10.0)), 2000.0));
    assert_eq!(c.rate_at(secs(3.0)), 200.0);
    assert_eq!(c.natural_duration(), None);
    assert!(c.changes().is_empty());

    let s = parse("step:100,500@30s,100@60s");
    assert_eq!(s.rate_at(secs(29.9)), 100.0);
    assert_eq!(s.rate_at(secs(30.0)), 500.0);
    assert_eq!(s.rate_at(secs(61.0)), 100.0);
    assert!(close(s.sent_by(secs(30.0)), 3000.0));
    assert!(close(s.sent_by(secs(45.0)), 3000.0 + 7500.0));
    assert!(close(s.sent_by(secs(70.0)), 3000.0 + 15000.0 + 1000.0));
    assert_eq!(s.changes(), vec![secs(30.0), secs(60.0)]);
    assert_eq!(s.natural_duration(), Some(secs(60.0)));
    assert_eq!(s.scheduled_total(), None, "the last step goes on at 100/s");
    assert_eq!(parse("step:100,0@2s").scheduled_total(), Some(200.0));
}

#[test]
fn ramp_integrates_to_the_trapezoid() {
    let r = parse("ramp:0..1000/60s");
    assert!(close(r.rate_at(secs(30.0)), 500.0));
    assert!(close(r.sent_by(secs(60.0)), 30_000.0));
    assert!(close(r.sent_by(secs(30.0)), 7_500.0));
    assert!(close(r.sent_by(secs(70.0)), 40_000.0));
    assert_eq!(r.natural_duration(), Some(secs(60.0)));
    let late = parse("ramp:100..300/10s@5s");
    assert_eq!(late.rate_at(secs(2.0)), 100.0);
    assert!(close(late.sent_by(secs(5.0)), 500.0));
    assert!(close(late.sent_by(secs(15.0)), 500.0 + 2000.0));
    assert_eq!(late.changes(), vec![secs(5.0)]);
    assert_eq!(late.natural_duration(), Some(secs(15.0)));
}

#[test]
fn sine_integrates_to_its_mean_over_whole_periods() {
    let s = parse("sine:500+-400/120s");
    assert!(close(s.rate_at(secs(30.0)), 900.0));
    assert!(close(s.rate_at(secs(90.0)), 100.0));
    assert!(close(s.sent_by(secs(120.0)), 60_000.0));
    // Half a period: mean·t plus 2·amp/ω.
    let half = 500.0 * 60.0 + 2.0 * 400.0 * 120.0 / std::f64::consts::TAU;
    assert!(close(s.sent_by(secs(60.0)), half));
    assert_eq!(s.changes(), vec![Duration::ZERO]);
    assert_eq!(s.natural_duration(), None);
}

#[test]
fn bursts_are_instantaneous_and_add_to_the_rest() {
    let b = parse("const:100+burst:5000@10s");
    assert_eq!(b.rate_at(secs(10.0)), 100.0);
    assert!(close(b.sent_by(secs(9.999)), 999.9));
    assert!(close(b.sent_by(secs(10.0)), 6000.0));
    assert_eq!(b.changes(), vec![secs(10.0)]);
    assert_eq!(b.natural_duration(), Some(secs(10.0)));
    assert_eq!(parse("burst:5000@10s").scheduled_total(), Some(5000.0));
}

#[test]
fn poisson_counts_its_expectation_and_is_kept_apart() {
    let p = parse("poisson:200+const:50");
    assert!(close(p.sent_by(secs(10.0)), 2500.0));
    assert!(close(p.scheduled_by_secs(10.0), 500.0));
    assert_eq!(p.poisson_rate(), 200.0);
    assert_eq!(p.scheduled_total(), None);
}

#[test]
fn replay_reads_rates_or_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let rates = dir.path().join("rates.csv");
    std::fs::write(&rates, "offset_s,rate\n# warm up\n0,100\n\n10,300\n20,0\n").unwrap();
    let r = parse(&format!("replay:{}", rates.display()));
    assert!(close(r.sent_by(secs(15.0)), 1000.0 + 1500.0));
    assert!(close(r.sent_by(secs(30.0)), 4000.0));
    assert_eq!(r.natural_duration(), Some(secs(20.0)));
    assert_eq!(r.changes(), vec![secs(10.0), secs(20.0)]);
    assert_eq!(r.scheduled_total(), Some(4000.0));

    let offsets = dir.path().join("offsets.txt");
    std::fs::write(&offsets, "0.5\n0.5\n1.25\n3\n").unwrap();
    let o = parse(&format!("replay:{}", offsets.display()));
    assert_eq!(o.sent_by(secs(0.4)), 0.0);
    assert_eq!(o.sent_by(secs(0.5)), 2.0);
    assert_eq!(o.sent_by(secs(10.0)), 4.0);
    assert_eq!(o.natural_duration(), Some(secs(3.0)));
}

#[test]
fn bad_specs_say_what_is_wrong_and_what_is_expected() {
    for (spec, says) in [
        ("", "empty load shape"),
        ("const", "no ':'"),
        ("const:-5", "0 or more"),
        ("const:NaN", "finite"),
        ("const:inf", "finite"),
        ("const:fast", "not a number"),
        ("wave:3", "unknown kind \"wave\""),
        ("step:100,500@30s,200@20s", "must increase"),
        ("step:100,500", "needs an offset"),
        ("step:100,500@-3s", "invalid duration"),
        ("ramp:0..1000", "FROM..TO/OVER"),
        ("ramp:0..1000/0s", "more than 0"),
        ("sine:500+-600/10s", "negative rate"),
        ("sine:500+-400/0s", "more than 0"),
        ("burst:5000", "COUNT@OFFSET"),
        ("burst:-1@3s", "whole number"),
        ("burst:1.5@3s", "whole number"),
        ("const:100+", "no ':'"),
        ("replay:", "needs a FILE"),
    ] {
        let e = err(spec);
        assert!(e.contains(says), "{spec}: {e}");
        assert!(
            spec.is_empty() || e.contains("expected TERM"),
            "{spec}: {e}"
        );
    }
}

#[test]
fn bad_replay_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    let e = err(&format!("replay:{}", missing.display()));
    assert!(
        e.contains("cannot read replay file") && e.contains("nope.csv"),
        "{e}"
    );
    for (text, line, says) in [
        ("0,100\n5,abc\n", 2, "not a number"),
        ("0,100\n5\n", 2, "1 fields where 2"),
        ("offset_s,rate\n0,100\n10,-1\n", 3, "0 or more"),
        ("0,100\n10,50\n5,10\n", 3, "comes before"),
        ("1\n2\nx\n", 3, "not a number of seconds"),
        ("0,1,2\n", 1, "3 fields"),
    ] {
        let f = dir.path().join("bad.csv");
        std::fs::write(&f, text).unwrap();
        let e = err(&format!("replay:{}", f.display()));
        assert!(
            e.contains(&format!("line {line}:")) && e.contains(says),
            "{text:?}: {e}"
        );
    }
    let f = dir.path().join("empty.csv");
    std::fs::write(&f, "# nothing\n").unwrap();
    assert!(err(&format!("replay:{}", f.display())).contains("no records"));
}

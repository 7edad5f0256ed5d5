//! The scorecard for people: one figure a line, then one line per load change.

use std::io::{self, Write};

use super::score::Scorecard;
use super::series::Direction;

fn secs(v: Option<f64>) -> String {
    secs_or(v, "—")
}

/// Seconds, or what `None` means in that place (`none`: the engine did not act before the next change).
fn secs_or(v: Option<f64>, none: &str) -> String {
    v.map_or_else(|| none.into(), |s| format!("{s:.1}s"))
}

/// A figure timed from the load changes, or why there is none: a constant load gives the engine nothing to
/// react to, which a bare dash did not say.
fn reaction(c: &Scorecard, figure: String) -> String {
    if c.reactions.is_empty() {
        "— (the load never changed: nothing to react to)".into()
    } else {
        figure
    }
}

/// The worst time back in band, and the load changes after which the depth never came back.
fn back_in_band(c: &Scorecard) -> String {
    match (c.never_back_in_band, c.worst_back_in_band_s) {
        (0, worst) => secs(worst),
        (n, None) => {
            format!("never: {n} load change(s) left the band and were not back by the next")
        }
        (n, Some(w)) => format!(
            "never: {n} load change(s) left the band and were not back by the next (the others: {w:.1}s)"
        ),
    }
}

/// Writes the scorecard as a table.
///
/// # Errors
/// When `out` cannot be written.
pub fn write(out: &mut impl Write, c: &Scorecard) -> io::Result<()> {
    let rows: [(&str, String); 12] = [
        (
            "run",
            format!(
                "{:.1}s, target depth {} (in band: depth ≤ target; the rule holds still from {} to {})",
                c.duration_s, c.target, c.band_low, c.target
            ),
        ),
        (
            "worst time to scale out",
            reaction(c, secs(c.worst_scale_out_s)),
        ),
        (
            "worst time to scale in",
            reaction(c, secs(c.worst_scale_in_s)),
        ),
        ("worst time back in band", reaction(c, back_in_band(c))),
        (
            "peak overshoot",
            format!("{} messages above target", c.peak_overshoot),
        ),
        (
            "∫|depth − target| dt",
            format!("{:.0} message·s", c.depth_error_integral),
        ),
        ("time in band", format!("{:.1} %", c.in_band_share * 100.0)),
        (
            "flaps",
            format!(
                "{:.2}/min ({} direction changes)",
                c.flaps_per_min, c.direction_changes
            ),
        ),
        (
            "consumer-seconds",
            format!(
                "{:.0} (at most {} consumers)",
                c.consumer_seconds, c.max_consumers
            ),
        ),
        (
            "per 1,000 messages",
            c.consumer_seconds_per_1000
                .map_or_else(|| "—".into(), |v| format!("{v:.1} consumer·s")),
        ),
        (
            "utilisation",
            c.utilisation.map_or_else(
                || "— (consumers report no busy_s)".into(),
                |u| format!("{:.1} %", u * 100.0),
            ),
        ),
        (
            "lost messages",
            c.lost
                .map_or_else(|| "— (not audited)".into(), |l| l.to_string()),
        ),
    ];
    if let Some(p) = &c.policy {
        writeln!(
            out,
            "  {:<26} {}",
            "policy",
            c.settings.as_deref().unwrap_or(p)
        )?;
    }
    for (name, value) in rows {
        writeln!(out, "  {name:<26} {value}")?;
    }
    if let Some(e) = &c.elasticity {
        // SPEC RG's elasticity metrics against the demand the scenario defines (scorecard::elasticity).
        let rows: [(&str, String); 4] = [
            (
                "under-provisioned",
                format!(
                    "a_U {:.2} consumers, θ_U {:.1} % of demand, τ_U {:.1} % of the time",
                    e.accuracy_under,
                    e.theta_under_pct,
                    e.timeshare_under * 100.0
                ),
            ),
            (
                "over-provisioned",
                format!(
                    "a_O {:.2} consumers, θ_O {:.1} % of demand, τ_O {:.1} % of the time",
                    e.accuracy_over,
                    e.theta_over_pct,
                    e.timeshare_over * 100.0
                ),
            ),
            (
                "jitter",
                format!(
                    "{:+.2} replicas/min (< 0 sluggish, > 0 oscillating)",
                    e.jitter_per_min
                ),
            ),
            (
                "instability",
                format!("{:.1} % of the time", e.instability_pct),
            ),
        ];
        for (name, value) in rows {
            writeln!(out, "  {name:<26} {value}")?;
        }
    }
    for r in &c.reactions {
        match r.direction {
            Direction::Up => writeln!(
                out,
                "  load up at   {:>6.1}s   scale-out after {:>6}   back in band after {:>8}",
                r.change_s,
                secs_or(r.scale_out_after_s, "none"),
                match (r.left_band, r.back_in_band_after_s) {
                    (false, _) => "— (never left it)".to_string(),
                    (true, None) => "not back by the next change".to_string(),
                    (true, t) => secs(t),
                },
            )?,
            Direction::Down => writeln!(
                out,
                "  load down at {:>6.1}s   scale-in after  {:>6}   settled after      {:>8}",
                r.change_s,
                secs_or(r.scale_in_after_s, "none"),
                secs_or(r.settled_after_s, "no"),
            )?,
        }
    }
    if let Some(d) = &c.decided {
        // The engine's own decisions, before the platform started or stopped anything.
        writeln!(
            out,
            "  engine's decision (desired replicas), graded the same way:"
        )?;
        let mut rows = vec![
            ("worst time to scale out", secs(d.worst_scale_out_s)),
            ("worst time to scale in", secs(d.worst_scale_in_s)),
            (
                "flaps",
                format!(
                    "{:.2}/min ({} direction changes)",
                    d.flaps_per_min, d.direction_changes
                ),
            ),
            (
                "replica-seconds",
                format!(
                    "{:.0} (at most {} replicas)",
                    d.consumer_seconds, d.max_consumers
                ),
            ),
        ];
        if let Some(e) = &d.elasticity {
            rows.push((
                "against the demand",
                format!(
                    "a_U {:.2}, a_O {:.2}, τ_U {:.1} %, τ_O {:.1} %, θ_U {:.1} %, θ_O {:.1} %, jitter {:+.2}/min, υ {:.1} %",
                    e.accuracy_under,
                    e.accuracy_over,
                    e.timeshare_under * 100.0,
                    e.timeshare_over * 100.0,
                    e.theta_under_pct,
                    e.theta_over_pct,
                    e.jitter_per_min,
                    e.instability_pct
                ),
            ));
        }
        for (name, value) in rows {
            writeln!(out, "    {name:<24} {value}")?;
        }
    }
    if c.manual_changes > 0 {
        writeln!(
            out,
            "  {} consumer change(s) made by hand: not graded as the engine's",
            c.manual_changes
        )?;
    }
    Ok(())
}

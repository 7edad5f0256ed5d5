//! Elasticity metrics of the SPEC Research Group's cloud working group: how closely the consumers an engine
//! ran (supply) followed the consumers the load needed (demand, [`super::demand`]).
//!
//! Both curves are step functions: sample `i` holds from `tᵢ` to `tᵢ₊₁`, and the run lasts
//! `T = tₙ₋₁ − t₀`. Every integral below is a sum over those intervals, so it is exact for the recorded
//! series. Supply is [`Sample::consumers`](super::series::Sample::consumers), the consumers running.
//!
//! **As the BUNGEE benchmark implements them** (github.com/NikolasHerbst/BUNGEE, commit 325dfa1,
//! `tools.descartes.bungee/src/tools/descartes/bungee/metric/`): `AbstractAreaDuration.java` sums the area and
//! the time where supply is below or above demand, `UnderprovisionAccuracy`/`OverprovisionAccuracy` divide the
//! area by the duration, `UnderprovisionTimeshare`/`OverprovisionTimeshare` the time, and `Jitter.java` with
//! `AbstractScaleEvents.java` counts the units added or removed (a change of 3 counts 3), supply minus demand,
//! per minute:
//!
//! ```text
//! a_U = Σ (dᵢ − sᵢ)⁺ Δtᵢ / T        mean missing consumers        a_O = Σ (sᵢ − dᵢ)⁺ Δtᵢ / T
//! τ_U = Σ [dᵢ > sᵢ] Δtᵢ / T         fraction of the time          τ_O = Σ [sᵢ > dᵢ] Δtᵢ / T
//! jitter = (Σ |sᵢ₊₁ − sᵢ| − Σ |dᵢ₊₁ − dᵢ|) / (T / 60 s)     < 0: sluggish, > 0: oscillating
//! ```
//!
//! **As Herbst et al. define them** in "Quantifying Cloud Performance and Dependability: Taxonomy, Metric
//! Design, and Emerging Challenges", ACM TOMPECS 3(4), 2018, doi:10.1145/3236332 (the elasticity section;
//! first as SPEC RG technical report SPEC-RG-2016-01, arXiv:1604.03470):
//!
//! ```text
//! θ_U = 100 % · Σ (dᵢ − sᵢ)⁺ / max(dᵢ, 1) Δtᵢ / T       under-provisioning relative to the demand
//! θ_O = 100 % · Σ (sᵢ − dᵢ)⁺ / max(dᵢ, 1) Δtᵢ / T       over-provisioning relative to the demand
//! υ   = 100 % · Σᵢ₌₁ⁿ⁻¹ min(|sgn Δsᵢ − sgn Δdᵢ|, 1) Δtᵢ / T,   Δsᵢ = sᵢ − sᵢ₋₁, Δtᵢ = tᵢ − tᵢ₋₁
//! ```
//!
//! The paper normalises by `dₜ`, which has no value where the demand is 0: there we divide by 1, so each
//! idle consumer counts 100 %. Instability is the paper's `100/(T−1) Σₜ₌₂ᵀ …Δt`: its `T − 1` is
//! the span of the `T − 1` intervals between `T` samples, `tₙ₋₁ − t₀` here. It is the share of the time in
//! which supply and demand do not move the same way (one moves and the other does not, or they move apart).
//! BUNGEE's own `Instability.java` (commit 61e9b4d) differs: it counts only `sgn Δs − sgn Δd > 0` and divides
//! by `T·(n−1)/n`; and its `RelativeUnderprovisionAccuracy.java` (commit 1823e36) divides the area by the
//! duration only, i.e. equals a_U. So those two are taken from the paper, not from the code.
//!
//! **Elastic speedup** of a run against a baseline run (the paper's ε): the weighted geometric mean of the
//! ratios `baseline / run` of θ_U, θ_O, τ_U, τ_O and υ (all in %), so > 1 means the run followed demand
//! better. Jitter is left out, as in the paper (its sign carries meaning, so no ratio of it does).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::series::Series;

/// The elasticity metrics of one run. Units are in the field names; see the module documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Elasticity {
    /// `T`: the run graded, from the first sample to the last.
    pub duration_s: f64,
    /// a_U (BUNGEE): mean consumers missing, over the whole run.
    pub accuracy_under: f64,
    /// a_O (BUNGEE): mean consumers idle beyond the demand, over the whole run.
    pub accuracy_over: f64,
    /// τ_U (BUNGEE): fraction of the run (0–1) with fewer consumers than the demand.
    pub timeshare_under: f64,
    /// τ_O (BUNGEE): fraction of the run (0–1) with more consumers than the demand.
    pub timeshare_over: f64,
    /// BUNGEE's jitter: consumers added or removed minus demand changes, per minute.
    pub jitter_per_min: f64,
    /// θ_U (Herbst et al. 2018): under-provisioning as a % of the demand, averaged over the run.
    pub theta_under_pct: f64,
    /// θ_O (Herbst et al. 2018): over-provisioning as a % of the demand, averaged over the run.
    pub theta_over_pct: f64,
    /// υ (Herbst et al. 2018): % of the run in which supply and demand do not move in the same direction.
    pub instability_pct: f64,
}

/// Curves that cannot be graded.
#[derive(Debug, Error, PartialEq)]
pub enum ElasticityError {
    #[error(
        "{times} sample times but {demand} demand and {supply} supply values: expected one of each per sample"
    )]
    Lengths {
        times: usize,
        demand: usize,
        supply: usize,
    },
    #[error("{0} sample(s): at least 2 are needed to span a duration")]
    TooShort(usize),
    #[error(
        "sample {index} is at {t} s, after {prev} s: sample times must be finite and strictly increasing"
    )]
    Times { index: usize, t: f64, prev: f64 },
}

/// The metrics of a run whose sample `i` at `times[i]` had demand `demand[i]` and supply `supply[i]`.
///
/// # Errors
/// When the three slices differ in length, hold fewer than 2 samples, or the times are not finite and
/// strictly increasing.
pub fn metrics(
    times: &[f64],
    demand: &[u64],
    supply: &[usize],
) -> Result<Elasticity, ElasticityError> {
    let n = times.len();
    if demand.len() != n || supply.len() != n {
        return Err(ElasticityError::Lengths {
            times: n,
            demand: demand.len(),
            supply: supply.len(),
        });
    }
    if n < 2 {
        return Err(ElasticityError::TooShort(n));
    }
    for (index, w) in times.windows(2).enumerate() {
        if !(w[0].is_finite() && w[1].is_finite() && w[1] > w[0]) {
            return Err(ElasticityError::Times {
                index: index + 1,
                t: w[1],
                prev: w[0],
            });
        }
    }
    let duration = times[n - 1] - times[0];
    let (mut area_u, mut area_o, mut time_u, mut time_o) = (0.0, 0.0, 0.0, 0.0);
    let (mut rel_u, mut rel_o, mut unstable) = (0.0, 0.0, 0.0);
    let (mut moved_s, mut moved_d) = (0.0, 0.0);
    for i in 0..n - 1 {
        let dt = times[i + 1] - times[i];
        // Consumer counts stay far below 2⁵³, so the float conversions are exact.
        let (d, s) = (demand[i] as f64, supply[i] as f64);
        let gap = d - s;
        if gap > 0.0 {
            area_u += gap * dt;
            time_u += dt;
            rel_u += gap / d.max(1.0) * dt;
        } else if gap < 0.0 {
            area_o += -gap * dt;
            time_o += dt;
            rel_o += -gap / d.max(1.0) * dt;
        }
        let (next_d, next_s) = (demand[i + 1] as f64, supply[i + 1] as f64);
        moved_d += (next_d - d).abs();
        moved_s += (next_s - s).abs();
        // The paper's term for step i+1: Δs and Δd from sample i to i+1, weighted by the interval between.
        let mismatch = (sign(next_s - s) - sign(next_d - d)).abs().min(1.0);
        unstable += mismatch * dt;
    }
    Ok(Elasticity {
        duration_s: duration,
        accuracy_under: area_u / duration,
        accuracy_over: area_o / duration,
        timeshare_under: time_u / duration,
        timeshare_over: time_o / duration,
        jitter_per_min: (moved_s - moved_d) / (duration / 60.0),
        theta_under_pct: 100.0 * rel_u / duration,
        theta_over_pct: 100.0 * rel_o / duration,
        instability_pct: 100.0 * unstable / duration,
    })
}

/// The metrics of a recorded run against its demand (one value per sample, e.g. from
/// [`super::demand::series_demand`]); the supply is each sample's consumers.
///
/// # Errors
/// As [`metrics`].
pub fn of_series(series: &Series, demand: &[u64]) -> Result<Elasticity, ElasticityError> {
    let times: Vec<f64> = series.samples.iter().map(|s| s.t).collect();
    let supply: Vec<usize> = series.samples.iter().map(|s| s.consumers).collect();
    metrics(&times, demand, &supply)
}

/// −1, 0 or 1 (`f64::signum` gives 1 for 0, which is not the paper's sgn).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The weights of the elastic speedup's metrics. Only their proportions matter: they are divided by their
/// sum. The default weighs each of the five equally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub theta_under: f64,
    pub theta_over: f64,
    pub timeshare_under: f64,
    pub timeshare_over: f64,
    pub instability: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            theta_under: 1.0,
            theta_over: 1.0,
            timeshare_under: 1.0,
            timeshare_over: 1.0,
            instability: 1.0,
        }
    }
}

/// The value, in percent, below which a metric counts as this value in a speedup ratio. A metric of 0 (a
/// run never under-provisioned, say) would make its ratio 0 or infinite, and with it the whole geometric
/// mean; 0.1 % is a thousandth of the run or of the demand, finer than a 1 s sample resolves in a run of
/// under 17 minutes. So two zeros give a ratio of 1, and a zero against 2 % gives 20, not infinity.
pub const SPEEDUP_FLOOR_PCT: f64 = 0.1;

/// The elastic speedup of `run` against `baseline` with equal weights; see [`elastic_speedup_weighted`].
pub fn elastic_speedup(run: &Elasticity, baseline: &Elasticity) -> f64 {
    elastic_speedup_weighted(run, baseline, &Weights::default())
}

/// `Π (max(baseline_m, floor) / max(run_m, floor))^(w_m / Σw)` over θ_U, θ_O, τ_U, τ_O and υ, in percent,
/// with the floor [`SPEEDUP_FLOOR_PCT`]. Greater than 1 when `run` did better. Negative or non-finite weights
/// count as 0; when none is left, every weight counts 1.
pub fn elastic_speedup_weighted(run: &Elasticity, baseline: &Elasticity, weights: &Weights) -> f64 {
    let pairs = [
        (
            weights.theta_under,
            run.theta_under_pct,
            baseline.theta_under_pct,
        ),
        (
            weights.theta_over,
            run.theta_over_pct,
            baseline.theta_over_pct,
        ),
        (
            weights.timeshare_under,
            100.0 * run.timeshare_under,
            100.0 * baseline.timeshare_under,
        ),
        (
            weights.timeshare_over,
            100.0 * run.timeshare_over,
            100.0 * baseline.timeshare_over,
        ),
        (
            weights.instability,
            run.instability_pct,
            baseline.instability_pct,
        ),
    ];
    let weight = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let total: f64 = pairs.iter().map(|p| weight(p.0)).sum();
    let floored = |m: f64| {
        if m.is_finite() {
            m.max(SPEEDUP_FLOOR_PCT)
        } else {
            SPEEDUP_FLOOR_PCT
        }
    };
    // A weighted geometric mean, summed in logarithms.
    let log: f64 = pairs
        .iter()
        .map(|&(w, r, b)| {
            let w = if total > 0.0 {
                weight(w) / total
            } else {
                1.0 / pairs.len() as f64
            };
            w * (floored(b) / floored(r)).ln()
        })
        .sum();
    log.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }

    /// Five samples 10 s apart, T = 40 s:
    ///
    /// ```text
    /// t        0   10   20   30   40
    /// demand   2    4    4    1    1
    /// supply   2    2    5    3    1
    /// ```
    fn example() -> Elasticity {
        let times = [0.0, 10.0, 20.0, 30.0, 40.0];
        match metrics(&times, &[2, 4, 4, 1, 1], &[2, 2, 5, 3, 1]) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn accuracy_is_the_mean_gap_on_each_side() {
        let e = example();
        close(e.duration_s, 40.0);
        // Under: [10,20) 4 − 2 = 2 for 10 s → 20 consumer·s / 40 s = 0.5.
        close(e.accuracy_under, 0.5);
        // Over: [20,30) 5 − 4 = 1 and [30,40) 3 − 1 = 2, 10 s each → 30 / 40 = 0.75.
        close(e.accuracy_over, 0.75);
    }

    #[test]
    fn timeshare_is_the_fraction_of_time_on_each_side() {
        let e = example();
        // Under during [10,20): 10 / 40 = 0.25; over during [20,40): 20 / 40 = 0.5; [0,10) matched.
        close(e.timeshare_under, 0.25);
        close(e.timeshare_over, 0.5);
    }

    #[test]
    fn theta_is_the_gap_relative_to_the_demand() {
        let e = example();
        // θ_U = 100 · (2/4 · 10) / 40 = 12.5 %.
        close(e.theta_under_pct, 12.5);
        // θ_O = 100 · (1/4 · 10 + 2/1 · 10) / 40 = 100 · 22.5 / 40 = 56.25 %.
        close(e.theta_over_pct, 56.25);
    }

    #[test]
    fn jitter_counts_replicas_changed_per_minute() {
        let e = example();
        // Supply moves 0 + 3 + 2 + 2 = 7, demand 2 + 0 + 3 + 0 = 5: (7 − 5) / (40/60 min) = 3 per minute.
        close(e.jitter_per_min, 3.0);
        // An engine that never moves while demand goes 1 → 4 → 1 over 2 minutes: (0 − 6) / 2 = −3 (sluggish).
        let Ok(flat) = metrics(&[0.0, 60.0, 120.0], &[1, 4, 1], &[2, 2, 2]) else {
            panic!("valid curves")
        };
        close(flat.jitter_per_min, -3.0);
    }

    #[test]
    fn instability_is_the_time_supply_and_demand_do_not_move_together() {
        let e = example();
        // Step to 10: Δs 0, Δd +2 → |0 − 1| = 1.   Step to 20: Δs +3, Δd 0 → 1.
        // Step to 30: Δs −2, Δd −3 → |−1 + 1| = 0. Step to 40: Δs −2, Δd 0 → 1.
        // 3 steps of 10 s out of 40 s = 75 %.
        close(e.instability_pct, 75.0);
        // Moving in opposite directions counts 1, not 2: 1 → 2 while demand 3 → 2, over 1 s → 100 %.
        let Ok(opposite) = metrics(&[0.0, 1.0], &[3, 2], &[1, 2]) else {
            panic!("valid curves")
        };
        close(opposite.instability_pct, 100.0);
    }

    #[test]
    fn uneven_intervals_weigh_by_their_length() {
        // [0,1): 3 vs 1 → 2 missing for 1 s; [1,4): matched. T = 4 s.
        let Ok(e) = metrics(&[0.0, 1.0, 4.0], &[3, 1, 1], &[1, 1, 1]) else {
            panic!("valid curves")
        };
        close(e.accuracy_under, 0.5); // 2 · 1 / 4
        close(e.timeshare_under, 0.25); // 1 / 4
        close(e.theta_under_pct, 100.0 * (2.0 / 3.0) / 4.0); // 16.67 %
        // Step to 1: Δs 0, Δd −2 → 1 for 1 s; step to 4: both flat → 0. 1 / 4 = 25 %.
        close(e.instability_pct, 25.0);
        // Demand moved 2, supply 0, over 4 s = 1/15 min: −30 per minute.
        close(e.jitter_per_min, -30.0);
    }

    #[test]
    fn idle_consumers_at_zero_demand_count_against_one() {
        // Demand 0, supply 2 for 10 s of 10 s: θ_O = 100 · (2/1 · 10) / 10 = 200 %, a_O = 2.
        let Ok(e) = metrics(&[0.0, 10.0], &[0, 0], &[2, 2]) else {
            panic!("valid curves")
        };
        close(e.theta_over_pct, 200.0);
        close(e.accuracy_over, 2.0);
        close(e.timeshare_over, 1.0);
    }

    #[test]
    fn a_perfect_run_scores_zero_everywhere() {
        let Ok(e) = metrics(&[0.0, 5.0, 10.0], &[1, 3, 2], &[1, 3, 2]) else {
            panic!("valid curves")
        };
        for v in [
            e.accuracy_under,
            e.accuracy_over,
            e.timeshare_under,
            e.timeshare_over,
            e.jitter_per_min,
            e.theta_under_pct,
            e.theta_over_pct,
            e.instability_pct,
        ] {
            close(v, 0.0);
        }
    }

    #[test]
    fn bad_curves_are_refused_with_the_reason() {
        assert_eq!(
            metrics(&[0.0, 1.0], &[1], &[1, 1]),
            Err(ElasticityError::Lengths {
                times: 2,
                demand: 1,
                supply: 2
            })
        );
        assert_eq!(
            metrics(&[0.0], &[1], &[1]),
            Err(ElasticityError::TooShort(1))
        );
        let e = metrics(&[0.0, 2.0, 2.0], &[1, 1, 1], &[1, 1, 1]);
        assert_eq!(
            e,
            Err(ElasticityError::Times {
                index: 2,
                t: 2.0,
                prev: 2.0
            })
        );
        let Err(e) = metrics(&[0.0, f64::NAN], &[1, 1], &[1, 1]) else {
            panic!("NaN accepted")
        };
        assert!(e.to_string().contains("strictly increasing"), "{e}");
    }

    fn with(theta_u: f64, theta_o: f64, tau_u: f64, tau_o: f64, upsilon: f64) -> Elasticity {
        Elasticity {
            duration_s: 60.0,
            accuracy_under: 0.0,
            accuracy_over: 0.0,
            timeshare_under: tau_u,
            timeshare_over: tau_o,
            jitter_per_min: 0.0,
            theta_under_pct: theta_u,
            theta_over_pct: theta_o,
            instability_pct: upsilon,
        }
    }

    #[test]
    fn elastic_speedup_is_the_geometric_mean_of_the_ratios() {
        let run = example(); // θ_U 12.5, θ_O 56.25, τ_U 25 %, τ_O 50 %, υ 75
        let baseline = with(25.0, 56.25, 0.5, 0.5, 75.0);
        // Ratios baseline/run: 2, 1, 2, 1, 1 → (2·2)^(1/5) = 4^0.2 = 1.319_507_91.
        close(elastic_speedup(&run, &baseline), 4f64.powf(0.2));
        // Against itself: 1. The other way round: 1 / 1.3195 = 0.757_858_28.
        close(elastic_speedup(&run, &run), 1.0);
        close(elastic_speedup(&baseline, &run), 4f64.powf(-0.2));
        // All the weight on θ_U: the θ_U ratio alone, 2.
        let only = Weights {
            theta_under: 3.0,
            theta_over: 0.0,
            timeshare_under: 0.0,
            timeshare_over: 0.0,
            instability: 0.0,
        };
        close(elastic_speedup_weighted(&run, &baseline, &only), 2.0);
    }

    #[test]
    fn zero_metrics_are_floored_at_a_tenth_of_a_percent() {
        // θ_U 0 vs 2 % → 2 / 0.1 = 20; the other four 0 vs 0 → 0.1 / 0.1 = 1. 20^(1/5) = 1.820_564_39.
        let perfect = with(0.0, 0.0, 0.0, 0.0, 0.0);
        let baseline = with(2.0, 0.0, 0.0, 0.0, 0.0);
        close(elastic_speedup(&perfect, &baseline), 20f64.powf(0.2));
        close(elastic_speedup(&perfect, &perfect), 1.0);
        // Weights that are all 0 or invalid fall back to equal ones.
        let none = Weights {
            theta_under: 0.0,
            theta_over: -1.0,
            timeshare_under: f64::NAN,
            timeshare_over: 0.0,
            instability: 0.0,
        };
        close(
            elastic_speedup_weighted(&perfect, &baseline, &none),
            20f64.powf(0.2),
        );
    }

    #[test]
    fn a_recorded_series_is_graded_against_its_demand() {
        use super::super::demand::series_demand;
        use super::super::series::Sample;
        let sample = |t: f64, consumers: usize| Sample {
            t,
            depth: Some(0),
            consumers,
            remainders: 0,
            produce_rate: 0.0,
            busy_s: None,
            decided: None,
        };
        let series = Series {
            policy: None,
            settings: None,
            title: None,
            target: 50,
            band_low: 35,
            shape: Some("step:100,500@30s".into()),
            changes_s: vec![30.0],
            change_directions: Vec::new(),
            manual: Vec::new(),
            consumed: 0,
            lost: None,
            work: None,
            consumer_slots: None,
            started_us: None,
            samples: vec![sample(0.0, 3), sample(30.0, 10), sample(60.0, 13)],
        };
        let (Ok(shape), Ok(work)) = (
            workload::shape::Shape::parse("step:100,500@30s"),
            "sleep:100ms".parse::<workload::work::WorkSpec>(),
        ) else {
            panic!("valid specs")
        };
        // Demand [3, 13, 13] (100 then 500 msgs/s × 0.1 s ÷ 4 slots, rounded up); supply [3, 10, 13].
        let demand = series_demand(&series, &shape, &work, 4);
        assert_eq!(demand, [3, 13, 13]);
        let Ok(e) = of_series(&series, &demand) else {
            panic!("valid series")
        };
        // 3 missing over [30,60) of 60 s: a_U = 90 / 60 = 1.5, τ_U = 0.5, θ_U = 100 · (3/13 · 30) / 60 = 11.54 %.
        close(e.accuracy_under, 1.5);
        close(e.timeshare_under, 0.5);
        close(e.theta_under_pct, 100.0 * 3.0 / 13.0 * 30.0 / 60.0);
        // Both rise at 30 s (same direction), and at 60 s supply rises 3 while demand stays: 30 of 60 s = 50 %.
        close(e.instability_pct, 50.0);
        // Supply moved 7 + 3 = 10, demand 10: jitter 0.
        close(e.jitter_per_min, 0.0);
    }

    #[test]
    fn elasticity_serialises_with_named_fields() {
        let Ok(json) = serde_json::to_value(example()) else {
            panic!("serialisable")
        };
        assert_eq!(json["accuracy_under"], 0.5);
        assert_eq!(json["instability_pct"], 75.0);
        assert_eq!(json["jitter_per_min"], 3.0);
    }
}

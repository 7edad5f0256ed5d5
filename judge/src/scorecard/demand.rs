//! The demand of a run, in consumers: what a perfect scaling engine would run, worked out from the scenario
//! alone. The elasticity metrics ([`super::elasticity`]) compare the consumers an engine actually ran with it.
//!
//! # Definition
//!
//! Over each sample interval `[tᵢ, tᵢ₊₁)` of a recorded run,
//!
//! ```text
//! λᵢ = (A(tᵢ₊₁⁻) − A(tᵢ⁻)) / (tᵢ₊₁ − tᵢ)        mean arrival rate over the interval, msgs/s
//! dᵢ = ⌈ λᵢ · w̄ / slots ⌉                        consumers
//! ```
//!
//! - `A(t)` is [`Shape::sent_by_secs`], the shape's exact integral (messages due in `[0, t]`), and `A(t⁻)` its
//!   limit from the left, so a message due exactly at `tᵢ₊₁` belongs to the next interval. The mean rate over
//!   the interval, rather than the rate at `tᵢ`, is what makes ramps and sines exact (their integral, not a
//!   point on them) and what gives bursts and replayed offsets, whose rate is 0 everywhere, a demand at all.
//! - `w̄` is the mean work per message ([`work_mean_s`]): the work model's mean after its cap, so
//!   `sleep:exp(1s,max=50ms)` counts for what the consumer really does, not 1 s.
//! - `slots` is the consumer's `--max-in-flight`: the messages one consumer works on at once.
//! - `λ·w̄` is the offered load in busy slots (Little's law: arrival rate × time in service), so `dᵢ` is the
//!   fewest consumers whose slots can do the interval's arriving work within the interval. At exactly 100 %
//!   a queue with random arrivals or work still grows, so `dᵢ` is a lower bound: a good engine sits at or a
//!   little above it. `cpu:` work is counted like `sleep:` work, i.e. as if a consumer's slots had a core each.
//! - The ceiling forgives float error of one part in 10⁹, so that 100 msgs/s × 70 ms over 1 slot
//!   (7.000000000000001 in floats) is 7 consumers, not 8.
//!
//! Each `dᵢ` holds from `tᵢ` to `tᵢ₊₁`, a step function like the supply. The last sample opens no interval:
//! it carries the one before it (a run of a single sample takes the shape's rate at its time).
//!
//! **Bursts** count as their integral spread over the sample interval that contains them: a 5,000-message
//! burst of 20 ms work within a 1 s interval asks for 100 slot-seconds in that second. The height of that
//! step depends on the sampling interval, but its area (the work) does not, and the area is what the
//! accuracy metrics weigh.
//!
//! **Backlog does not count.** Demand is a function of the scenario only, as BUNGEE's demand curve is its
//! load intensity profile mapped through a system analysis made before the run (github.com/NikolasHerbst/BUNGEE,
//! README): a backlog exists only because the engine under test ran too few consumers earlier, and counting it
//! would make the yardstick depend on the engine it measures. Its cost shows in the under-provisioning the metrics already charge and in the depth
//! figures kept beside them.
//!
//! **`poisson:`** terms count their expected rate (the shape's integral takes the expectation), so the
//! demand of a Poisson load is that of the constant load with its mean.

use workload::shape::Shape;
use workload::work::WorkSpec;

use super::series::Series;

/// The demand `dᵢ` at each of `times` (seconds from the shape's start), one value per time; see the
/// module documentation for the definition. `slots` below 1 is taken as 1 (the consumer refuses 0), and a
/// non-finite or negative `work_mean_s` as 0 work.
pub fn demand_series(shape: &Shape, work_mean_s: f64, slots: usize, times: &[f64]) -> Vec<u64> {
    let per_msg = if work_mean_s.is_finite() {
        work_mean_s.max(0.0)
    } else {
        0.0
    };
    let slots = slots.max(1) as f64;
    let consumers = |rate: f64| ceil_forgiving(rate * per_msg / slots);
    let mut out: Vec<u64> = times
        .windows(2)
        .map(|w| {
            let (from, to) = (w[0], w[1]);
            let span = to - from;
            if span > 0.0 && span.is_finite() {
                let due =
                    shape.sent_by_secs(just_before(to)) - shape.sent_by_secs(just_before(from));
                consumers(due / span)
            } else {
                // A zero-length or reversed interval has no area; its value only matters as a level.
                consumers(shape.rate_at_secs(from))
            }
        })
        .collect();
    match (out.last().copied(), times.first()) {
        (Some(last), _) => out.push(last),
        (None, Some(&t)) => out.push(consumers(shape.rate_at_secs(t))),
        (None, None) => {}
    }
    out
}

/// The demand at each sample of a recorded `series`: [`demand_series`] at the samples' times.
pub fn series_demand(series: &Series, shape: &Shape, work: &WorkSpec, slots: usize) -> Vec<u64> {
    let times: Vec<f64> = series.samples.iter().map(|s| s.t).collect();
    demand_series(shape, work_mean_s(work), slots, &times)
}

/// The mean work per message in seconds, cap included ([`WorkSpec::mean_secs`], where the work model's
/// closed forms live).
pub fn work_mean_s(spec: &WorkSpec) -> f64 {
    spec.mean_secs()
}

/// The largest float below `t` (`f64::next_down`, stable only from Rust 1.86, above this workspace's MSRV):
/// the shape's integral there is its left limit at `t` for every jump, and differs from `A(t)` by less than
/// one part in 10¹⁵ elsewhere.
fn just_before(t: f64) -> f64 {
    if t > 0.0 && t.is_finite() {
        f64::from_bits(t.to_bits() - 1)
    } else if t == 0.0 {
        -f64::MIN_POSITIVE
    } else {
        t
    }
}

/// `⌈x⌉`, except that a value within one part in 10⁹ of a whole number is that number; NaN and negatives
/// are 0.
fn ceil_forgiving(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let near = x.round();
    let c = if (x - near).abs() <= 1e-9 * near.max(1.0) {
        near
    } else {
        x.ceil()
    };
    // `as` saturates at u64::MAX, which only an absurd rate could reach.
    c as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(spec: &str) -> Shape {
        match Shape::parse(spec) {
            Ok(s) => s,
            Err(e) => panic!("{spec}: {e}"),
        }
    }

    fn work(spec: &str) -> f64 {
        match spec.parse::<WorkSpec>() {
            Ok(w) => work_mean_s(&w),
            Err(e) => panic!("{spec}: {e}"),
        }
    }

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want}");
    }

    // Every shape below runs 100 ms of work per message on consumers of 4 slots: one consumer does 40 msgs/s.
    const W: f64 = 0.1;
    const SLOTS: usize = 4;

    #[test]
    fn const_demand_rounds_up_to_whole_consumers() {
        // 100 msgs/s × 0.1 s = 10 busy slots; 10 / 4 = 2.5 → 3 consumers.
        assert_eq!(
            demand_series(&shape("const:100"), W, SLOTS, &[0.0, 1.0, 2.0]),
            [3, 3, 3]
        );
        // 160 × 0.1 / 4 = 4 exactly: 4, not 5.
        assert_eq!(
            demand_series(&shape("const:160"), W, SLOTS, &[0.0, 1.0]),
            [4, 4]
        );
        // 100 × 0.07 / 1 = 7, which floats make 7.000000000000001: still 7.
        assert_eq!(
            demand_series(&shape("const:100"), 0.07, 1, &[0.0, 1.0]),
            [7, 7]
        );
    }

    #[test]
    fn step_demand_averages_the_interval_that_holds_the_step() {
        let s = shape("step:100,500@30s");
        // [0,30): 100 → 2.5 → 3; [30,60): 500 × 0.1 / 4 = 12.5 → 13; the last sample carries 13.
        assert_eq!(demand_series(&s, W, SLOTS, &[0.0, 30.0, 60.0]), [3, 13, 13]);
        // [20,40): 100×10 + 500×10 = 6000 msgs in 20 s = 300/s → 30 / 4 = 7.5 → 8.
        assert_eq!(demand_series(&s, W, SLOTS, &[20.0, 40.0]), [8, 8]);
    }

    #[test]
    fn ramp_demand_is_the_integral_over_each_interval() {
        // sent_by(30) = 1000·30²/(2·60) = 7500: 250/s → 25 / 4 = 6.25 → 7;
        // [30,60): 30000 − 7500 = 22500 in 30 s = 750/s → 75 / 4 = 18.75 → 19.
        let r = shape("ramp:0..1000/60s");
        assert_eq!(demand_series(&r, W, SLOTS, &[0.0, 30.0, 60.0]), [7, 19, 19]);
    }

    #[test]
    fn sine_demand_is_the_integral_over_each_interval() {
        // sent_by(60) = 500·60 + 400·(1 − cos π)/ω with ω = 2π/120 = π/60: 30000 + 48000/π = 45278.87;
        // 754.65/s → 75.465 / 4 = 18.87 → 19; [60,120): 60000 − 45278.87 = 14721.13 → 245.35/s → 6.13 → 7.
        let s = shape("sine:500+-400/120s");
        assert_eq!(demand_series(&s, W, SLOTS, &[0.0, 60.0, 120.0]), [19, 7, 7]);
    }

    #[test]
    fn a_burst_counts_in_the_interval_that_starts_at_it() {
        let b = shape("const:100+burst:5000@10s");
        // [0,5) and [5,10): 100/s → 3. [10,15): 500 + 5000 msgs in 5 s = 1100/s → 110 / 4 = 27.5 → 28.
        // The burst is due at exactly 10 s, so it belongs to [10,15), not to [5,10).
        assert_eq!(
            demand_series(&b, W, SLOTS, &[0.0, 5.0, 10.0, 15.0, 20.0]),
            [3, 3, 28, 3, 3]
        );
        // A burst at 0 counts in the first interval: 40 msgs in 1 s → 4 / 4 = 1.
        assert_eq!(
            demand_series(&shape("burst:40@0s"), W, SLOTS, &[0.0, 1.0, 2.0]),
            [1, 0, 0]
        );
    }

    #[test]
    fn poisson_demand_is_that_of_its_mean_rate() {
        // Expected 200/s → 20 / 4 = 5.
        assert_eq!(
            demand_series(&shape("poisson:200"), W, SLOTS, &[0.0, 10.0]),
            [5, 5]
        );
    }

    #[test]
    fn replay_demand_counts_rates_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let rates = dir.path().join("rates.csv");
        std::fs::write(&rates, "0,100\n10,300\n20,0\n").unwrap();
        // [0,10): 100 → 3; [10,20): 300 × 0.1 / 4 = 7.5 → 8; [20,30): 0.
        let r = shape(&format!("replay:{}", rates.display()));
        assert_eq!(
            demand_series(&r, W, SLOTS, &[0.0, 10.0, 20.0, 30.0]),
            [3, 8, 0, 0]
        );
        let offsets = dir.path().join("offsets.txt");
        std::fs::write(&offsets, "0.5\n0.5\n1.25\n3\n").unwrap();
        // [0,1): 2 msgs → 0.2 / 4 → 1; [1,2): 1 → 1; [2,3): none → 0; [3,4): the one at 3 s → 1.
        let o = shape(&format!("replay:{}", offsets.display()));
        assert_eq!(
            demand_series(&o, W, SLOTS, &[0.0, 1.0, 2.0, 3.0, 4.0]),
            [1, 1, 0, 1, 1]
        );
    }

    #[test]
    fn odd_inputs_give_a_value_per_time_and_never_panic() {
        let c = shape("const:100");
        assert!(demand_series(&c, W, SLOTS, &[]).is_empty());
        // One sample: the rate at its time.
        assert_eq!(demand_series(&c, W, SLOTS, &[5.0]), [3]);
        // 0 slots count as 1: 10 consumers. NaN work counts as none.
        assert_eq!(demand_series(&c, W, 0, &[0.0, 1.0]), [10, 10]);
        assert_eq!(demand_series(&c, f64::NAN, SLOTS, &[0.0, 1.0]), [0, 0]);
        // A repeated time has no area: the rate there, 3.
        assert_eq!(demand_series(&c, W, SLOTS, &[1.0, 1.0, 2.0]), [3, 3, 3]);
    }

    #[test]
    fn fixed_work_means_are_their_duration() {
        close(work("none"), 0.0, 0.0);
        close(work("sleep:300ms"), 0.3, 1e-12);
        close(work("cpu:5ms"), 0.005, 1e-12);
    }

    #[test]
    fn exponential_mean_counts_its_cap() {
        // m·(1 − e^(−c/m)): default cap 10·m → 0.2·(1 − e^−10) = 0.2 − 0.2·4.540e−5 = 0.199_990_92.
        close(work("sleep:exp(200ms)"), 0.199_990_92, 1e-8);
        // 1 s capped at 50 ms: 1 − e^−0.05 = 0.048_770_58, not 1 s.
        close(work("cpu:exp(1s,max=50ms)"), 0.048_770_58, 1e-8);
    }

    #[test]
    fn uniform_mean_counts_its_cap() {
        close(work("sleep:uniform(100ms..500ms)"), 0.3, 1e-12);
        // Cap 300 ms: ((0.3² − 0.1²)/2 + 0.3·(0.5 − 0.3)) / 0.4 = (0.04 + 0.06) / 0.4 = 0.25.
        close(work("sleep:uniform(100ms..500ms,max=300ms)"), 0.25, 1e-12);
    }

    #[test]
    fn lognormal_mean_counts_its_cap() {
        // Cap at the median (z = 0): 10 ms·e^0.5·Φ(−1) + 10 ms·(1 − Φ(0))
        // = 16.487 ms × 0.158_655 + 5 ms = 2.6158 + 5 = 7.6158 ms.
        close(
            work("sleep:lognormal(10ms,1.0,max=10ms)"),
            0.007_615_8,
            1e-7,
        );
        // Default cap 10 × mean (mean 5 ms·e^0.5 = 8.2436 ms, cap 82.436 ms, z = ln 10 + 0.5 = 2.8026):
        // 8.2436 × Φ(1.8026) + 82.436 × (1 − Φ(2.8026)) = 8.2436 × 0.964_273 + 82.436 × 0.002_535
        // = 7.9491 + 0.2090 = 8.1580 ms.
        close(work("cpu:lognormal(5ms,1.0)"), 0.008_158_0, 1e-7);
    }

    #[test]
    fn normal_mean_counts_the_cut_at_0_and_the_cap() {
        // Cap at the mean: α = −5, β = 0. m·(½ − Φ(−5)) + s·(φ(−5) − φ(0)) + c·½
        // = 0.05 − 0.02 × 0.398_942 + 0.05 (the Φ(−5), φ(−5) terms are below 3e−8) = 0.092_021_2.
        close(
            work("sleep:normal(100ms,20ms,max=100ms)"),
            0.092_021_2,
            1e-7,
        );
        // Mean 5 SD above 0, cap 1 s far above: the mean itself.
        close(work("sleep:normal(100ms,20ms)"), 0.1, 1e-7);
    }
}

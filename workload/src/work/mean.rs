//! The work model's exact means, cap included: what a consumer does per message on average. The scorecard's
//! demand (consumers needed) is the arrival rate times this mean.

use super::{Work, WorkDist, WorkSpec};

impl WorkSpec {
    /// The mean work per message in seconds, exactly, cap included: `E[min(X, cap)]` for a drawn work (a
    /// draw above the cap is clamped to it), the duration for a fixed one, 0 for `none`. The scorecard's
    /// demand is made from it.
    pub fn mean_secs(&self) -> f64 {
        match *self {
            WorkSpec::Fixed(Work::None) => 0.0,
            WorkSpec::Fixed(Work::Sleep(d) | Work::Cpu(d)) => d.as_secs_f64(),
            WorkSpec::Drawn { dist, cap, .. } => capped_mean(&dist, cap.as_secs_f64()),
        }
    }
}

/// `E[min(X, c)]` for each distribution. Closed forms: `E[min(X,c)] = ∫₀ᶜ P(X > x) dx`, worked out per
/// distribution below.
fn capped_mean(dist: &WorkDist, c: f64) -> f64 {
    match *dist {
        // ∫₀ᶜ e^(−x/m) dx = m·(1 − e^(−c/m)).
        WorkDist::Exp { mean } if mean > 0.0 => mean * (1.0 - (-c / mean).exp()),
        WorkDist::Exp { .. } => 0.0,
        WorkDist::Uniform { lo, hi } => {
            if c >= hi {
                (lo + hi) / 2.0
            } else if c <= lo || hi <= lo {
                c.min(lo)
            } else {
                // Below the cap: ∫ₗₒᶜ x dx/(hi−lo); above it: c·P(X > c).
                ((c * c - lo * lo) / 2.0 + c * (hi - c)) / (hi - lo)
            }
        }
        // With μ = ln median: E[X·1(X≤c)] = e^(μ+σ²/2)·Φ((ln c − μ − σ²)/σ), plus c·P(X > c).
        WorkDist::LogNormal { median, sigma } if sigma > 0.0 => {
            let mu = median.ln();
            let z = (c.ln() - mu) / sigma;
            (mu + sigma * sigma / 2.0).exp() * normal_cdf(z - sigma) + c * (1.0 - normal_cdf(z))
        }
        WorkDist::LogNormal { median, .. } => median.min(c),
        // Clamped to [0, c]: with α = −m/s, β = (c−m)/s,
        // E = m·(Φ(β) − Φ(α)) + s·(φ(α) − φ(β)) + c·(1 − Φ(β)); the draws below 0 add 0.
        WorkDist::Normal { mean, sd } if sd > 0.0 => {
            let (a, b) = (-mean / sd, (c - mean) / sd);
            mean * (normal_cdf(b) - normal_cdf(a))
                + sd * (density(a) - density(b))
                + c * (1.0 - normal_cdf(b))
        }
        WorkDist::Normal { mean, .. } => mean.clamp(0.0, c),
    }
}

/// Standard normal density.
fn density(z: f64) -> f64 {
    (-z * z / 2.0).exp() / (std::f64::consts::TAU).sqrt()
}

/// Standard normal CDF, from erfc by Numerical Recipes' `erfcc` (2nd ed., §6.2; relative error below
/// 1.2·10⁻⁷). The work model's tests check draws against it too.
pub fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

//! The JSON the scorecard writes (`series.json`, `scorecard.json`, `compare.json` and the documents on
//! stdout), with every figure rounded to [`DECIMALS`] decimal places as it is written.
//!
//! The figures are sums and ratios of binary floats, so they carry noise in their last digits
//! (`0.30000000000000004`); a person reading the file should see `0.3`. The rounding happens here, at the
//! edge, and nowhere else: the grading computes at full precision. Six places keep everything a series
//! records (times to the ms, busy time to the µs, rates to 0.1), so that a series written and read back grades
//! the same.

use serde::Serialize;
use serde_json::Value;

/// Decimal places kept in every figure written (µs, for seconds).
pub const DECIMALS: i32 = 6;

/// `x` rounded to [`DECIMALS`] places; as is when it is too large to have them (beyond 2^53 / 10^6, where a
/// double has no digit after the point to round) or not finite.
pub fn round(x: f64) -> f64 {
    let scale = 10f64.powi(DECIMALS);
    let scaled = x * scale;
    if !scaled.is_finite() || scaled.abs() >= 2f64.powi(53) {
        return x;
    }
    // The quotient is the double nearest the decimal with DECIMALS places, which serde_json prints as that
    // decimal (it writes the shortest text that reads back as the same double). `+ 0.0` turns -0 into 0.
    (scaled.round() / scale) + 0.0
}

/// `value` as a JSON tree, every float rounded by [`round`] (integers are left alone).
///
/// # Errors
/// When `value` cannot be serialised (a map with keys that are not strings; none of the scorecard's types).
pub fn rounded(value: &impl Serialize) -> serde_json::Result<Value> {
    let mut tree = serde_json::to_value(value)?;
    round_tree(&mut tree);
    Ok(tree)
}

fn round_tree(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(r) = n
                .as_f64()
                .and_then(|x| serde_json::Number::from_f64(round(x)))
            {
                *n = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(round_tree),
        Value::Object(map) => map.values_mut().for_each(round_tree),
        _ => {}
    }
}

/// [`rounded`], pretty-printed: for files.
///
/// # Errors
/// See [`rounded`].
pub fn to_string_pretty(value: &impl Serialize) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&rounded(value)?)
}

/// [`rounded`], on one line: for stdout.
///
/// # Errors
/// See [`rounded`].
pub fn to_string(value: &impl Serialize) -> serde_json::Result<String> {
    serde_json::to_string(&rounded(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_goes_and_the_recorded_resolution_stays() {
        assert_eq!(round(0.1 + 0.2), 0.3);
        assert_eq!(serde_json::to_string(&round(0.1 + 0.2)).unwrap(), "0.3");
        assert_eq!(round(5.0 / 6.0), 0.833333);
        assert_eq!(round(1234.567), 1234.567);
        assert_eq!(round(0.000_123_4), 0.000123);
        assert_eq!(round(-1e-9).to_string(), "0");
        assert_eq!(round(1e300), 1e300);
        assert!(round(f64::NAN).is_nan());
        let doc =
            serde_json::json!({"a": [0.30000000000000004, 7], "b": {"c": 2.0000000000000004}});
        assert_eq!(to_string(&doc).unwrap(), r#"{"a":[0.3,7],"b":{"c":2.0}}"#);
    }
}

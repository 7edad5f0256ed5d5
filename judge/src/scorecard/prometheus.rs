//! The Prometheus source of a consumer count: one PromQL query against a Prometheus server's HTTP API
//! (`GET /api/v1/query`, an instant query at the server's now), wherever the cluster runs one (most
//! clusters running KEDA do). What the query counts is the user's choice, e.g. kube-state-metrics'
//! `kube_deployment_status_replicas_available{deployment="consumer"}` or `count(mw_consumer_slots)` for the
//! consumers running, `kube_deployment_spec_replicas{…}` or
//! `kube_horizontalpodautoscaler_status_desired_replicas{…}` for what the engine decided.
//!
//! The reply must be one number: a scalar, or an instant vector of at most one series. An empty vector is 0
//! (PromQL gives no series when nothing matches: `count(mw_consumer_slots)` with no consumer up). Several
//! series are an error that names them, never silently added: a query that matches two deployments, or two
//! kube-state-metrics replicas' copies of one, would double the count; the user says `sum(…)` when adding is
//! meant. API reference: <https://prometheus.io/docs/prometheus/latest/querying/api/>.

use serde_json::Value;

/// A reply of the query API that does not give one whole count.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// `"status": "error"`: Prometheus' own `errorType` and `error` (a PromQL syntax error, a timeout).
    #[error("Prometheus refused the query ({kind}): {message}")]
    Refused { kind: String, message: String },
    #[error("not a Prometheus query reply ({0})")]
    Shape(&'static str),
    #[error(
        "the query returned {n} series ({labels}), not one: wrap it in sum(…) if they should be added, or narrow its labels"
    )]
    Several { n: usize, labels: String },
    #[error("the query returned a {0}, not an instant vector or a scalar")]
    ResultType(String),
    #[error("the query's value {0:?} is not a whole, non-negative count")]
    NotACount(String),
}

/// The count in a `/api/v1/query` reply (its JSON document, whatever the HTTP status: Prometheus sends its
/// errors as JSON with a 4xx or 5xx).
///
/// # Errors
/// See [`ReplyError`].
pub fn count_of(doc: &Value) -> Result<usize, ReplyError> {
    match doc.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some("error") => {
            let text = |k: &str| {
                doc.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string()
            };
            return Err(ReplyError::Refused {
                kind: text("errorType"),
                message: text("error"),
            });
        }
        _ => return Err(ReplyError::Shape("no \"status\"")),
    }
    let data = doc.get("data").ok_or(ReplyError::Shape("no \"data\""))?;
    let result = data
        .get("result")
        .ok_or(ReplyError::Shape("no \"data.result\""))?;
    let sample = match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => result,
        Some("vector") => {
            let series = result
                .as_array()
                .ok_or(ReplyError::Shape("a vector that is not a list"))?;
            match series.as_slice() {
                [] => return Ok(0),
                [one] => one
                    .get("value")
                    .ok_or(ReplyError::Shape("a series without \"value\""))?,
                several => {
                    return Err(ReplyError::Several {
                        n: several.len(),
                        labels: labels_of(several),
                    });
                }
            }
        }
        Some(other) => return Err(ReplyError::ResultType(other.to_string())),
        None => return Err(ReplyError::Shape("no \"data.resultType\"")),
    };
    // A sample is [unix time, "value"]: the value is a string, so that NaN and ±Inf survive JSON.
    let text = sample
        .get(1)
        .and_then(Value::as_str)
        .ok_or(ReplyError::Shape("a sample that is not [time, \"value\"]"))?;
    let v: f64 = text
        .parse()
        .map_err(|_| ReplyError::NotACount(text.to_string()))?;
    let whole = v.round();
    // Counts are whole numbers; a fraction means the query computes something else (an average, a rate).
    if !v.is_finite() || v < 0.0 || (v - whole).abs() > 1e-9 || whole > u32::MAX as f64 {
        return Err(ReplyError::NotACount(text.to_string()));
    }
    Ok(whole as usize)
}

/// `{deployment="a"}, {deployment="b"}`: the first three series' labels, for the error that names them.
fn labels_of(series: &[Value]) -> String {
    let mut shown: Vec<String> = series
        .iter()
        .take(3)
        .map(|s| {
            let pairs: Vec<String> = s
                .get("metric")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}={}",
                                v.as_str().map_or(v.to_string(), |s| format!("{s:?}"))
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", pairs.join(","))
        })
        .collect();
    if series.len() > 3 {
        shown.push("…".into());
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(values: &[(&str, &str)]) -> Value {
        let result: Vec<Value> = values
            .iter()
            .map(|(d, v)| json!({"metric": {"deployment": d}, "value": [1_700_000_000.123, v]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn one_series_or_a_scalar_is_the_count_and_none_is_zero() {
        assert_eq!(count_of(&vector(&[("consumer", "3")])), Ok(3));
        assert_eq!(count_of(&vector(&[])), Ok(0));
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.5, "4"]}});
        assert_eq!(count_of(&scalar), Ok(4));
    }

    #[test]
    fn several_series_are_an_error_that_names_them() {
        let e = count_of(&vector(&[("a", "1"), ("b", "2")])).unwrap_err();
        assert!(matches!(e, ReplyError::Several { n: 2, .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("deployment=\"a\"") && text.contains("sum(…)"),
            "{text}"
        );
    }

    #[test]
    fn errors_and_odd_replies_say_what_is_wrong() {
        let refused = json!({"status": "error", "errorType": "bad_data",
            "error": "invalid parameter \"query\": 1:6: parse error: unclosed left parenthesis"});
        let e = count_of(&refused).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Prometheus refused the query (bad_data): invalid parameter \"query\": 1:6: parse error: unclosed left parenthesis"
        );
        for (doc, want) in [
            (json!({"data": {}}), "no \"status\""),
            (json!({"status": "success"}), "no \"data\""),
            (
                json!({"status": "success", "data": {"resultType": "vector", "result": {}}}),
                "not a list",
            ),
            (
                json!({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, 2]}]}}),
                "[time, \"value\"]",
            ),
            (
                json!({"status": "success", "data": {"resultType": "matrix", "result": []}}),
                "matrix",
            ),
        ] {
            let e = count_of(&doc).unwrap_err().to_string();
            assert!(e.contains(want), "{doc}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        for v in ["NaN", "+Inf", "-1", "2.5", "x"] {
            assert_eq!(
                count_of(&vector(&[("a", v)])),
                Err(ReplyError::NotACount(v.into())),
                "{v}"
            );
        }
        // Floats that are whole numbers are counts.
        assert_eq!(count_of(&vector(&[("a", "2e0")])), Ok(2));
    }
}

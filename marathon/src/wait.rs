//! Waiting for a deployment: Marathon's change is done when its deployment is gone from
//! `/v2/deployments`. Progress (the current step and its actions) goes to stderr when it changes.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Client;
use super::errors::MarathonError;

/// A deployment's progress in one line: `step 1/2: StartApplication /g/a, StartApplication /g/b`.
fn progress(d: &Value) -> String {
    let step = d.get("currentStep").and_then(Value::as_u64).unwrap_or(0);
    let total = d.get("totalSteps").and_then(Value::as_u64).unwrap_or(0);
    let actions: Vec<String> = d
        .get("currentActions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{} {}",
                        x.get("action").and_then(Value::as_str).unwrap_or("?"),
                        x.get("app").and_then(Value::as_str).unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("step {step}/{total}: {}", actions.join(", "))
}

/// Polls until deployment `id` is gone or `deadline` passes, printing progress when it changes. Returns how
/// long the wait took; `command_start` dates the error's "still running after".
pub async fn until_done(
    client: &Client,
    id: &str,
    deadline: Instant,
    command_start: Instant,
    poll: Duration,
) -> Result<Duration, MarathonError> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let list = client.deployments().await?;
        let Some(d) = list
            .iter()
            .find(|d| d.get("id").and_then(Value::as_str) == Some(id))
        else {
            return Ok(started.elapsed());
        };
        let now = progress(d);
        if now != last {
            workload::note!("  deployment {id}: {now}");
            last = now;
        }
        let now_t = Instant::now();
        if now_t >= deadline {
            return Err(MarathonError::Stuck {
                id: id.to_string(),
                waited: command_start.elapsed().as_secs_f64(),
                progress: last,
                url: client.base().to_string(),
            });
        }
        let left = deadline.saturating_duration_since(now_t);
        tokio::time::sleep(poll.min(left).max(Duration::from_millis(10))).await;
    }
}

/// The first pause after a 409 "locked by a deployment"; doubled each time, at most [`LOCK_PAUSE_MAX`].
const LOCK_PAUSE: Duration = Duration::from_secs(1);
const LOCK_PAUSE_MAX: Duration = Duration::from_secs(8);

/// Runs `op` until it is not refused as locked, backing off between tries, until `deadline`; then the
/// last 409 is the error (which says to pass --force).
pub async fn retry_locked<T, F, Fut>(deadline: Instant, mut op: F) -> Result<T, MarathonError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MarathonError>>,
{
    let mut pause = LOCK_PAUSE;
    loop {
        match op().await {
            Err(MarathonError::Locked { what, deployments }) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(MarathonError::Locked { what, deployments });
                }
                let wait = pause.min(deadline - now);
                workload::note!(
                    "  locked by deployment {}: retrying in {:.1}s (--force cancels it)",
                    deployments.join(", "),
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(LOCK_PAUSE_MAX);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_names_the_step_and_actions() {
        let d = json!({"currentStep": 1, "totalSteps": 2,
            "currentActions": [{"action": "StartApplication", "app": "/g/a"}]});
        assert_eq!(progress(&d), "step 1/2: StartApplication /g/a");
    }
}

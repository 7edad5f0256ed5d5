//! The management plugin's HTTP API, for the one figure AMQP itself cannot give: messages delivered and not
//! yet acked (`messages_unacknowledged`). A passive `queue.declare` gives the ready count exactly and at once;
//! the API's figures are the broker's statistics, emitted every `collect_statistics_interval` (5 s by
//! default), so they lag by up to that much, and a new queue has none for its first seconds.

use std::time::Duration;

use super::error::AmqpError;
use super::url::{AmqpUrl, encode};

/// Timeout of one management call.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The figures of `GET /api/queues/VHOST/QUEUE`, when the broker has them yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub ready: Option<u64>,
    pub unacked: Option<u64>,
}

/// A management API client for one queue.
pub struct Management {
    url: String,
    user: String,
    password: super::Secret,
    http: reqwest::Client,
}

impl Management {
    /// A client for the queue of `url`, through `base` (`http[s]://HOST:PORT`).
    ///
    /// # Errors
    /// [`AmqpError::Tls`] when the HTTP client cannot be built.
    pub fn new(
        base: &str,
        url: &AmqpUrl,
        password: super::Secret,
        extra_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Management, AmqpError> {
        let http = workload::tls::http_client_builder(extra_ca, "RabbitMQ management")
            .map_err(|e| AmqpError::Tls(e.to_string()))?
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| AmqpError::Tls(e.to_string()))?;
        Ok(Management {
            url: format!(
                "{base}/api/queues/{}/{}?columns=messages_ready,messages_unacknowledged",
                encode(&url.vhost),
                encode(&url.queue)
            ),
            user: url.user.clone(),
            password,
            http,
        })
    }

    /// The queue's figures as the management API has them now.
    ///
    /// # Errors
    /// [`AmqpError::Management`] for a failed call, a non-2xx answer or a body that is not the queue's JSON.
    pub async fn queue_stats(&self) -> Result<QueueStats, AmqpError> {
        let err = |reason: String| AmqpError::Management {
            url: self.url.clone(),
            reason,
        };
        let resp = self
            .http
            .get(&self.url)
            .basic_auth(&self.user, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| err(workload::redact::url(&e.to_string())))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| err(workload::redact::url(&e.to_string())))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            let hint = match status.as_u16() {
                401 => {
                    " (check the user and AMQP_PASSWORD; the user needs the management or monitoring tag)"
                }
                404 => " (no such queue or vhost yet)",
                _ => "",
            };
            return Err(err(format!("{status}: {text}{hint}")));
        }
        parse(&body).map_err(err)
    }
}

/// Reads the figures out of the API's JSON; a figure the broker has not computed yet is `None`.
pub fn parse(body: &[u8]) -> Result<QueueStats, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not the queue's JSON: {e}"))?;
    if !v.is_object() {
        return Err("not the queue's JSON: not an object".into());
    }
    let figure = |k: &str| -> Result<Option<u64>, String> {
        match &v[k] {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{k} is not a count: {n}")),
            other => Err(format!("{k} is not a count: {other}")),
        }
    };
    Ok(QueueStats {
        ready: figure("messages_ready")?,
        unacked: figure("messages_unacknowledged")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_their_absence_on_a_new_queue() {
        assert_eq!(
            parse(br#"{"messages_ready":7,"messages_unacknowledged":2}"#),
            Ok(QueueStats {
                ready: Some(7),
                unacked: Some(2)
            })
        );
        // A queue a few seconds old has no statistics yet: unknown, not zero.
        assert_eq!(parse(b"{}"), Ok(QueueStats::default()));
        assert!(parse(b"[]").is_err());
        assert!(parse(b"<html>").is_err());
        assert!(
            parse(br#"{"messages_ready":-1}"#)
                .unwrap_err()
                .contains("not a count")
        );
    }
}

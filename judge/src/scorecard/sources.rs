//! Where the consumer count comes from, per platform. The scorecard reads it from the same place an operator
//! would trust on that platform:
//!
//! | source | fits | what it counts |
//! |---|---|---|
//! | the demo's recorded series | `demo --autoscale` on a laptop | consumer processes the demo runs (not those draining) |
//! | `nsqd:http://HOST:4151/TOPIC/CHANNEL` | any engine scaling NSQ consumers (Kubernetes, Nomad, bare hosts) | clients subscribed to the channel in nsqd's `/stats` |
//! | `marathon:http://HOST:8080/APP_ID` | DC/OS / Marathon, the 2016 platform | the app's `tasksRunning` in `/v2/apps/<id>` |
//!
//! nsqd counts what actually consumes: a consumer that has not connected yet or has already closed its
//! subscription does not count, whatever the scheduler says. Marathon counts tasks it believes are running,
//! which is what the engine asked for but lags the process by a health check. SQLite and Azure queues have no
//! list of consumers: use the demo's series (local) or the platform's count.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

/// A failure to read the consumer count.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered something that is not {what}")]
    Shape { url: String, what: &'static str },
}

/// Where to read the consumer count (see the module's table).
#[derive(Clone, PartialEq, Eq)]
pub enum ConsumerSource {
    /// nsqd's HTTP address (`http://host:port`), the topic and the channel.
    Nsqd {
        base: String,
        topic: String,
        channel: String,
    },
    /// Marathon's address and the app id (with its leading `/` removed).
    Marathon { base: String, app: String },
}

impl FromStr for ConsumerSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected =
            "expected nsqd:http://HOST:4151/TOPIC/CHANNEL or marathon:http://HOST:8080/APP_ID";
        let split = |rest: &str| -> Option<(String, String)> {
            let scheme_end = rest.find("://")? + 3;
            let path = rest[scheme_end..].find('/')? + scheme_end;
            let (base, tail) = rest.split_at(path);
            let tail = tail.trim_matches('/');
            (!tail.is_empty()).then(|| (base.to_string(), tail.to_string()))
        };
        if let Some(rest) = s.strip_prefix("nsqd:") {
            let (base, tail) =
                split(rest).ok_or_else(|| format!("invalid source {s:?}: {expected}"))?;
            let (topic, channel) = tail
                .split_once('/')
                .filter(|(t, c)| !t.is_empty() && !c.is_empty() && !c.contains('/'))
                .ok_or_else(|| {
                    format!("invalid source {s:?}: the path must be /TOPIC/CHANNEL ({expected})")
                })?;
            return Ok(ConsumerSource::Nsqd {
                base,
                topic: topic.into(),
                channel: channel.into(),
            });
        }
        if let Some(rest) = s.strip_prefix("marathon:") {
            let (base, app) =
                split(rest).ok_or_else(|| format!("invalid source {s:?}: {expected}"))?;
            return Ok(ConsumerSource::Marathon { base, app });
        }
        Err(format!("invalid source {s:?}: {expected}"))
    }
}

/// Shown without the `user:password@` a URL may carry (Marathon's basic auth): it goes into titles and logs.
impl fmt::Display for ConsumerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsumerSource::Nsqd {
                base,
                topic,
                channel,
            } => write!(f, "nsqd:{}/{topic}/{channel}", redact(base)),
            ConsumerSource::Marathon { base, app } => {
                write!(f, "{}", redact(&format!("marathon:{base}/{app}")))
            }
        }
    }
}

/// The same as Display: never the credentials, even in a debug print.
impl fmt::Debug for ConsumerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsumerSource({self})")
    }
}

/// `http://user:secret@host:8080` → `http://***@host:8080`, and secret parameters (`token=`…) masked: the
/// suite's one redaction, [`workload::redact::url`].
fn redact(base: &str) -> String {
    workload::redact::url(base)
}

impl ConsumerSource {
    /// Reads the consumer count now.
    ///
    /// # Errors
    /// When the server cannot be reached or answers something else than expected.
    pub async fn count(&self, http: &reqwest::Client) -> Result<usize, SourceError> {
        let url = match self {
            ConsumerSource::Nsqd {
                base,
                topic,
                channel,
            } => {
                format!("{base}/stats?format=json&topic={topic}&channel={channel}")
            }
            ConsumerSource::Marathon { base, app } => format!("{base}/v2/apps/{app}"),
        };
        // Errors name the URL without its credentials.
        let shown = redact(&url);
        let http_err = |source: reqwest::Error| SourceError::Http {
            url: shown.clone(),
            source: source.without_url(),
        };
        let resp = http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(SourceError::Status {
                url: shown,
                status: resp.status().as_u16(),
            });
        }
        let doc: Value = resp.json().await.map_err(http_err)?;
        let counted = match self {
            ConsumerSource::Nsqd { topic, channel, .. } => nsqd_clients(&doc, topic, channel),
            ConsumerSource::Marathon { .. } => marathon_tasks_running(&doc),
        };
        counted.ok_or(SourceError::Shape {
            url: shown,
            what: match self {
                ConsumerSource::Nsqd { .. } => "nsqd's /stats document",
                ConsumerSource::Marathon { .. } => "a Marathon app",
            },
        })
    }
}

/// Clients on `channel` of `topic` in an nsqd 1.x `/stats?format=json` document; 0 when the topic or channel
/// does not exist yet (nothing consumes from it). `None` when the document is not nsqd's.
pub fn nsqd_clients(doc: &Value, topic: &str, channel: &str) -> Option<usize> {
    // nsqd writes `"topics": null` when it has none yet.
    let topics = match doc.get("topics")? {
        Value::Null => return Some(0),
        t => t.as_array()?,
    };
    let Some(t) = topics.iter().find(|t| t["topic_name"] == topic) else {
        return Some(0);
    };
    let Some(c) = t["channels"]
        .as_array()?
        .iter()
        .find(|c| c["channel_name"] == channel)
    else {
        return Some(0);
    };
    Some(c["clients"].as_array()?.len())
}

/// `app.tasksRunning` of a Marathon `/v2/apps/<id>` answer.
pub fn marathon_tasks_running(doc: &Value) -> Option<usize> {
    doc["app"]["tasksRunning"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_parse_and_print_back() {
        let s: ConsumerSource = "nsqd:http://127.0.0.1:4151/jobs/workers".parse().unwrap();
        assert_eq!(
            s,
            ConsumerSource::Nsqd {
                base: "http://127.0.0.1:4151".into(),
                topic: "jobs".into(),
                channel: "workers".into()
            }
        );
        assert_eq!(s.to_string(), "nsqd:http://127.0.0.1:4151/jobs/workers");
        let s: ConsumerSource = "marathon:https://m:8080/queue/consumer".parse().unwrap();
        assert_eq!(
            s,
            ConsumerSource::Marathon {
                base: "https://m:8080".into(),
                app: "queue/consumer".into()
            }
        );
        let s: ConsumerSource = "marathon:http://ops:hunter2@m:8080/c".parse().unwrap();
        assert_eq!(s.to_string(), "marathon:http://***@m:8080/c");
        assert!(!format!("{s:?}").contains("hunter2"));
        for bad in [
            "nsqd:http://h:1/jobs",
            "nsqd:h/a/b",
            "marathon:http://h:1",
            "k8s:x",
            "",
        ] {
            let e = bad.parse::<ConsumerSource>().unwrap_err();
            assert!(e.contains("expected nsqd:"), "{bad}: {e}");
        }
    }

    #[test]
    fn counts_are_read_from_each_platforms_document() {
        let doc = json!({"version": "1.3.0", "topics": [{"topic_name": "jobs", "channels": [
            {"channel_name": "other", "clients": [{}]},
            {"channel_name": "workers", "clients": [{"client_id": "a"}, {"client_id": "b"}]}]}]});
        assert_eq!(nsqd_clients(&doc, "jobs", "workers"), Some(2));
        assert_eq!(nsqd_clients(&doc, "jobs", "none"), Some(0));
        assert_eq!(nsqd_clients(&doc, "nope", "workers"), Some(0));
        assert_eq!(
            nsqd_clients(&json!({"topics": null}), "jobs", "workers"),
            Some(0)
        );
        assert_eq!(
            nsqd_clients(&json!({"message": "x"}), "jobs", "workers"),
            None
        );
        assert_eq!(
            marathon_tasks_running(&json!({"app": {"id": "/c", "tasksRunning": 3}})),
            Some(3)
        );
        assert_eq!(marathon_tasks_running(&json!({"apps": []})), None);
    }
}

//! Where the consumer count comes from, per platform. The scorecard reads it from the same place an operator
//! would trust on that platform:
//!
//! | source | fits | what it counts |
//! |---|---|---|
//! | the demo's recorded series | `demo --autoscale` on a laptop | consumer processes the demo runs (not those draining) |
//! | `nsqd:http://HOST:4151/TOPIC/CHANNEL` | any engine scaling NSQ consumers (Kubernetes, Nomad, bare hosts) | clients subscribed to the channel in nsqd's `/stats` |
//! | `marathon:http://HOST:8080/APP_ID` | DC/OS / Marathon, the 2016 platform | the app's `tasksRunning` in `/v2/apps/<id>` |
//! | `prometheus:http://HOST:9090?query=PROMQL` | any platform with a Prometheus server (Kubernetes with kube-state-metrics, consumers' `/metrics`) | what the query counts ([`super::prometheus`]) |
//! | `docker:LABEL=VALUE` | any engine scaling containers on one Docker host (compose `--scale` too) | running containers with the label, from the Engine API on `DOCKER_HOST`'s unix socket |
//!
//! nsqd counts what actually consumes: a consumer that has not connected yet or has already closed its
//! subscription does not count, whatever the scheduler says. Marathon counts tasks it believes are running,
//! which is what the engine asked for but lags the process by a health check. SQLite and Azure queues have no
//! list of consumers: use the demo's series (local) or the platform's count. Prometheus counts what the query
//! says, as of the last scrape (up to a scrape interval late): kube-state-metrics' available replicas, the
//! consumers' own `mw_consumer_slots` series, or the engine's decision (`scorecard watch --decided`).
//!
//! `nsqd:` names a backend outside `queues`, on purpose: it is not a queue URL picked from the registry but a
//! place to read, like `marathon:`, and nsqd's `/stats` is the one queue server of the 2016 platforms that
//! lists the clients subscribed to a channel (the engine's NSQ deployments are judged by it). Another
//! backend's consumer list (RabbitMQ's `consumers`, JetStream's consumer info) would be a source of its own
//! here, read the same way, rather than a lookup by scheme.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

mod docker;
/// A Docker Engine client on a unix socket, the API version negotiated (the demo's docker engine uses it too).
pub use docker::connect as docker_connect;
pub use docker::socket as docker_socket;

/// A failure to read the consumer count.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    // The whole chain: reqwest's own text is only "error sending request"; the cause (connection refused,
    // no such host, a timeout) is in its sources. The URL was taken out of the error (`without_url`), so
    // the chain holds no credentials.
    #[error("cannot reach {url}: {}", workload::cli::one_line(source))]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered something that is not {what}")]
    Shape { url: String, what: &'static str },
    #[error("{url}: {source}")]
    Prometheus {
        url: String,
        #[source]
        source: super::prometheus::ReplyError,
    },
    #[error("cannot read the heartbeats on {queue}: {error}")]
    Heartbeats { queue: String, error: String },
    #[error("cannot list the containers of the Docker engine at {socket}: {source}")]
    Docker {
        socket: String,
        #[source]
        source: bollard::errors::Error,
    },
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
    /// A Prometheus server's address (with any path prefix, no trailing `/`) and the PromQL query, verbatim.
    Prometheus { base: String, query: String },
    /// The Docker engine's unix socket (`unix:///…`), a label and the value it must have (any when `None`).
    Docker {
        socket: String,
        label: String,
        value: Option<String>,
    },
}

impl FromStr for ConsumerSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected nsqd:http://HOST:4151/TOPIC/CHANNEL, marathon:http://HOST:8080/APP_ID \
or prometheus:http://HOST:9090?query=PROMQL or docker:LABEL=VALUE";
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
        if let Some(rest) = s.strip_prefix("docker:") {
            let (label, value) =
                docker::parse(rest).ok_or_else(|| format!("invalid source {s:?}: {expected}"))?;
            let socket = docker::socket().map_err(|e| format!("invalid source {s:?}: {e}"))?;
            return Ok(ConsumerSource::Docker {
                socket,
                label,
                value,
            });
        }
        if let Some(rest) = s.strip_prefix("marathon:") {
            let (base, app) =
                split(rest).ok_or_else(|| format!("invalid source {s:?}: {expected}"))?;
            return Ok(ConsumerSource::Marathon { base, app });
        }
        if let Some(rest) = s.strip_prefix("prometheus:") {
            // The query is taken verbatim after `query=` (and encoded when sent): PromQL has `+`, `%`, `&`
            // and quotes of its own, which URL decoding would mangle.
            let (base, query) = rest
                .split_once('?')
                .and_then(|(b, q)| Some((b.trim_end_matches('/'), q.strip_prefix("query=")?)))
                .filter(|(b, q)| b.contains("://") && !q.trim().is_empty())
                .ok_or_else(|| {
                    format!(
                        "invalid source {s:?}: a Prometheus source is prometheus:http://HOST:9090?query=PROMQL \
                         (the PromQL as is, quoted for the shell)"
                    )
                })?;
            return Ok(ConsumerSource::Prometheus {
                base: base.to_string(),
                query: query.to_string(),
            });
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
            ConsumerSource::Prometheus { base, query } => {
                // The whole of it, in case a secret-looking parameter was written into the query.
                write!(f, "{}", redact(&format!("prometheus:{base}?query={query}")))
            }
            ConsumerSource::Docker { label, value, .. } => match value {
                Some(v) => write!(f, "docker:{label}={v}"),
                None => write!(f, "docker:{label}"),
            },
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

/// How long one reading of a source may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A failed request's error, naming the URL as `shown` (without its credentials): reqwest's own message would
/// quote the URL whole.
fn http_err(shown: &str) -> impl Fn(reqwest::Error) -> SourceError + '_ {
    move |source| SourceError::Http {
        url: shown.to_string(),
        source: source.without_url(),
    }
}

impl ConsumerSource {
    /// Reads the consumer count now.
    ///
    /// # Errors
    /// When the server cannot be reached or answers something else than expected.
    pub async fn count(&self, http: &reqwest::Client) -> Result<usize, SourceError> {
        let (url, what) = match self {
            ConsumerSource::Nsqd {
                base,
                topic,
                channel,
            } => (
                format!("{base}/stats?format=json&topic={topic}&channel={channel}"),
                "nsqd's /stats document",
            ),
            ConsumerSource::Marathon { base, app } => {
                (format!("{base}/v2/apps/{app}"), "a Marathon app")
            }
            ConsumerSource::Prometheus { base, query } => {
                return prometheus_count(http, base, query).await;
            }
            ConsumerSource::Docker {
                socket,
                label,
                value,
            } => {
                return docker::running(socket, label, value.as_deref())
                    .await
                    .map_err(|source| SourceError::Docker {
                        socket: socket.clone(),
                        source,
                    });
            }
        };
        let shown = redact(&url);
        let resp = http
            .get(&url)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(http_err(&shown))?;
        if !resp.status().is_success() {
            return Err(SourceError::Status {
                url: shown,
                status: resp.status().as_u16(),
            });
        }
        let doc: Value = resp.json().await.map_err(http_err(&shown))?;
        let counted = match self {
            ConsumerSource::Nsqd { topic, channel, .. } => nsqd_clients(&doc, topic, channel),
            _ => marathon_tasks_running(&doc),
        };
        counted.ok_or(SourceError::Shape { url: shown, what })
    }
}

/// One instant query against `base`'s `/api/v1/query` ([`super::prometheus`]).
async fn prometheus_count(
    http: &reqwest::Client,
    base: &str,
    query: &str,
) -> Result<usize, SourceError> {
    let url = format!("{base}/api/v1/query");
    let shown = redact(&url);
    let resp = http
        .get(&url)
        .query(&[("query", query)])
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(http_err(&shown))?;
    let status = resp.status();
    // Prometheus sends its errors (bad PromQL 400, timeout 503, …) as a JSON document naming them; any other
    // body with a failing status (a proxy's HTML page) is shown as the status alone.
    let body = resp.bytes().await.map_err(http_err(&shown))?;
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(_) if !status.is_success() => {
            return Err(SourceError::Status {
                url: shown,
                status: status.as_u16(),
            });
        }
        Err(_) => {
            return Err(SourceError::Shape {
                url: shown,
                what: "JSON (a Prometheus query reply)",
            });
        }
    };
    super::prometheus::count_of(&doc)
        .map_err(|source| SourceError::Prometheus { url: shown, source })
}

/// Clients on `channel` of `topic` in an nsqd 1.x `/stats?format=json` document; 0 when the topic or channel
/// does not exist yet (nothing consumes from it). `None` when the document is not nsqd's.
pub fn nsqd_clients(doc: &Value, topic: &str, channel: &str) -> Option<usize> {
    // nsqd 0.3.x (the one the Microscaling engine reads, installed by `marathon-install --engine`) wraps the
    // document: `{"status_code":200,"status_txt":"OK","data":{…}}`.
    let doc = match doc.get("data") {
        Some(inner) if doc.get("status_code").is_some() => inner,
        _ => doc,
    };
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
        let s: ConsumerSource =
            r#"prometheus:https://ops:pw@prom:9090/?query=sum(kube_deployment_status_replicas_available{deployment="c"}) + 0"#
                .parse()
                .unwrap();
        assert_eq!(
            s,
            ConsumerSource::Prometheus {
                base: "https://ops:pw@prom:9090".into(),
                query: r#"sum(kube_deployment_status_replicas_available{deployment="c"}) + 0"#
                    .into()
            }
        );
        assert!(
            !s.to_string().contains("pw") && !format!("{s:?}").contains("pw"),
            "{s}"
        );
        let s: ConsumerSource = "prometheus:http://h:9090?query=up&token=hunter2"
            .parse()
            .unwrap();
        assert!(!s.to_string().contains("hunter2"), "{s}");
        // Without a secret, shown as given.
        let s: ConsumerSource = "prometheus:http://h:9090?query=sum(up) + 1"
            .parse()
            .unwrap();
        assert_eq!(s.to_string(), "prometheus:http://h:9090?query=sum(up) + 1");
        for bad in [
            "prometheus:http://h:9090",
            "prometheus:http://h:9090?query=",
            "prometheus:h:9090?query=up",
            "prometheus:http://h:9090?q=up",
        ] {
            let e = bad.parse::<ConsumerSource>().unwrap_err();
            assert!(
                e.contains("prometheus:http://HOST:9090?query=PROMQL"),
                "{bad}: {e}"
            );
        }
        let s: ConsumerSource = "docker:com.docker.compose.service=c".parse().unwrap();
        assert!(
            matches!(&s, ConsumerSource::Docker { label, value: Some(v), .. }
                if label == "com.docker.compose.service" && v == "c"),
            "{s}"
        );
        assert_eq!(s.to_string(), "docker:com.docker.compose.service=c");
        for bad in [
            "docker:",
            "docker:=c",
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
        let wrapped = json!({"status_code": 200, "status_txt": "OK", "data": doc});
        assert_eq!(nsqd_clients(&wrapped, "jobs", "workers"), Some(2));
        assert_eq!(
            marathon_tasks_running(&json!({"app": {"id": "/c", "tasksRunning": 3}})),
            Some(3)
        );
        assert_eq!(marathon_tasks_running(&json!({"apps": []})), None);
    }
}

//! The `nats://` queue URL.
//!
//! `nats://HOST[:PORT][,HOST[:PORT]…]/STREAM[?subject=SUBJECT&consumer=NAME&max_msg_size=BYTES&tls=true&ca=FILE]`
//!
//! - `HOST:PORT` is a NATS server's client address (port 4222 when left out); several, comma-separated, for
//!   a cluster (the client also learns the others from the server).
//! - `STREAM` is the JetStream stream, created when missing with work-queue retention and file storage.
//! - `subject` is what the producer publishes to and the stream captures; default: the stream's name.
//! - `consumer` is the durable pull consumer every consumer process shares; default `workers`.
//! - `max_msg_size` mirrors the server's `max_payload` (default 1 MiB), so `--size` is checked before sending.
//! - `tls=true` requires TLS; certificates are always verified, against the web PKI roots plus `ca=FILE`.
//! - Credentials never go in the URL (it is logged): `NATS_USER` and `NATS_PASSWORD`, or `NATS_TOKEN`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::NatsQueue;
use crate::keda::{Counts, KedaScaler};
use crate::url;
use crate::{Backend, OpenMode, Queue, QueueError, Target};

/// The registry's entry for this backend (see [`crate::registry`]).
pub static BACKEND: NatsBackend = NatsBackend;

/// NATS JetStream's [`Backend`].
pub struct NatsBackend;

impl Backend for NatsBackend {
    fn scheme(&self) -> &'static str {
        "nats"
    }

    fn form(&self) -> &'static str {
        "nats://HOST[:PORT]/STREAM[?subject=…&consumer=…&tls=true…]"
    }

    fn summary(&self) -> &'static str {
        "a NATS JetStream stream with a shared durable pull consumer; credentials come from NATS_USER and NATS_PASSWORD, or NATS_TOKEN"
    }

    /// KEDA's NATS JetStream scaler (`pkg/scalers/nats_jetstream_scaler.go`, `getMaxMsgLag`): the
    /// consumer's `num_pending + num_ack_pending` from the monitoring endpoint's `/jsz`, that is backlog plus
    /// in flight. Target `lagThreshold`, default 10; activation `activationLagThreshold`.
    fn keda(&self) -> Option<&'static KedaScaler> {
        static K: KedaScaler = KedaScaler {
            trigger: "nats-jetstream",
            target_key: "lagThreshold",
            default_target: 10,
            counts: Counts::All,
            alternative: None,
        };
        Some(&K)
    }

    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String> {
        Ok(Box::new(NatsUrl::parse(rest)?))
    }
}

#[async_trait]
impl Target for NatsUrl {
    /// Connects nothing yet (the connection is made on first use, so the server may start later); with
    /// `Existing`, the stream and consumer are looked up then instead of created.
    async fn open(&self, mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        let get = |k: &str| std::env::var(k).ok();
        Ok(Arc::new(NatsQueue::new(self.clone(), mode, &get)?))
    }

    /// A sibling stream with its own subject and a consumer of the same name: `jobs` → `jobs-telemetry`,
    /// subject `S` → `S-telemetry` (a new last token's suffix, not a new token, so that a stream bound to
    /// `S.>` cannot capture it). The work consumer's pending count never includes another stream.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let stream = format!("{}-{suffix}", self.stream);
        let subject = format!("{}-{suffix}", self.subject);
        if !is_valid_name(&stream) || !is_valid_subject(&subject) {
            return Err(format!(
                "stream {stream:?} would break JetStream's naming rules"
            ));
        }
        let shown = format!("stream {stream}");
        Ok((
            Box::new(NatsUrl {
                stream,
                subject,
                ..self.clone()
            }),
            shown,
        ))
    }

    /// The stream is created with `max_age` (see the backend's open).
    fn with_expiry(&self, after: Duration) -> Option<Box<dyn Target>> {
        Some(Box::new(NatsUrl {
            expiry: Some(after),
            ..self.clone()
        }))
    }
}

/// The NATS client port.
pub const DEFAULT_PORT: u16 = 4222;
/// nats-server's default `max_payload`.
pub const DEFAULT_MAX_MSG_SIZE: usize = 1024 * 1024;
/// The durable consumer's name when the URL names none.
pub const DEFAULT_CONSUMER: &str = "workers";

/// A parsed `nats://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsUrl {
    /// `host:port` of each server given.
    pub servers: Vec<String>,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    pub max_msg_size: usize,
    pub tls: bool,
    pub ca: Option<PathBuf>,
    /// Set by [`Target::with_expiry`] (never by the URL): the stream, when this opening creates it, drops
    /// messages older than this.
    pub expiry: Option<Duration>,
}

/// Stream and consumer names: JetStream refuses `.`, `*`, `>`, whitespace and path separators; we take the
/// portable subset that also makes a valid subject token and file name.
fn is_valid_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A subject to publish to: dot-separated non-empty tokens of printable characters, no wildcards.
fn is_valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

fn host_port(s: &str) -> Result<String, String> {
    url::no_credentials(
        s,
        "server",
        "give them in NATS_USER and NATS_PASSWORD, or NATS_TOKEN",
    )?;
    let (host, port) = url::host_port(s, DEFAULT_PORT, "server")?;
    Ok(format!("{host}:{port}"))
}

impl NatsUrl {
    /// Parses the part after `nats:`. Errors say what is expected.
    pub fn parse(rest: &str) -> Result<NatsUrl, String> {
        const FORM: &str = "expected nats://HOST:PORT/STREAM (for example nats://127.0.0.1:4222/microscaling-demo)";
        let url::Parts {
            authority,
            path,
            query,
        } = url::split(rest, FORM)?;
        let stream = path.trim_end_matches('/');
        if authority.is_empty() {
            return Err(format!("no server address: {FORM}"));
        }
        if stream.is_empty() {
            return Err(format!("a stream name is needed: {FORM}"));
        }
        if !is_valid_name(stream) {
            return Err(format!(
                "invalid stream name {stream:?}: use 1-255 letters, digits, '_' and '-' (JetStream refuses '.', '*', '>' and '/')"
            ));
        }
        let servers = authority
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut url = NatsUrl {
            servers,
            stream: stream.to_string(),
            subject: stream.to_string(),
            consumer: DEFAULT_CONSUMER.to_string(),
            max_msg_size: DEFAULT_MAX_MSG_SIZE,
            tls: false,
            ca: None,
            expiry: None,
        };
        for (k, v) in url::query_pairs(query) {
            match k {
                "subject" => {
                    if !is_valid_subject(v) {
                        return Err(format!(
                            "subject={v:?}: a subject is dot-separated tokens with no spaces and no wildcards ('*', '>')"
                        ));
                    }
                    url.subject = v.to_string();
                }
                "consumer" => {
                    if !is_valid_name(v) {
                        return Err(format!(
                            "consumer={v:?}: use 1-255 letters, digits, '_' and '-'"
                        ));
                    }
                    url.consumer = v.to_string();
                }
                "max_msg_size" => url.max_msg_size = url::max_msg_size(v)?,
                "tls" => url.tls = url::flag(k, v)?,
                "ca" if !v.is_empty() => url.ca = Some(PathBuf::from(v)),
                other => {
                    return Err(url::unknown_parameter(
                        other,
                        "subject, consumer, max_msg_size, tls and ca",
                    ));
                }
            }
        }
        Ok(url)
    }

    /// The URL again, for logs: no secret is ever part of it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "nats://{}/{} (subject {}, consumer {})",
            self.servers.join(","),
            self.stream,
            self.subject,
            self.consumer
        );
        if self.tls {
            s.push_str(" (tls)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        let u = NatsUrl::parse(
            "//127.0.0.1:4333,n2/jobs?subject=work.jobs&consumer=w1&max_msg_size=10&tls=true&ca=/x.pem",
        )
        .unwrap();
        assert_eq!(u.servers, vec!["127.0.0.1:4333", "n2:4222"]);
        assert_eq!(
            (u.stream.as_str(), u.subject.as_str(), u.consumer.as_str()),
            ("jobs", "work.jobs", "w1")
        );
        assert_eq!(u.max_msg_size, 10);
        assert!(u.tls);
        assert_eq!(u.ca, Some(PathBuf::from("/x.pem")));
        let u = NatsUrl::parse("//nats/jobs/").unwrap();
        assert_eq!(u.servers, vec!["nats:4222"]);
        assert_eq!(
            (u.subject.as_str(), u.consumer.as_str()),
            ("jobs", "workers")
        );
        assert_eq!((u.max_msg_size, u.tls), (DEFAULT_MAX_MSG_SIZE, false));
        let u = NatsUrl::parse("//[::1]:4222/s").unwrap();
        assert_eq!(u.servers, vec!["[::1]:4222"]);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("127.0.0.1:4222/s", "missing '//'"),
            ("//h:4222", "a stream name is needed"),
            ("///s", "no server address"),
            ("//h/a.b", "invalid stream name"),
            ("//h/a/b", "invalid stream name"),
            ("//h:99999/s", "port \"99999\""),
            ("//h:0/s", "port \"0\""),
            ("//h,/s", "not a host name"),
            ("//h/s?colour=red", "unknown parameter"),
            ("//h/s?subject=a.*", "no wildcards"),
            ("//h/s?subject=a..b", "dot-separated"),
            ("//h/s?consumer=a.b", "consumer="),
            ("//h/s?max_msg_size=0", "max_msg_size"),
            ("//h/s?tls=maybe", "expected true or false"),
        ] {
            let e = NatsUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_with_where_they_go() {
        let e = NatsUrl::parse("//user:hunter2@127.0.0.1:4222/s").unwrap_err();
        assert!(e.contains("NATS_USER") && e.contains("NATS_TOKEN"), "{e}");
        // The registry echoes the URL through redact: the password never reaches the user.
        let e = crate::QueueUrl::parse("nats://user:hunter2@127.0.0.1:4222/s").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("NATS_PASSWORD"), "{e}");
    }

    #[test]
    fn describe_names_what_is_used() {
        let u = NatsUrl::parse("//h/s?tls=true").unwrap();
        assert_eq!(
            u.describe(),
            "nats://h:4222/s (subject s, consumer workers) (tls)"
        );
    }
}

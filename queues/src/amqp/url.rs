//! The `amqp://` queue URL.
//!
//! `amqp://[USER@]HOST[:PORT]/[VHOST/]QUEUE[?type=quorum|classic&management=HOST:PORT|URL|off&max_msg_size=BYTES&tls=true&ca=FILE]`
//!
//! - `HOST:PORT` is the broker's AMQP listener (5672 when left out, 5671 with `tls=true`).
//! - One path segment is the queue on the default virtual host `/`; two are `VHOST/QUEUE`. Both are
//!   percent-decoded, so the default vhost can also be written `%2F` (`amqp://h/%2F/work`), as AMQP URIs do.
//! - `type=quorum` (the default) declares a quorum queue, which keeps RabbitMQ's own delivery count
//!   (`x-delivery-count`); `classic` declares a classic durable queue, whose count is approximate (see the
//!   module docs).
//! - `management` is the management plugin's HTTP API, for the unacknowledged count; default the AMQP host on
//!   15672 (`https://…:15671` with `tls=true`); `off` reports no in-flight figure.
//! - `max_msg_size` mirrors the broker's `max_message_size` (RabbitMQ 3.10's default: 128 MiB), so an
//!   oversized message is refused before it is sent.
//! - The password never goes in the URL (URLs end up in logs and process lists): it comes from
//!   `AMQP_PASSWORD`. Without it, user and password are RabbitMQ's well-known `guest`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::AmqpQueue;
use crate::keda::{Counts, KedaScaler};
use crate::url::{self, percent_decode};
use crate::{Backend, OpenMode, Queue, QueueError, Target};

/// The registry's entry for this backend (see [`crate::registry`]).
pub static BACKEND: AmqpBackend = AmqpBackend;

/// AMQP 0-9-1's (RabbitMQ's) [`Backend`].
pub struct AmqpBackend;

impl Backend for AmqpBackend {
    fn scheme(&self) -> &'static str {
        "amqp"
    }

    fn form(&self) -> &'static str {
        "amqp://[USER@]HOST[:PORT]/[VHOST/]QUEUE[?type=quorum|classic&management=…&tls=true…]"
    }

    fn summary(&self) -> &'static str {
        "a RabbitMQ queue over AMQP 0-9-1, unacked count from the management API; the password comes from AMQP_PASSWORD"
    }

    /// KEDA's RabbitMQ scaler (<https://keda.sh/docs/latest/scalers/rabbitmq-queue/>), `mode: QueueLength`:
    /// over AMQP (the protocol `auto` picks for an `amqp://` host) a passive `queue.declare`'s ready count;
    /// over the management API (`protocol: http`) `messages`, ready plus unacked. Target `value` (required
    /// today; 20, the default of the older `queueLength`, here); activation `activationValue`.
    fn keda(&self) -> Option<&'static KedaScaler> {
        static K: KedaScaler = KedaScaler {
            trigger: "rabbitmq",
            target_key: "value",
            default_target: 20,
            counts: Counts::Visible,
            alternative: Some((Counts::All, "protocol: http")),
        };
        Some(&K)
    }

    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String> {
        Ok(Box::new(AmqpUrl::parse(rest)?))
    }
}

#[async_trait]
impl Target for AmqpUrl {
    /// Connects nothing yet (connections are lazy, so the broker may be down at start): the queue is declared
    /// on the first connection, passively with [`OpenMode::Existing`].
    async fn open(&self, mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        Ok(Arc::new(AmqpQueue::new(self.clone(), mode)?))
    }

    /// A sibling queue in the same vhost, of the same type: `jobs` → `jobs-telemetry`. RabbitMQ counts each
    /// queue on its own, so the work queue's depth never includes it.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let queue = format!("{}-{suffix}", self.queue);
        if queue.len() > 255 {
            return Err(format!(
                "queue {queue:?} would be longer than AMQP's 255 bytes"
            ));
        }
        let shown = format!("queue {queue}");
        Ok((
            Box::new(AmqpUrl {
                queue,
                ..self.clone()
            }),
            shown,
        ))
    }

    /// Each message is published with a TTL (`expiration`, see the backend's publish).
    fn with_expiry(&self, after: Duration) -> Option<Box<dyn Target>> {
        Some(Box::new(AmqpUrl {
            expiry: Some(after),
            ..self.clone()
        }))
    }
}

/// RabbitMQ's default ports: AMQP, AMQP over TLS, management HTTP, management HTTPS.
pub const DEFAULT_PORT: u16 = 5672;
pub const DEFAULT_TLS_PORT: u16 = 5671;
pub const DEFAULT_MANAGEMENT_PORT: u16 = 15672;
pub const DEFAULT_MANAGEMENT_TLS_PORT: u16 = 15671;
/// RabbitMQ 3.10's default `max_message_size` (128 MiB); the protocol's own limit is 512 MiB.
pub const DEFAULT_MAX_MSG_SIZE: usize = 128 << 20;

/// Which kind of queue to declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    /// Raft-replicated, always durable, with RabbitMQ's own delivery count. The default.
    Quorum,
    /// The classic durable queue: only a `redelivered` flag, no count.
    Classic,
}

/// A parsed `amqp://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub vhost: String,
    pub queue: String,
    pub queue_type: QueueType,
    /// The management API's base URL (`http://HOST:PORT`), `None` with `management=off`.
    pub management: Option<String>,
    pub max_msg_size: usize,
    pub tls: bool,
    pub ca: Option<PathBuf>,
    /// Set by [`Target::with_expiry`] (never by the URL): messages published expire this long after.
    pub expiry: Option<Duration>,
}

/// Splits `host[:port]` (IPv6 in brackets) and checks it.
fn host_port(s: &str, default_port: u16, what: &str) -> Result<(String, u16), String> {
    if let (h, Some(_)) = url::split_host_port(s)
        && (h.starts_with('[') != h.ends_with(']') || (h.contains(':') && !h.starts_with('[')))
    {
        return Err(format!(
            "{what} address {s:?}: an IPv6 address goes in brackets ([::1]:5672)"
        ));
    }
    let (host, port) = url::host_port(s, default_port, what)?;
    Ok((host.to_string(), port))
}

impl AmqpUrl {
    /// Parses the part after `amqp:`. Errors say what is expected.
    pub fn parse(rest: &str) -> Result<AmqpUrl, String> {
        const FORM: &str = "expected amqp://[USER@]HOST[:PORT]/[VHOST/]QUEUE (for example amqp://127.0.0.1:5672/microscaling-demo)";
        let url::Parts {
            authority,
            path,
            query,
        } = url::split(rest, FORM)?;
        const NO_PASSWORD: &str =
            "a queue URL carries no password (URLs are logged): give it in AMQP_PASSWORD";
        let (user, hostport) = url::split_user(authority, NO_PASSWORD)?;
        let user = match user {
            // The user is percent-decoded, so an escaped ':' starts a password too.
            Some(u) if u.to_ascii_lowercase().contains("%3a") => return Err(NO_PASSWORD.into()),
            Some(u) => percent_decode(u, "user")?,
            None => "guest".to_string(),
        };
        if user.is_empty() {
            return Err(format!("empty user name before '@': {FORM}"));
        }
        if hostport.is_empty() {
            return Err(format!("no broker address: {FORM}"));
        }
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let (vhost, queue) = match segments.as_slice() {
            [""] => return Err(format!("no queue name: {FORM}")),
            [q] => ("/".to_string(), percent_decode(q, "queue name")?),
            [v, q] if !v.is_empty() => (
                percent_decode(v, "virtual host")?,
                percent_decode(q, "queue name")?,
            ),
            _ => {
                return Err(format!(
                    "the path is [VHOST/]QUEUE, with a '/' inside either written %2F: {FORM}"
                ));
            }
        };
        if queue.is_empty() || queue.len() > 255 {
            return Err(format!(
                "queue name {queue:?}: RabbitMQ accepts 1-255 bytes"
            ));
        }
        if queue.starts_with("amq.") {
            return Err(format!(
                "queue name {queue:?}: names starting with \"amq.\" are reserved by the broker"
            ));
        }
        if queue.chars().any(char::is_control) {
            return Err(format!(
                "queue name {queue:?}: control characters are not allowed"
            ));
        }
        let mut tls = false;
        let mut management: Option<String> = None;
        let mut management_off = false;
        let mut url = AmqpUrl {
            host: String::new(),
            port: 0,
            user,
            vhost,
            queue,
            queue_type: QueueType::Quorum,
            management: None,
            max_msg_size: DEFAULT_MAX_MSG_SIZE,
            tls: false,
            ca: None,
            expiry: None,
        };
        for (k, v) in url::query_pairs(query) {
            match k {
                "type" => {
                    url.queue_type = match v {
                        "quorum" => QueueType::Quorum,
                        "classic" => QueueType::Classic,
                        _ => return Err(format!("type={v:?}: expected quorum or classic")),
                    }
                }
                "management" => match v {
                    "off" | "false" => management_off = true,
                    _ if v.starts_with("http://") || v.starts_with("https://") => {
                        let (scheme, hp) = v.split_once("://").unwrap_or(("http", v));
                        let hp = hp.trim_end_matches('/');
                        if hp.contains('@') {
                            return Err(
                                "management: the URL carries no credentials; the AMQP user and AMQP_PASSWORD are used"
                                    .into(),
                            );
                        }
                        let (h, p) = host_port(hp, DEFAULT_MANAGEMENT_PORT, "management")?;
                        management = Some(format!("{scheme}://{h}:{p}"));
                    }
                    _ => {
                        let (h, p) = host_port(v, DEFAULT_MANAGEMENT_PORT, "management")?;
                        management = Some(format!("http://{h}:{p}"));
                    }
                },
                "max_msg_size" => {
                    url.max_msg_size = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0 && *n <= 512 << 20)
                        .ok_or_else(|| {
                            format!("max_msg_size={v:?} is not a number of bytes from 1 to 512 MiB")
                        })?;
                }
                "tls" => tls = url::flag(k, v)?,
                "ca" if !v.is_empty() => url.ca = Some(PathBuf::from(percent_decode(v, "ca")?)),
                other => {
                    return Err(url::unknown_parameter(
                        other,
                        "type, management, max_msg_size, tls and ca",
                    ));
                }
            }
        }
        if url.ca.is_some() && !tls {
            return Err("ca= is only used with tls=true".into());
        }
        let (host, port) = host_port(
            hostport,
            if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT },
            "broker",
        )?;
        url.management = if management_off {
            None
        } else {
            Some(management.unwrap_or_else(|| {
                if tls {
                    format!("https://{host}:{DEFAULT_MANAGEMENT_TLS_PORT}")
                } else {
                    format!("http://{host}:{DEFAULT_MANAGEMENT_PORT}")
                }
            }))
        };
        url.host = host;
        url.port = port;
        url.tls = tls;
        Ok(url)
    }

    /// The URL again, for logs: no secret is ever part of it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "amqp://{}@{}:{}/{}/{}",
            self.user,
            self.host,
            self.port,
            encode(&self.vhost),
            encode(&self.queue)
        );
        if self.queue_type == QueueType::Classic {
            s.push_str(" (classic)");
        }
        if self.tls {
            s.push_str(" (tls)");
        }
        s
    }
}

/// Percent-encodes what cannot stand in a path segment (the management API's path, logs).
pub use crate::url::percent_encode as encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        let u = AmqpUrl::parse("//127.0.0.1/work").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_str(), u.vhost.as_str()),
            ("127.0.0.1", 5672, "guest", "/")
        );
        assert_eq!(u.queue, "work");
        assert_eq!(u.queue_type, QueueType::Quorum);
        assert_eq!(u.management.as_deref(), Some("http://127.0.0.1:15672"));
        assert_eq!(u.max_msg_size, DEFAULT_MAX_MSG_SIZE);
        let u = AmqpUrl::parse(
            "//app@rabbit:5673/%2F/my%20queue?type=classic&management=rabbit:1&max_msg_size=10",
        )
        .unwrap();
        assert_eq!((u.user.as_str(), u.port), ("app", 5673));
        assert_eq!((u.vhost.as_str(), u.queue.as_str()), ("/", "my queue"));
        assert_eq!(u.queue_type, QueueType::Classic);
        assert_eq!(u.management.as_deref(), Some("http://rabbit:1"));
        assert_eq!(u.max_msg_size, 10);
        let u = AmqpUrl::parse("//h/prod/q?tls=true&ca=/etc/ca.pem&management=off").unwrap();
        assert_eq!((u.vhost.as_str(), u.port, u.tls), ("prod", 5671, true));
        assert_eq!(u.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(u.management, None);
        let u = AmqpUrl::parse("//[::1]:5000/q?tls=1&management=https://[::1]:9").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 5000));
        assert_eq!(u.management.as_deref(), Some("https://[::1]:9"));
        assert_eq!(
            AmqpUrl::parse("//h/q?tls=true")
                .unwrap()
                .management
                .as_deref(),
            Some("https://h:15671")
        );
        assert_eq!(
            AmqpUrl::parse("//u@h/v%2Fx/q").unwrap().describe(),
            "amqp://u@h:5672/v%2Fx/q"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("127.0.0.1/q", "missing '//'"),
            ("//h", "no queue name"),
            ("//h/", "no queue name"),
            ("///q", "no broker address"),
            ("//h/a/b/c", "the path is [VHOST/]QUEUE"),
            ("//h//q", "the path is [VHOST/]QUEUE"),
            ("//h/amq.gen", "reserved"),
            (&format!("//h/{}", "x".repeat(256)), "1-255 bytes"),
            ("//h/q%zz", "%XX escape"),
            ("//h/q%0A", "control characters"),
            ("//h:0/q", "port \"0\""),
            ("//h:99999/q", "port \"99999\""),
            ("//h!/q", "not a host name"),
            ("//::1/q", "brackets"),
            ("//@h/q", "empty user"),
            ("//h/q?colour=red", "unknown parameter"),
            ("//h/q?type=stream", "quorum or classic"),
            ("//h/q?tls=maybe", "true or false"),
            ("//h/q?max_msg_size=0", "max_msg_size"),
            ("//h/q?max_msg_size=big", "max_msg_size"),
            ("//h/q?ca=/x.pem", "only used with tls=true"),
            ("//h/q?management=http://u:p@h:1", "no credentials"),
        ] {
            let e = AmqpUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused_with_where_it_goes_and_never_echoed() {
        for url in ["//app:hunter2@h/q", "//app%3Ahunter2@h/q"] {
            let e = AmqpUrl::parse(url).unwrap_err();
            assert!(e.contains("AMQP_PASSWORD"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // Through the registry, the URL echoed in the error is masked too.
        let e = crate::QueueUrl::parse("amqp://app:hunter2@h/q")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("AMQP_PASSWORD") && !e.contains("hunter2"), "{e}");
    }
}

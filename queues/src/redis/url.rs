//! The `redis://` queue URL.
//!
//! `redis://[USER@]HOST[:PORT]/STREAM[?group=GROUP&db=N&tls=true&ca=FILE]`
//!
//! - `STREAM` is the stream's key: the queue. `group` is its consumer group, by default named like the stream
//!   (one group per queue: the stream is a work queue, not a log several groups read).
//! - `db` selects a logical database (default 0).
//! - `tls=true` speaks TLS, verifying the server's certificate against the web PKI roots, or against exactly
//!   the bundle `ca=FILE` names (a private CA). Verification cannot be turned off.
//! - The password never goes in the URL (URLs end up in logs and process lists): it comes from
//!   `REDIS_PASSWORD`. An ACL user name may be given in the URL or in `REDIS_USERNAME`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::RedisQueue;
use crate::keda::{Counts, KedaScaler};
use crate::url;
use crate::{Backend, OpenMode, Queue, QueueError, Target};

/// The registry's entry for this backend (see [`crate::registry`]).
pub static BACKEND: RedisBackend = RedisBackend;

/// Redis Streams' [`Backend`].
pub struct RedisBackend;

impl Backend for RedisBackend {
    fn scheme(&self) -> &'static str {
        "redis"
    }

    fn form(&self) -> &'static str {
        "redis://HOST[:PORT]/STREAM[?group=…&db=N&tls=true&ca=FILE]"
    }

    fn summary(&self) -> &'static str {
        "a Redis stream read by one consumer group (Redis 7+); the password comes from REDIS_PASSWORD"
    }

    /// KEDA's Redis Streams scaler (`pkg/scalers/redis_streams_scaler.go`, <https://keda.sh/docs/latest/scalers/redis-streams/>):
    /// with a consumer group it counts, by default, the group's pending entries (`XPENDING`: delivered, not
    /// acked), target `pendingEntriesCount`, default 5; with `lagCount` set, the group's lag (`XINFO
    /// GROUPS`, Redis 7+: entries not yet delivered), the only reading that can scale from 0.
    fn keda(&self) -> Option<&'static KedaScaler> {
        static K: KedaScaler = KedaScaler {
            trigger: "redis-streams",
            target_key: "pendingEntriesCount",
            default_target: 5,
            counts: Counts::InFlight,
            alternative: Some((Counts::Visible, "lagCount: N")),
        };
        Some(&K)
    }

    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String> {
        Ok(Box::new(RedisUrl::parse(rest)?))
    }
}

#[async_trait]
impl Target for RedisUrl {
    async fn open(&self, mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        let q = RedisQueue::new(self.clone(), &|k| std::env::var(k).ok())?;
        if mode == OpenMode::Existing {
            q.check_exists().await?;
        }
        Ok(Arc::new(q))
    }

    /// A sibling stream with its own group: `jobs` → `jobs-telemetry` (group likewise). The work stream's
    /// depth reads only its own key.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let stream = format!("{}-{suffix}", self.stream);
        let group = format!("{}-{suffix}", self.group);
        if !is_valid_name(&stream) || !is_valid_name(&group) {
            return Err(format!(
                "stream {stream:?} would be longer than 200 characters"
            ));
        }
        let shown = format!("stream {stream}");
        Ok((
            Box::new(RedisUrl {
                stream,
                group,
                ..self.clone()
            }),
            shown,
        ))
    }

    /// Entries older than `after` are trimmed by each `XADD` (`MINID ~`, see [`RedisQueue`]'s publish).
    fn with_expiry(&self, after: Duration) -> Option<Box<dyn Target>> {
        Some(Box::new(RedisUrl {
            expiry: Some(after),
            ..self.clone()
        }))
    }
}

/// Redis's default port.
pub const DEFAULT_PORT: u16 = 6379;

/// A parsed `redis://` URL. It holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    /// The ACL user named in the URL, if any (`REDIS_USERNAME` otherwise).
    pub user: Option<String>,
    pub stream: String,
    pub group: String,
    pub db: i64,
    pub tls: bool,
    pub ca: Option<PathBuf>,
    /// Set by [`Target::with_expiry`] (never by the URL): entries older than this are trimmed on publish.
    pub expiry: Option<Duration>,
}

/// A key or group name this backend accepts: printable ASCII without spaces, `/`, `?`, `&`, `#` or `%`, so
/// that it reads the same in the URL, in logs and in `redis-cli`.
fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'&' | b'#' | b'%'))
}

impl RedisUrl {
    /// Parses the part after `redis:`. Errors say what is expected.
    pub fn parse(rest: &str) -> Result<RedisUrl, String> {
        const FORM: &str = "expected redis://HOST[:PORT]/STREAM (for example redis://127.0.0.1:6379/microscaling-demo)";
        let url::Parts {
            authority,
            path,
            query,
        } = url::split(rest, FORM)?;
        let stream = path.trim_end_matches('/');
        if stream.is_empty() {
            return Err(format!("a stream name is needed: {FORM}"));
        }
        if !is_valid_name(stream) {
            return Err(format!(
                "invalid stream name {stream:?}: 1-200 printable characters without spaces, '/', '?', '&', '#' or '%'"
            ));
        }
        let (user, hostport) = url::split_user(
            authority,
            "a queue URL carries no password: give it in REDIS_PASSWORD (and the user as USER@HOST or in REDIS_USERNAME)",
        )?;
        let user = user.filter(|u| !u.is_empty()).map(str::to_string);
        let (host, port) = match url::split_host_port(hostport) {
            (h, Some(p)) => (h, url::port(p)?),
            (h, None) => (h, DEFAULT_PORT),
        };
        // Kept without its brackets: the client library takes an IPv6 host bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !url::is_host(host) || host.contains(['[', ']']) {
            return Err(format!(
                "{hostport:?} is not a host name or IP address: {FORM}"
            ));
        }
        let mut url = RedisUrl {
            host: host.to_string(),
            port,
            user,
            stream: stream.to_string(),
            group: stream.to_string(),
            db: 0,
            tls: false,
            ca: None,
            expiry: None,
        };
        for (k, v) in url::query_pairs(query) {
            match k {
                "group" => {
                    if !is_valid_name(v) {
                        return Err(format!(
                            "invalid group name {v:?}: 1-200 printable characters without spaces, '/', '?', '&', '#' or '%'"
                        ));
                    }
                    url.group = v.to_string();
                }
                "db" => {
                    url.db = v
                        .parse::<u32>()
                        .map_err(|_| format!("db={v:?} is not a database number (0, 1, …)"))?
                        .into();
                }
                "tls" => url.tls = url::flag(k, v)?,
                "ca" if !v.is_empty() => url.ca = Some(PathBuf::from(v)),
                "password" | "pass" => {
                    return Err("a queue URL carries no password: give it in REDIS_PASSWORD".into());
                }
                other => return Err(url::unknown_parameter(other, "group, db, tls and ca")),
            }
        }
        if url.ca.is_some() && !url.tls {
            return Err("ca= is for TLS: add tls=true".into());
        }
        Ok(url)
    }

    /// The URL again, for logs: no secret is ever part of it.
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut s = format!("redis://{host}:{}/{}", self.port, self.stream);
        if self.group != self.stream {
            s.push_str(&format!(" (group {})", self.group));
        }
        if self.db != 0 {
            s.push_str(&format!(" (db {})", self.db));
        }
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
        let u = RedisUrl::parse("//127.0.0.1:7000/jobs:high?group=workers&db=2&tls=true&ca=/x.pem")
            .unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 7000));
        assert_eq!(
            (u.stream.as_str(), u.group.as_str()),
            ("jobs:high", "workers")
        );
        assert_eq!(
            (u.db, u.tls, u.ca),
            (2, true, Some(PathBuf::from("/x.pem")))
        );
        let u = RedisUrl::parse("//redis/q").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("redis", DEFAULT_PORT));
        assert_eq!(u.group, "q", "one group per queue, named like it");
        assert_eq!(u.user, None);
        let u = RedisUrl::parse("//worker@[::1]:6380/q/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6380));
        assert_eq!(u.user.as_deref(), Some("worker"));
        assert_eq!(u.describe(), "redis://[::1]:6380/q");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("127.0.0.1/q", "missing '//'"),
            ("//h:6379", "a stream name is needed"),
            ("//h:6379/", "a stream name is needed"),
            ("//h/bad stream", "invalid stream name"),
            ("//h/a/b", "invalid stream name"),
            ("//h:99999/q", "port \"99999\""),
            ("//h:0/q", "port \"0\""),
            ("//h/q?colour=red", "unknown parameter"),
            ("//h/q?db=-1", "db=\"-1\""),
            ("//h/q?group=", "invalid group name"),
            ("//h/q?tls=maybe", "tls=\"maybe\""),
            ("//h/q?ca=/x.pem", "add tls=true"),
            ("//h$x/q", "not a host name"),
            ("///q", "not a host name"),
        ] {
            let e = RedisUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused_with_where_it_goes() {
        for url in [
            "//user:hunter2@h/q",
            "//:hunter2@h/q",
            "//h/q?password=hunter2",
        ] {
            let e = RedisUrl::parse(url).unwrap_err();
            assert!(e.contains("REDIS_PASSWORD"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // Through the registry, the echoed URL is masked too.
        let e = crate::QueueUrl::parse("redis://u:hunter2@h/q")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("REDIS_PASSWORD") && !e.contains("hunter2"),
            "{e}"
        );
    }
}

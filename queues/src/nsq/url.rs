//! The `nsq://` queue URL.
//!
//! `nsq://HOST[:PORT]/TOPIC/CHANNEL[?http=HOST:PORT&lookupd=HOST:PORT,…&max_msg_size=BYTES&tls=true&ca=FILE&connections=N]`
//!
//! - `HOST:PORT` is nsqd's TCP address (port 4150 when left out). It may be empty (`nsq:///T/C?lookupd=…`)
//!   when nsqd is to be found through nsqlookupd.
//! - `http` is nsqd's HTTP address, for depth (`/stats`) and for creating the topic and channel; default: the
//!   TCP host on port 4151.
//! - `max_msg_size` mirrors nsqd's `--max-msg-size` (default 1 MiB), so an oversized message is refused with a
//!   clear error before it is sent.
//! - `tls=true` upgrades the connection after IDENTIFY (certificates verified against the web PKI roots, or
//!   against `ca=FILE`).
//! - `connections=N` (1-64, default 1): TCP connections to nsqd per process. nsqd serves each connection on one
//!   goroutine, so one connection caps a client's rate; with N, a producer spreads its publishes over them and
//!   a consumer subscribes on each, with its RDY window split across them, as nsqd's own clients do.
//! - The AUTH secret is never part of the URL (URLs end up in logs and process lists): it comes from the
//!   `NSQ_AUTH_SECRET` environment variable.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::NsqQueue;
use super::codec::{DEFAULT_MAX_MSG_SIZE, is_valid_name};
use crate::keda::{Counts, KedaScaler};
use crate::url;
use crate::{Backend, OpenMode, Queue, QueueError, Target};

/// The registry's entry for this backend (see [`crate::registry`]).
pub static BACKEND: NsqBackend = NsqBackend;

/// NSQ's [`Backend`].
pub struct NsqBackend;

impl Backend for NsqBackend {
    fn scheme(&self) -> &'static str {
        "nsq"
    }

    fn form(&self) -> &'static str {
        "nsq://HOST[:PORT]/TOPIC/CHANNEL[?http=…&lookupd=…&tls=true…]"
    }

    fn summary(&self) -> &'static str {
        "nsqd over its TCP protocol, depth from its HTTP /stats; the AUTH secret comes from NSQ_AUTH_SECRET"
    }

    /// KEDA's NSQ scaler (`pkg/scalers/nsq_scaler.go`): the channel's `depth` summed over every nsqd, which
    /// excludes in-flight and deferred messages (0 for a paused channel; the topic's depth while the channel
    /// does not exist yet). Target `depthThreshold`, default 10; activation `activationDepthThreshold`.
    fn keda(&self) -> Option<&'static KedaScaler> {
        static K: KedaScaler = KedaScaler {
            trigger: "nsq",
            target_key: "depthThreshold",
            default_target: 10,
            counts: Counts::Visible,
            alternative: None,
        };
        Some(&K)
    }

    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String> {
        Ok(Box::new(NsqUrl::parse(rest)?))
    }

    fn url_from_legacy_env(&self, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        url_from_legacy_env(get)
    }
}

#[async_trait]
impl Target for NsqUrl {
    /// Connects nothing yet (connections are lazy), so there is nothing to create or find: both modes agree.
    async fn open(&self, _mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        Ok(Arc::new(NsqQueue::new(self.clone())?))
    }

    /// A sibling topic on the same nsqd, read through a channel of the same name: `work` → `work-telemetry`
    /// (an ephemeral topic's sibling is ephemeral too). nsqd's depth is per topic and channel, so the work
    /// channel's depth never counts it.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let (stem, ephemeral) = match self.topic.strip_suffix("#ephemeral") {
            Some(stem) => (stem, "#ephemeral"),
            None => (self.topic.as_str(), ""),
        };
        let topic = format!("{stem}-{suffix}{ephemeral}");
        if !is_valid_name(&topic) {
            return Err(format!(
                "topic {topic:?} would be longer than nsqd's 64 characters: use a shorter topic"
            ));
        }
        let shown = format!("topic {topic}");
        Ok((
            Box::new(NsqUrl {
                topic,
                ..self.clone()
            }),
            shown,
        ))
    }
}

/// Builds an `nsq://` URL from the original demo's variables, when `MSS_QUEUE_ENDPOINT` or `MSS_TOPIC_NAME`
/// is set: `MSS_QUEUE_ENDPOINT` (nsqd TCP, default 127.0.0.1:4150), `MSS_TOPIC_NAME` and `MSS_CHANNEL_NAME`
/// (default `microscaling-demo`), `NSQ_STATS_ENDPOINT` (nsqd HTTP, default 127.0.0.1:4151; an
/// `http://HOST:PORT/stats` form is accepted too). `get` reads a variable (the environment, or a test's map).
pub fn url_from_legacy_env(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let var = |k: &str| crate::registry::legacy_var(get, k);
    let endpoint = var("MSS_QUEUE_ENDPOINT");
    let topic = var("MSS_TOPIC_NAME");
    if endpoint.is_none() && topic.is_none() {
        return None;
    }
    let strip = |v: String| {
        let v = v
            .trim_start_matches("tcp://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        v.strip_suffix("/stats").unwrap_or(v).to_string()
    };
    let endpoint = endpoint
        .map(strip)
        .unwrap_or_else(|| "127.0.0.1:4150".into());
    let stats = var("NSQ_STATS_ENDPOINT")
        .map(strip)
        .unwrap_or_else(|| "127.0.0.1:4151".into());
    let topic = topic.unwrap_or_else(|| "microscaling-demo".into());
    let channel = var("MSS_CHANNEL_NAME").unwrap_or_else(|| "microscaling-demo".into());
    Some(format!("nsq://{endpoint}/{topic}/{channel}?http={stats}"))
}

/// nsqd's default TCP and HTTP ports.
pub const DEFAULT_TCP_PORT: u16 = 4150;
pub const DEFAULT_HTTP_PORT: u16 = 4151;

/// A parsed `nsq://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsqUrl {
    /// nsqd's TCP address, `None` when discovery through nsqlookupd is to find it.
    pub tcp: Option<String>,
    /// nsqd's HTTP address, `None` when discovery is to find it.
    pub http: Option<String>,
    pub lookupd: Vec<String>,
    pub topic: String,
    pub channel: String,
    pub max_msg_size: u32,
    pub tls: bool,
    pub ca: Option<PathBuf>,
    /// TCP connections per process (1-64).
    pub connections: u16,
}

/// Most connections one process opens (nsqd's clients use one per core; more only costs nsqd goroutines).
pub const MAX_CONNECTIONS: u16 = 64;

/// Splits `host[:port]` and checks it; returns `host:port`.
fn host_port(s: &str, default_port: u16, what: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(format!("empty {what} address"));
    }
    // nsqd has no URL credentials: say where its secret goes.
    url::no_credentials(s, what, "give nsqd's AUTH secret in NSQ_AUTH_SECRET")?;
    // Port 0 is refused after the host is checked, in words of its own.
    let (host, port) = match url::split_host_port(s) {
        (h, Some(p)) => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("{what} address {s:?}: port {p:?} is not a number 1-65535"))?;
            (h, port)
        }
        (h, None) => (h, default_port),
    };
    if !url::is_host(host) {
        return Err(format!(
            "{what} address {s:?}: not a host name or IP address"
        ));
    }
    if port == 0 {
        return Err(format!("{what} address {s:?}: port 0"));
    }
    Ok(format!("{host}:{port}"))
}

impl NsqUrl {
    /// Parses the part after `nsq:`. Errors say what is expected.
    pub fn parse(rest: &str) -> Result<NsqUrl, String> {
        const FORM: &str = "expected nsq://HOST:PORT/TOPIC/CHANNEL (for example nsq://127.0.0.1:4150/microscaling-demo/microscaling-demo)";
        let url::Parts {
            authority,
            path,
            query,
        } = url::split(rest, FORM)?;
        let (topic, channel) = path.split_once('/').unwrap_or((path, ""));
        let channel = channel.trim_end_matches('/');
        if topic.is_empty() || channel.is_empty() {
            return Err(format!("a topic and a channel are needed: {FORM}"));
        }
        for (what, name) in [("topic", topic), ("channel", channel)] {
            if !is_valid_name(name) {
                return Err(format!(
                    "invalid {what} name {name:?}: nsqd accepts 1-64 characters of letters, digits, '.', '_' and '-', optionally ending in #ephemeral"
                ));
            }
        }
        let tcp = if authority.is_empty() {
            None
        } else {
            Some(host_port(authority, DEFAULT_TCP_PORT, "nsqd TCP")?)
        };
        let mut url = NsqUrl {
            http: tcp.as_ref().map(|t| {
                let host = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
                format!("{host}:{DEFAULT_HTTP_PORT}")
            }),
            tcp,
            lookupd: Vec::new(),
            topic: topic.to_string(),
            channel: channel.to_string(),
            max_msg_size: DEFAULT_MAX_MSG_SIZE,
            tls: false,
            ca: None,
            connections: 1,
        };
        for (k, v) in url::query_pairs(query) {
            match k {
                "http" => url.http = Some(host_port(v, DEFAULT_HTTP_PORT, "nsqd HTTP")?),
                "lookupd" => {
                    for a in v.split(',').filter(|a| !a.is_empty()) {
                        url.lookupd.push(host_port(a, 4161, "nsqlookupd")?);
                    }
                }
                "max_msg_size" => url.max_msg_size = url::max_msg_size(v)?,
                "tls" => url.tls = url::flag(k, v)?,
                "ca" if !v.is_empty() => url.ca = Some(PathBuf::from(v)),
                "connections" => {
                    url.connections = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
                        .ok_or_else(|| {
                            format!("connections={v:?}: expected a number of connections, 1-{MAX_CONNECTIONS}")
                        })?;
                }
                other => {
                    return Err(url::unknown_parameter(
                        other,
                        "http, lookupd, max_msg_size, tls, ca and connections",
                    ));
                }
            }
        }
        if url.tcp.is_none() && url.lookupd.is_empty() {
            return Err(format!("no nsqd address and no lookupd: {FORM}"));
        }
        Ok(url)
    }

    /// The URL again, for logs: no secret is ever part of it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "nsq://{}/{}/{}",
            self.tcp.as_deref().unwrap_or(""),
            self.topic,
            self.channel
        );
        if !self.lookupd.is_empty() {
            s.push_str(&format!(" (lookupd {})", self.lookupd.join(",")));
        }
        if self.tls {
            s.push_str(" (tls)");
        }
        if self.connections > 1 {
            s.push_str(&format!(" ({} connections)", self.connections));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::tests::vars;

    #[test]
    fn full_and_short_forms() {
        let u =
            NsqUrl::parse("//127.0.0.1:4150/t/c?http=127.0.0.1:9999&lookupd=a:1,b&max_msg_size=10")
                .unwrap();
        assert_eq!(u.tcp.as_deref(), Some("127.0.0.1:4150"));
        assert_eq!(u.http.as_deref(), Some("127.0.0.1:9999"));
        assert_eq!(u.lookupd, vec!["a:1".to_string(), "b:4161".to_string()]);
        assert_eq!(
            (u.topic.as_str(), u.channel.as_str(), u.max_msg_size),
            ("t", "c", 10)
        );
        let u = NsqUrl::parse("//nsqd/t/c").unwrap();
        assert_eq!(u.tcp.as_deref(), Some("nsqd:4150"));
        assert_eq!(u.http.as_deref(), Some("nsqd:4151"));
        let u = NsqUrl::parse("///t/c?lookupd=l:4161").unwrap();
        assert_eq!((u.tcp, u.http, u.connections), (None, None, 1));
        let u = NsqUrl::parse("//h/t/c?connections=4").unwrap();
        assert_eq!(u.connections, 4);
        assert!(
            u.describe().ends_with("(4 connections)"),
            "{}",
            u.describe()
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("127.0.0.1:4150/t/c", "missing '//'"),
            ("//h:4150/t", "a topic and a channel are needed"),
            ("//h:4150/bad topic/c", "invalid topic name"),
            ("//h:4150/t/c#x", "invalid channel name"),
            (
                &format!("//h:4150/{}/c", "x".repeat(65)),
                "invalid topic name",
            ),
            ("//h:99999/t/c", "port \"99999\""),
            ("//h/t/c?colour=red", "unknown parameter"),
            ("//h/t/c?max_msg_size=big", "max_msg_size"),
            ("//h/t/c?connections=0", "connections=\"0\""),
            ("//h/t/c?connections=65", "1-64"),
            ("//h/t/c?connections=two", "expected a number"),
            ("///t/c", "no nsqd address"),
        ] {
            let e = NsqUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn the_original_nsq_variables_make_an_nsq_url() {
        assert_eq!(url_from_legacy_env(&vars(&[])), None);
        assert_eq!(
            url_from_legacy_env(&vars(&[("MSS_TOPIC_NAME", "demo")])).as_deref(),
            Some("nsq://127.0.0.1:4150/demo/microscaling-demo?http=127.0.0.1:4151")
        );
        assert_eq!(
            url_from_legacy_env(&vars(&[
                ("MSS_QUEUE_ENDPOINT", "nsqd:4150"),
                ("MSS_CHANNEL_NAME", "c"),
                ("NSQ_STATS_ENDPOINT", "http://nsqd:4151/stats"),
            ]))
            .as_deref(),
            Some("nsq://nsqd:4150/microscaling-demo/c?http=nsqd:4151")
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_with_where_they_go() {
        let e = NsqUrl::parse("//user:hunter2@127.0.0.1:4150/t/c").unwrap_err();
        assert!(e.contains("NSQ_AUTH_SECRET"), "{e}");
    }
}

//! What can go wrong talking to a NATS server and its JetStream API, and the [`ErrorKind`] of each.
//!
//! async-nats has one error type per operation (connect, publish, request, batch, consumer, stream…), each with
//! its own kind enum. The backend turns each into one of these variants where it calls the client, so that the
//! mapping to the suite's kinds is written (and tested) once, here.

use async_nats::jetstream;

use crate::{ErrorKind, QueueError};

/// JetStream's error code for a store that refused a message: "maximum messages/bytes exceeded" on a stream at
/// its limits with `discard: new`. It says "slow down until consumers catch up", so it counts as throttling.
pub const STREAM_STORE_FAILED: u64 = 10077;
/// JetStream's error codes for a stream and a consumer that do not exist.
pub const STREAM_NOT_FOUND: u64 = 10059;
pub const CONSUMER_NOT_FOUND: u64 = 10014;
/// JetStream is not enabled on the server (`-js` missing), or not for this account.
pub const JETSTREAM_NOT_ENABLED: u64 = 10076;
pub const JETSTREAM_NOT_ENABLED_FOR_ACCOUNT: u64 = 10039;

/// A NATS failure. None carries a secret: the credentials live in the connect options only.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached (refused, DNS, timed out).
    #[error("cannot connect to NATS at {addr}: {reason} (is nats-server running there, with -js?)")]
    Connect { addr: String, reason: String },
    /// The server refused the credentials.
    #[error(
        "NATS at {addr} refused the credentials: {reason} (check NATS_USER/NATS_PASSWORD or NATS_TOKEN)"
    )]
    Denied { addr: String, reason: String },
    /// TLS set-up or the handshake failed (an unverifiable certificate included).
    #[error(
        "TLS with NATS at {addr}: {reason} (a private CA is trusted with the URL's ca=FILE; verification cannot be turned off)"
    )]
    Tls { addr: String, reason: String },
    /// The connection broke, or a request got no answer in time (the server restarting, or gone).
    #[error("NATS {what}: {reason}")]
    Lost { what: &'static str, reason: String },
    /// The JetStream API answered with an error.
    #[error("JetStream refused {what}: {description} (status {status}, error code {code})")]
    JetStream {
        what: &'static str,
        status: usize,
        code: u64,
        description: String,
    },
    /// A message is larger than the server accepts; nothing was sent.
    #[error("a message of {size} bytes is larger than {max} bytes ({limit})")]
    TooLarge {
        size: usize,
        max: usize,
        limit: &'static str,
    },
    /// The configuration cannot work (credential variables, the CA file).
    #[error("{0}")]
    Config(String),
    /// The server sent something this client cannot use (a message without JetStream metadata).
    #[error("NATS protocol: {0}")]
    Protocol(String),
}

impl NatsError {
    /// A JetStream API error, from async-nats' representation.
    pub fn jetstream(what: &'static str, e: &async_nats::jetstream::Error) -> NatsError {
        // The error has no getter for its description: its text is "DESCRIPTION (code N, error code M)".
        let text = e.to_string();
        let description = text
            .rsplit_once(" (code ")
            .map_or(text.as_str(), |(d, _)| d)
            .to_string();
        NatsError::JetStream {
            what,
            status: e.code(),
            code: e.error_code().0,
            description,
        }
    }

    /// Any other failure of a call: the connection, a timeout, no responders (JetStream not there yet
    /// after a restart). `e` is the client's error; its text names the cause.
    pub fn lost(what: &'static str, e: impl std::fmt::Display) -> NatsError {
        NatsError::Lost {
            what,
            reason: e.to_string(),
        }
    }
}

impl From<NatsError> for QueueError {
    fn from(e: NatsError) -> QueueError {
        let kind = match &e {
            NatsError::Connect { .. } | NatsError::Tls { .. } | NatsError::Lost { .. } => {
                ErrorKind::Unavailable
            }
            NatsError::Denied { .. } => ErrorKind::Denied,
            NatsError::JetStream { status, code, .. } => match (*status, *code) {
                (_, STREAM_STORE_FAILED) => ErrorKind::Throttled,
                (_, STREAM_NOT_FOUND | CONSUMER_NOT_FOUND) => ErrorKind::NotFound,
                // Said by a server started without -js: retrying will not help.
                (_, JETSTREAM_NOT_ENABLED | JETSTREAM_NOT_ENABLED_FOR_ACCOUNT) => {
                    ErrorKind::Invalid
                }
                (401 | 403, _) => ErrorKind::Denied,
                (404, _) => ErrorKind::NotFound,
                (408 | 503 | 504, _) => ErrorKind::Unavailable,
                (429, _) => ErrorKind::Throttled,
                (413, _) => ErrorKind::TooLarge,
                _ => ErrorKind::Other,
            },
            NatsError::TooLarge { size, max, limit } => {
                // The suite-wide wording, so that producers report every backend's limit alike.
                return QueueError::too_large(*size, *max, *limit);
            }
            NatsError::Config(_) => ErrorKind::Invalid,
            NatsError::Protocol(_) => ErrorKind::Other,
        };
        QueueError::new(kind, e)
    }
}

// The conversions from async-nats' per-operation errors, one per call site kind.

pub(super) fn connect_error(addr: &str, e: &async_nats::ConnectError) -> NatsError {
    use async_nats::ConnectErrorKind as K;
    let reason = e.to_string();
    let addr = addr.to_string();
    match e.kind() {
        K::Authentication | K::AuthorizationViolation => NatsError::Denied { addr, reason },
        K::Tls => NatsError::Tls { addr, reason },
        // A refused certificate comes back as an IO error from the handshake.
        _ if reason.contains("certificate") || reason.contains("handshake") => {
            NatsError::Tls { addr, reason }
        }
        _ => NatsError::Connect { addr, reason },
    }
}

pub(super) fn create_stream_error(e: &jetstream::context::CreateStreamError) -> NatsError {
    use jetstream::context::CreateStreamErrorKind as K;
    match e.kind() {
        K::JetStream(js) => NatsError::jetstream("creating the stream", &js),
        K::JetStreamUnavailable => NatsError::JetStream {
            what: "creating the stream",
            status: 503,
            code: JETSTREAM_NOT_ENABLED,
            description: "JetStream is not enabled on this server (start nats-server with -js)"
                .into(),
        },
        _ => NatsError::lost("creating the stream", e),
    }
}

pub(super) fn get_stream_error(e: &jetstream::context::GetStreamError) -> NatsError {
    match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(js) => {
            NatsError::jetstream("looking up the stream", &js)
        }
        _ => NatsError::lost("looking up the stream", e),
    }
}

pub(super) fn consumer_error(
    what: &'static str,
    e: &jetstream::stream::ConsumerError,
) -> NatsError {
    match e.kind() {
        jetstream::stream::ConsumerErrorKind::JetStream(js) => NatsError::jetstream(what, &js),
        _ => NatsError::lost(what, e),
    }
}

pub(super) fn consumer_info_error(
    name: &str,
    e: &jetstream::context::ConsumerInfoError,
) -> NatsError {
    use jetstream::context::ConsumerInfoErrorKind as K;
    match e.kind() {
        K::JetStream(js) => NatsError::jetstream("reading the consumer's info", &js),
        K::NotFound | K::StreamNotFound => NatsError::JetStream {
            what: "reading the consumer's info",
            status: 404,
            code: CONSUMER_NOT_FOUND,
            description: format!("consumer {name:?} or its stream not found"),
        },
        _ => NatsError::lost("reading the consumer's info", e),
    }
}

pub(super) fn publish_error(e: &jetstream::context::PublishError) -> NatsError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::StreamNotFound => NatsError::JetStream {
            what: "a publish",
            status: 404,
            code: STREAM_NOT_FOUND,
            description: "no stream captures the subject (was the stream deleted?)".into(),
        },
        K::MaxPayloadExceeded => NatsError::JetStream {
            what: "a publish",
            status: 413,
            code: 0,
            description: e.to_string(),
        },
        _ => NatsError::lost("publish", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(status: usize, code: u64) -> NatsError {
        NatsError::JetStream {
            what: "a test",
            status,
            code,
            description: "d".into(),
        }
    }

    #[test]
    fn kinds_callers_branch_on() {
        let kind = |e: NatsError| QueueError::from(e).kind();
        assert_eq!(
            kind(NatsError::Connect {
                addr: "h:4222".into(),
                reason: "refused".into()
            }),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(NatsError::lost("publish", "timed out")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(NatsError::Denied {
                addr: "h".into(),
                reason: "authorization violation".into()
            }),
            ErrorKind::Denied
        );
        assert_eq!(kind(js(503, STREAM_STORE_FAILED)), ErrorKind::Throttled);
        assert_eq!(kind(js(404, STREAM_NOT_FOUND)), ErrorKind::NotFound);
        assert_eq!(kind(js(404, CONSUMER_NOT_FOUND)), ErrorKind::NotFound);
        assert_eq!(kind(js(503, JETSTREAM_NOT_ENABLED)), ErrorKind::Invalid);
        assert_eq!(kind(js(503, 10008)), ErrorKind::Unavailable);
        assert_eq!(kind(js(400, 10025)), ErrorKind::Other);
        assert_eq!(
            kind(NatsError::Config("NATS_USER without NATS_PASSWORD".into())),
            ErrorKind::Invalid
        );
        let e = QueueError::from(NatsError::TooLarge {
            size: 10,
            max: 5,
            limit: "the server's max_payload",
        });
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(e.to_string().contains("max_payload"), "{e}");
    }

    #[test]
    fn only_a_full_stream_counts_as_throttling() {
        assert!(QueueError::from(js(503, STREAM_STORE_FAILED)).is_throttled());
        assert!(QueueError::from(js(429, 0)).is_throttled());
        assert!(!QueueError::from(NatsError::lost("ack", "broken pipe")).is_throttled());
        assert!(!QueueError::from(js(503, 10008)).is_throttled());
    }

    #[test]
    fn the_text_says_what_failed() {
        let e = js(503, STREAM_STORE_FAILED);
        assert_eq!(
            e.to_string(),
            "JetStream refused a test: d (status 503, error code 10077)"
        );
    }
}

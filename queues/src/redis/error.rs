//! What can go wrong talking to Redis, and the [`ErrorKind`] each failure is.

use crate::{ErrorKind, QueueError};

/// A Redis failure. None carries a secret: the client's errors name commands and server replies, never the
/// password (the URL it connects with is ours, and holds none).
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// A call to the server failed; `what` names the operation.
    #[error("redis {what} on {target}: {source}{}", down_hint(source))]
    Call {
        what: &'static str,
        target: String,
        source: ::redis::RedisError,
    },
    /// The server answered something this backend cannot read.
    #[error("redis {what} on {target}: unexpected reply: {detail}")]
    Reply {
        what: &'static str,
        target: String,
        detail: String,
    },
    /// The stream or its group is missing, and this open may not create them.
    #[error("redis {target}: {detail}")]
    Missing { target: String, detail: String },
    /// The configuration cannot work (a CA bundle, the client's settings).
    #[error("redis {target}: {detail}")]
    Config { target: String, detail: String },
}

/// What a person should check when the server could not be reached, as the NSQ, NATS and RabbitMQ
/// backends say it (the connection was refused, or nothing answered), or refused the credential (a wrong
/// password, or one given to a server that has none, which the client reports alike).
fn down_hint(e: &::redis::RedisError) -> &'static str {
    if e.is_connection_refusal() || e.is_timeout() {
        " (is redis-server running there?)"
    } else if kind_of(e) == ErrorKind::Denied {
        " (check REDIS_USERNAME and REDIS_PASSWORD: the server refused them, or has no password set)"
    } else {
        ""
    }
}

/// The server's error code (`NOGROUP`, `OOM`…) of a reply, also when it came inside a pipeline's reply
/// (where the client's `code()` gives none).
pub(crate) fn server_code(e: &::redis::RedisError) -> Option<String> {
    if let Some(c) = e.code() {
        return Some(c.to_string());
    }
    let errors = e.clone().into_server_errors()?;
    errors.first().map(|(_, s)| s.code().to_string())
}

/// The kind of a client error: what callers branch on.
pub(crate) fn kind_of(e: &::redis::RedisError) -> ErrorKind {
    use ::redis::{ErrorKind as K, ServerErrorKind as S};
    let code = server_code(e).unwrap_or_default();
    // Codes the client has no variant for, from the server's replies.
    match code.as_str() {
        "NOAUTH" | "WRONGPASS" | "NOPERM" => return ErrorKind::Denied,
        // maxmemory reached: the server refuses writes until consumers catch up. Slow down, as for Azure's 503.
        "OOM" | "BUSY" => return ErrorKind::Throttled,
        "WRONGTYPE" => return ErrorKind::Invalid,
        "NOGROUP" => return ErrorKind::NotFound,
        _ => {}
    }
    match e.kind() {
        K::AuthenticationFailed | K::Server(S::NoPerm) => ErrorKind::Denied,
        K::InvalidClientConfig => ErrorKind::Invalid,
        // A loading server (after a restart, reading its AOF), a replica taking over, or a cluster moving:
        // transient, like a server that is down.
        K::Server(S::BusyLoading | S::MasterDown | S::ClusterDown | S::TryAgain | S::ReadOnly) => {
            ErrorKind::Unavailable
        }
        _ if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal() =>
        {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Other,
    }
}

impl From<RedisError> for QueueError {
    fn from(e: RedisError) -> QueueError {
        let kind = match &e {
            RedisError::Call { source, .. } => kind_of(source),
            RedisError::Reply { .. } => ErrorKind::Other,
            RedisError::Missing { .. } => ErrorKind::NotFound,
            RedisError::Config { .. } => ErrorKind::Invalid,
        };
        QueueError::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_callers_branch_on() {
        let call = |source: ::redis::RedisError| {
            QueueError::from(RedisError::Call {
                what: "XADD",
                target: "redis://h:6379/q".into(),
                source,
            })
        };
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = call(::redis::RedisError::from(io));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(
            e.to_string().starts_with("redis XADD on redis://h:6379/q"),
            "{e}"
        );
        assert!(
            e.to_string().ends_with("(is redis-server running there?)"),
            "{e}"
        );
        let e = call(::redis::RedisError::from((
            ::redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        )));
        assert_eq!(e.kind(), ErrorKind::Denied);
        let e = call(::redis::RedisError::from((
            ::redis::ErrorKind::InvalidClientConfig,
            "bad",
        )));
        assert_eq!(e.kind(), ErrorKind::Invalid);
        // The server's own codes (WRONGPASS, OOM, WRONGTYPE…) are checked against a real server in
        // testkit/tests/it/redis_backend.rs: the client builds those errors from replies only.
        assert_eq!(
            QueueError::from(RedisError::Missing {
                target: "redis://h:6379/q".into(),
                detail: "no stream".into()
            })
            .kind(),
            ErrorKind::NotFound
        );
        assert!(!e.is_throttled());
    }
}

//! What can go wrong talking to RabbitMQ, and which [`ErrorKind`] each failure is for the callers.

use crate::{ErrorKind, QueueError};

/// An AMQP failure. None carries a secret: the password is never part of a message, and lapin's errors
/// name the server's reply, not the credentials.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The broker could not be reached, or the connection broke.
    #[error("cannot talk to RabbitMQ at {addr}: {reason} (is it running there?)")]
    Unreachable { addr: String, reason: String },
    /// The broker answered with a channel or connection close: `code` is the AMQP reply code.
    #[error("RabbitMQ refused {op}: {code} {text}{hint}")]
    Refused {
        op: &'static str,
        code: u16,
        text: String,
        hint: &'static str,
    },
    /// The broker nacked a publish (an internal error, or a queue full with `reject-publish`).
    #[error("RabbitMQ nacked {0} of the batch's messages: not stored, will be sent again")]
    Nacked(usize),
    /// A publish came back unroutable: the queue no longer exists.
    #[error("RabbitMQ returned a message as unroutable ({0}): was queue {1:?} deleted?")]
    Returned(String, String),
    /// The broker did not answer in time; `blocked` when it had blocked the connection (a memory or disk
    /// alarm), which is the broker asking us to slow down.
    #[error("RabbitMQ did not answer {what} within {secs} s{}", if *blocked { " (the broker has blocked publishers: memory or disk alarm)" } else { "" })]
    Timeout {
        what: &'static str,
        secs: u64,
        blocked: bool,
    },
    /// A message is larger than the broker accepts.
    #[error("message of {size} bytes is over the {max}-byte max_message_size")]
    TooLarge { size: usize, max: usize },
    /// The management API failed.
    #[error("RabbitMQ management API {url}: {reason}")]
    Management { url: String, reason: String },
    /// TLS set-up failed (an unusable CA file).
    #[error("TLS: {0}")]
    Tls(String),
}

impl AmqpError {
    /// Classifies a lapin error from operation `op` against broker `addr`.
    pub fn from_lapin(e: &lapin::Error, op: &'static str, addr: &str) -> AmqpError {
        if let lapin::ErrorKind::ProtocolError(p) = e.kind() {
            let code = p.get_id();
            let hint = match code {
                403 => {
                    " (check the user and AMQP_PASSWORD, and the user's permissions on the vhost)"
                }
                404 => " (the queue or vhost does not exist)",
                406 => {
                    " (a queue of that name exists with other settings, such as another type=: use its type, or another name)"
                }
                530 => " (the vhost does not exist, or the user may not use it)",
                _ => "",
            };
            return AmqpError::Refused {
                op,
                code,
                text: p.get_message().to_string(),
                hint,
            };
        }
        AmqpError::Unreachable {
            addr: addr.to_string(),
            reason: workload::redact::url(&e.to_string()),
        }
    }
}

impl From<AmqpError> for QueueError {
    fn from(e: AmqpError) -> QueueError {
        let kind = match &e {
            AmqpError::Unreachable { .. } | AmqpError::Management { .. } => ErrorKind::Unavailable,
            AmqpError::Refused { code, .. } => match code {
                // ACCESS_REFUSED, NOT_ALLOWED (vhost access).
                403 | 530 => ErrorKind::Denied,
                404 => ErrorKind::NotFound,
                // PRECONDITION_FAILED: the queue exists with other arguments; a usage error.
                406 => ErrorKind::Invalid,
                // CONNECTION_FORCED (broker shutting down), RESOURCE_ERROR, INTERNAL_ERROR: transient.
                320 | 506 | 541 => ErrorKind::Unavailable,
                311 => {
                    return QueueError::new(ErrorKind::TooLarge, e);
                }
                _ => ErrorKind::Other,
            },
            AmqpError::Nacked(_) => ErrorKind::Throttled,
            AmqpError::Timeout { blocked, .. } => {
                if *blocked {
                    ErrorKind::Throttled
                } else {
                    ErrorKind::Unavailable
                }
            }
            AmqpError::Returned(..) => ErrorKind::NotFound,
            AmqpError::TooLarge { size, max } => {
                return QueueError::too_large(
                    *size,
                    *max,
                    "RabbitMQ's max_message_size (the URL's max_msg_size)",
                );
            }
            AmqpError::Tls(_) => ErrorKind::Invalid,
        };
        QueueError::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16) -> AmqpError {
        AmqpError::Refused {
            op: "queue.declare",
            code,
            text: "X".into(),
            hint: "",
        }
    }

    #[test]
    fn kinds_callers_branch_on() {
        let kind = |e: AmqpError| QueueError::from(e).kind();
        assert_eq!(
            kind(AmqpError::Unreachable {
                addr: "h:5672".into(),
                reason: "refused".into()
            }),
            ErrorKind::Unavailable
        );
        assert_eq!(kind(refused(403)), ErrorKind::Denied);
        assert_eq!(kind(refused(530)), ErrorKind::Denied);
        assert_eq!(kind(refused(404)), ErrorKind::NotFound);
        assert_eq!(kind(refused(406)), ErrorKind::Invalid);
        assert_eq!(kind(refused(320)), ErrorKind::Unavailable);
        assert_eq!(kind(refused(311)), ErrorKind::TooLarge);
        assert_eq!(kind(refused(504)), ErrorKind::Other);
        assert_eq!(
            kind(AmqpError::Returned("312 NO_ROUTE".into(), "q".into())),
            ErrorKind::NotFound
        );
        let e = QueueError::from(AmqpError::TooLarge { size: 10, max: 5 });
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(e.to_string().contains("max_msg_size"), "{e}");
        assert_eq!(kind(AmqpError::Tls("x".into())), ErrorKind::Invalid);
    }

    #[test]
    fn throttling_is_a_nack_or_a_blocked_broker_and_nothing_else() {
        assert!(QueueError::from(AmqpError::Nacked(3)).is_throttled());
        let timeout = |blocked| AmqpError::Timeout {
            what: "the publish confirms",
            secs: 10,
            blocked,
        };
        let e = QueueError::from(timeout(true));
        assert!(e.is_throttled());
        assert!(e.to_string().contains("alarm"), "{e}");
        assert!(!QueueError::from(timeout(false)).is_throttled());
        assert!(!QueueError::from(refused(403)).is_throttled());
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = AmqpError::Refused {
            op: "the connection",
            code: 403,
            text: "ACCESS_REFUSED - Login was refused".into(),
            hint: " (check the user and AMQP_PASSWORD, and the user's permissions on the vhost)",
        };
        assert_eq!(
            e.to_string(),
            "RabbitMQ refused the connection: 403 ACCESS_REFUSED - Login was refused (check the user and AMQP_PASSWORD, and the user's permissions on the vhost)"
        );
    }
}

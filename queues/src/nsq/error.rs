//! What can go wrong talking to nsqd or nsqlookupd.

/// An NSQ failure. None carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum NsqError {
    /// nsqd could not be reached.
    #[error("cannot connect to nsqd at {addr}: {source} (is nsqd running there?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The connection broke or was closed by nsqd.
    #[error("connection to nsqd lost: {0}")]
    Lost(String),
    /// nsqd answered with an error frame.
    #[error("nsqd refused: {code} {message}")]
    Refused { code: String, message: String },
    /// nsqd said something this client cannot make sense of.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// nsqd did not answer in time.
    #[error("nsqd did not answer {what} within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    /// A message is larger than nsqd accepts.
    #[error(
        "a message of {size} bytes is larger than nsqd's max-msg-size of {max} bytes (raise nsqd's --max-msg-size and the URL's max_msg_size, or send smaller messages)"
    )]
    MessageTooBig { size: usize, max: u32 },
    /// nsqd's or nsqlookupd's HTTP API failed.
    #[error("nsq HTTP {url}: {reason}")]
    Http { url: String, reason: String },
    /// Discovery found no nsqd for the topic.
    #[error("nsqlookupd knows no nsqd for topic {topic:?} (asked {lookupd})")]
    NoProducers { topic: String, lookupd: String },
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
}

impl From<NsqError> for crate::QueueError {
    fn from(e: NsqError) -> crate::QueueError {
        use crate::{ErrorKind, QueueError};
        let kind = match &e {
            NsqError::Connect { .. }
            | NsqError::Lost(_)
            | NsqError::Timeout { .. }
            | NsqError::Http { .. }
            | NsqError::NoProducers { .. }
            | NsqError::Tls(_) => ErrorKind::Unavailable,
            NsqError::Refused { code, .. }
                if code.starts_with("E_AUTH") || code == "E_UNAUTHORIZED" =>
            {
                ErrorKind::Denied
            }
            NsqError::Refused { .. } | NsqError::Protocol(_) => ErrorKind::Other,
            // The suite-wide wording, so that producers report every backend's limit alike.
            NsqError::MessageTooBig { size, max } => {
                return QueueError::too_large(
                    *size,
                    *max as usize,
                    "nsqd's --max-msg-size (the URL's max_msg_size)",
                );
            }
        };
        QueueError::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, QueueError};

    #[test]
    fn kinds_callers_branch_on_and_nsq_never_throttles() {
        let kind = |e: NsqError| QueueError::from(e).kind();
        let refused = |code: &str| NsqError::Refused {
            code: code.into(),
            message: String::new(),
        };
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            kind(NsqError::Connect {
                addr: "h:4150".into(),
                source: io
            }),
            ErrorKind::Unavailable
        );
        assert_eq!(kind(NsqError::Lost("eof".into())), ErrorKind::Unavailable);
        assert_eq!(kind(refused("E_AUTH_FAILED")), ErrorKind::Denied);
        assert_eq!(kind(refused("E_UNAUTHORIZED")), ErrorKind::Denied);
        assert_eq!(kind(refused("E_BAD_TOPIC")), ErrorKind::Other);
        let e = QueueError::from(NsqError::MessageTooBig { size: 10, max: 5 });
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(e.to_string().contains("max-msg-size"), "{e}");
        // nsqd has no "slow down" answer: nothing it says is counted as throttling.
        assert!(!QueueError::from(refused("E_FIN_FAILED")).is_throttled());
    }
}

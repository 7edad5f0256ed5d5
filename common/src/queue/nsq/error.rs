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

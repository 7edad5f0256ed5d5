//! Errors from the service, turned into one line a person can act on, with no key, SAS or signature in it,
//! and classified so that the stats can count throttling apart from other failures.

use std::fmt;

use azure_core::error::ErrorKind;

/// What kind of failure, for the caller's counters and back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 401/403: the key, SAS or token was refused. Retrying will not help.
    Auth,
    /// 503 ServerBusy, 500 (operation timed out) or a client-side timeout: the service asks us to slow down.
    Throttled,
    /// The endpoint could not be reached (connection refused, DNS): Azurite stopped, network down.
    Unreachable,
    /// The configuration is wrong (credential missing or malformed): found before any request.
    Setup,
    /// Anything else.
    Other,
}

/// A failed call to Azure Storage.
#[derive(Debug)]
pub struct AzureError {
    pub account: String,
    pub queue: String,
    pub op: &'static str,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub fault: Fault,
    detail: String,
}

impl AzureError {
    pub(super) fn from_sdk(
        account: &str,
        queue: &str,
        endpoint: &str,
        credential: &str,
        op: &'static str,
        e: azure_core::Error,
    ) -> AzureError {
        let (status, code, fault, detail) = match e.kind() {
            ErrorKind::HttpResponse {
                status, error_code, ..
            } => {
                let n = u16::from(*status);
                let fault = match n {
                    401 | 403 => Fault::Auth,
                    500 | 503 => Fault::Throttled,
                    _ => Fault::Other,
                };
                let reason = status.canonical_reason();
                let code_txt = error_code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                let hint = match fault {
                    Fault::Auth => format!(
                        ": the service refused the credential ({credential}); check the account key or SAS for account {account}"
                    ),
                    Fault::Throttled => ": the service is busy; back off and retry".to_string(),
                    _ => String::new(),
                };
                (
                    Some(n),
                    error_code.clone(),
                    fault,
                    format!("HTTP {n} {reason}{code_txt}{hint}"),
                )
            }
            _ => {
                let chain = source_chain(&e);
                let timed_out = chain.contains("timed out") || chain.contains("timeout");
                let io = io_cause(&e);
                if timed_out {
                    (
                        None,
                        None,
                        Fault::Throttled,
                        format!("timed out talking to {endpoint}"),
                    )
                } else if matches!(e.kind(), ErrorKind::Connection | ErrorKind::Io) || io.is_some()
                {
                    let why = io.unwrap_or_else(|| "connection failed".into());
                    (
                        None,
                        None,
                        Fault::Unreachable,
                        format!("cannot reach {endpoint}: {why}"),
                    )
                } else {
                    (None, None, Fault::Other, redact(&chain))
                }
            }
        };
        AzureError {
            account: account.to_string(),
            queue: queue.to_string(),
            op,
            status,
            code,
            fault,
            detail,
        }
    }

    /// A set-up problem found before any request (a missing or malformed credential).
    pub(super) fn setup(
        account: &str,
        queue: &str,
        op: &'static str,
        detail: String,
    ) -> AzureError {
        AzureError {
            account: account.to_string(),
            queue: queue.to_string(),
            op,
            status: None,
            code: None,
            fault: Fault::Setup,
            detail,
        }
    }

    /// 503/500/timeouts: the service's way of saying "slow down".
    pub fn is_throttled(&self) -> bool {
        self.fault == Fault::Throttled
    }
}

impl fmt::Display for AzureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "azure account {} queue {}: cannot {}: {}",
            self.account, self.queue, self.op, self.detail
        )
    }
}

impl std::error::Error for AzureError {}

impl From<AzureError> for crate::QueueError {
    fn from(e: AzureError) -> crate::QueueError {
        use crate::ErrorKind;
        let kind = match e.fault {
            Fault::Auth => ErrorKind::Denied,
            Fault::Throttled => ErrorKind::Throttled,
            Fault::Unreachable => ErrorKind::Unavailable,
            Fault::Setup => ErrorKind::Invalid,
            Fault::Other => ErrorKind::Other,
        };
        crate::QueueError::new(kind, e)
    }
}

/// The error and its causes as one string (reqwest's messages include the request URL, hence [`redact`]).
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The operating system's reason, if an I/O error is among the causes (it never holds a URL).
fn io_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.to_string());
        }
        cur = c.source();
    }
    None
}

/// Removes the values of SAS signature parameters (`sig=`) from text that may quote a request URL.
pub(super) fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        rest = &rest[i + 4..];
        let end = rest.find(['&', ')', ' ', '"', '\'']).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The SDK's words in an error about choosing a credential, on one line and short: without the account and
/// queue our error names already, each of its lines once (its first alone was "Multiple errors were
/// encountered while attempting to authenticate:", the errors themselves on the lines after it).
pub(super) fn sdk_words(text: &str) -> String {
    const MOST: usize = 400;
    let text = text
        .split_once(": cannot open the queue: ")
        .map_or(text, |(_, d)| d);
    let mut words = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if words.len() > MOST {
        let cut = (0..=MOST)
            .rev()
            .find(|&i| words.is_char_boundary(i))
            .unwrap_or(0);
        words.truncate(cut);
        words.push('…');
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_and_timeouts_count_as_throttling() {
        use crate::{ErrorKind, QueueError};
        let with = |fault| AzureError {
            account: "a".into(),
            queue: "q".into(),
            op: "send a message",
            status: None,
            code: None,
            fault,
            detail: String::new(),
        };
        for (fault, kind) in [
            (Fault::Throttled, ErrorKind::Throttled),
            (Fault::Auth, ErrorKind::Denied),
            (Fault::Unreachable, ErrorKind::Unavailable),
            (Fault::Setup, ErrorKind::Invalid),
            (Fault::Other, ErrorKind::Other),
        ] {
            let e = QueueError::from(with(fault));
            assert_eq!(e.kind(), kind);
            assert_eq!(e.is_throttled(), fault == Fault::Throttled);
        }
    }

    #[test]
    fn redact_hides_signatures() {
        assert_eq!(
            redact("error sending request for url (http://h/q?sv=1&sig=abc%2F&se=2) x"),
            "error sending request for url (http://h/q?sv=1&sig=REDACTED&se=2) x"
        );
        assert_eq!(redact("sig=zz"), "sig=REDACTED");
    }

    #[test]
    fn the_sdks_words_are_one_short_line_with_every_line_of_it() {
        let text = "azure account a queue q: cannot open the queue: Multiple errors were encountered while \
                    attempting to authenticate:\n  AzureCliCredential: az not found\n\n  AzureDeveloperCliCredential: azd not found\n";
        assert_eq!(
            sdk_words(text),
            "Multiple errors were encountered while attempting to authenticate: AzureCliCredential: az not \
             found AzureDeveloperCliCredential: azd not found"
        );
        let long = "é".repeat(500);
        let short = sdk_words(&long);
        assert!(
            short.ends_with('…') && short.len() <= 403,
            "{}",
            short.len()
        );
    }
}

//! A value that must never reach a log, an error message or the terminal: the Azure key, a DC/OS token, a
//! Basic-auth password. It is the suite's one [`Secret`] type (`workload::redact`), which prints as `***`;
//! a definition shown to a person (`--dry-run`, diffs) shows [`REDACTED`] in its place.

/// What a secret in a definition shown to a person prints as.
pub const REDACTED: &str = "<redacted>";

pub use workload::redact::Secret;

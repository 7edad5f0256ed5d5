//! Secrets out of anything we print.
//!
//! Queue URLs and endpoints are echoed in errors and logs, because "which queue?" is the first thing a user
//! needs to know. But a user may paste a URL that carries a secret (a SAS `sig=`, an `AccountKey=`, a password
//! in `http://user:password@host`), and our own parsers reject exactly those URLs, so the rejection message is
//! the one place a secret would otherwise reach a terminal or a log collector. Everything that echoes a URL
//! given by the user goes through [`url`] first; a secret the program holds is a [`Secret`], which prints as
//! `***`.

/// A secret string (a key, a SAS token, a password): `Debug` and `Display` print `***`, and it has no
/// `Serialize`, so it cannot leak through a log line, an error or a JSON document by accident.
/// [`Secret::expose`] is the one way to read it, called only where the value is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the request that needs it and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

/// So that clap can take a secret from a flag or the environment without a plain `String` in between.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

/// Query or connection-string keys whose values are secrets (compared without case).
const SECRET_KEYS: &[&str] = &[
    "sig",
    "signature",
    "accountkey",
    "sharedaccesssignature",
    "key",
    "secret",
    "client_secret",
    "password",
    "token",
    "access_token",
    "auth_secret",
];

/// What a redacted value is replaced with.
pub(crate) const MASK: &str = "***";

/// Returns `s` with every password in a `scheme://user:password@host` and every value of a secret-looking
/// key (`sig=`, `AccountKey=`, `password=`…, plain or percent-encoded) replaced by `***`. Text without secrets
/// comes back unchanged.
pub fn url(s: &str) -> String {
    values(&bare_userinfo(&userinfo(s)))
}

/// `user:password@host` without a scheme (an address taken apart from its URL, an nsqd `HOST:PORT` given
/// with a password, a path that holds one) → `***@host`: a word whose part before `@` holds a `:`, plain or
/// percent-encoded. A bare `name@host` (no password) is left alone.
fn bare_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for (at, _) in s.match_indices('@') {
        if at < copied {
            continue;
        }
        // The word ends, going back, at a character that cannot be in an authority's userinfo.
        let start = s[..at]
            .rfind(|c: char| c.is_whitespace() || "\"'`=(),&?/<>[]{}".contains(c))
            .map_or(0, |i| i + 1)
            .max(copied);
        let word = &s[start..at];
        if word != MASK
            && !is_shape_term(word)
            // `…:PASSWORD@]HOST`: an optional group of a form written for people; no host starts with `]`.
            && !s[at + 1..].starts_with(']')
            && (word.contains(':') || word.to_ascii_lowercase().contains("%3a"))
        {
            out.push_str(&s[copied..start]);
            out.push_str(MASK);
            copied = at;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// A load shape's term (`burst:500@10s`, `step:10@0s`, the form `burst:COUNT@OFFSET`): its `KIND:…@…` is
/// an offset, not a password, and masking it would garble every message that quotes a shape.
fn is_shape_term(word: &str) -> bool {
    let kind = word.split(':').next().unwrap_or_default();
    // After a `+` when the term is part of a sum (`const:10+burst:500@5s`).
    let kind = kind.rsplit('+').next().unwrap_or_default();
    matches!(kind, "const" | "step" | "ramp" | "sine" | "burst")
}

/// `scheme://user:password@host…` → `scheme://***@host…`, for every `://` in the string (an endpoint nested in
/// a query has its own).
fn userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first character that starts a path, query or fragment, or another
        // parameter of an enclosing query.
        let end = tail.find(['/', '?', '#', '&', ';']).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            // Brackets cannot stand in a userinfo (RFC 3986 §3.2.1): this is a form such as
            // `amqp://[USER[:PASSWORD]@]HOST`, written for people, with nothing secret in it.
            Some(at) if tail[..at].contains(['[', ']']) => rest = tail,
            Some(at) => {
                out.push_str(MASK);
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// `…sig=VALUE&…` → `…sig=***&…` for the keys in [`SECRET_KEYS`], also when the `=` and the separators are
/// percent-encoded (`%3D`, `%26`), as in an endpoint nested in a query.
fn values(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        if let Some(value_start) = secret_value_at(&lower, i) {
            let value_end = value_end(&lower, value_start);
            out.push_str(&s[copied..value_start]);
            out.push_str(MASK);
            copied = value_end;
            i = value_end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// When a secret key starts at byte `i` of `lower` (after a separator) and is followed by `=` or `%3d`, the
/// byte where its value starts.
fn secret_value_at(lower: &str, i: usize) -> Option<usize> {
    if !lower.is_char_boundary(i) {
        return None;
    }
    let before = &lower[..i];
    let after_separator = i == 0
        || before.ends_with(['?', '&', ';', ' ', '"', '\''])
        || before.ends_with("%3f")
        || before.ends_with("%26");
    if !after_separator {
        return None;
    }
    let rest = &lower[i..];
    let key_len = SECRET_KEYS
        .iter()
        .find(|key| rest.starts_with(*key))
        .map(|key| key.len())
        .or_else(|| env_style_secret(rest))?;
    let after_key = &rest[key_len..];
    if after_key.starts_with('=') {
        Some(i + key_len + 1)
    } else if after_key.starts_with("%3d") {
        Some(i + key_len + 3)
    } else {
        None
    }
}

/// The length of an environment-style name at the start of `rest` (`redis_password`, `nats_token`,
/// `azure_storage_account_key`, lower-cased) that names a secret: one ending in `_` and a key of
/// [`SECRET_KEYS`], or holding `password`, `secret` or `token`. A file of `NAME=VALUE` lines quoted in an
/// error (a `.env` given as a ledger) would otherwise show its secrets.
fn env_style_secret(rest: &str) -> Option<usize> {
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..len];
    let secret = SECRET_KEYS.iter().any(|key| {
        name.strip_suffix(key)
            .is_some_and(|head| head.ends_with('_'))
    }) || ["password", "secret", "token"]
        .iter()
        .any(|w| name.contains(w));
    secret.then_some(len)
}

/// Where a value that starts at `start` ends: at the next separator, plain or percent-encoded.
fn value_end(lower: &str, start: usize) -> usize {
    let rest = &lower[start..];
    [rest.find(['&', ';', '#', ' ', '"', '\'']), rest.find("%26")]
        .into_iter()
        .flatten()
        .min()
        .map_or(lower.len(), |n| start + n)
}

#[cfg(test)]
mod tests {
    use super::{Secret, url};

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert!(!format!("{:?}", Some(s.clone())).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
        assert!(!s.is_empty() && Secret::new("").is_empty());
        assert_eq!("x".parse::<Secret>().unwrap().expose(), "x");
    }

    const KEY: &str = "U0VDUkVUS0VZU0VDUkVUS0VZU0VDUkVU";

    #[test]
    fn passwords_in_userinfo_are_masked_wherever_the_url_sits() {
        let s =
            format!("azure://acct/q?endpoint=http://user:{KEY}@127.0.0.1:10001/acct&depth=visible");
        let r = url(&s);
        assert!(!r.contains(KEY), "{r}");
        assert_eq!(
            r,
            "azure://acct/q?endpoint=http://***@127.0.0.1:10001/acct&depth=visible"
        );
        assert_eq!(
            url(&format!("cannot reach http://u:{KEY}@h:1/x: refused")),
            "cannot reach http://***@h:1/x: refused"
        );
    }

    #[test]
    fn environment_style_secrets_quoted_from_a_file_are_masked() {
        for (line, shown) in [
            (
                format!("found \"REDIS_PASSWORD={KEY}\")"),
                "found \"REDIS_PASSWORD=***\")",
            ),
            (
                format!("found \"export NATS_TOKEN={KEY}\""),
                "found \"export NATS_TOKEN=***\"",
            ),
            (
                format!("AZURE_STORAGE_ACCOUNT_KEY={KEY}"),
                "AZURE_STORAGE_ACCOUNT_KEY=***",
            ),
            (
                format!("line 1: 'MY_SECRET_VALUE={KEY}'"),
                "line 1: 'MY_SECRET_VALUE=***'",
            ),
        ] {
            assert_eq!(url(&line), shown);
        }
        // Names that are not secrets keep their values: a ledger's run, a shape, a path.
        for plain in [
            "found \"RUN_ID=0123456789abcdef\"",
            "MONKEY=banana",
            "QUEUE_URL=sqlite:/tmp/q.db",
            "--shape burst:500@10s",
        ] {
            assert_eq!(url(plain), plain);
        }
    }

    #[test]
    fn secret_query_and_connection_string_values_are_masked_plain_or_encoded() {
        for s in [
            format!("azure://acct/q?endpoint=http://h/acct&sig={KEY}&AccountKey={KEY}"),
            format!("azure://acct/q?endpoint=http://h/acct%3Fsv%3D1%26sig%3D{KEY}"),
            format!("DefaultEndpointsProtocol=http;AccountName=a;AccountKey={KEY};QueueEndpoint=x"),
            format!("nsq://h:4150/t/c?http=h:4151&token={KEY}"),
        ] {
            let r = url(&s);
            assert!(!r.contains(KEY), "{s} → {r}");
            assert!(r.contains("***"), "{r}");
        }
        assert_eq!(
            url(&format!("x?sig={KEY}&depth=visible")),
            "x?sig=***&depth=visible"
        );
    }

    #[test]
    fn passwords_in_bare_addresses_and_paths_are_masked() {
        for (s, expected) in [
            (
                format!("nsqd TCP address \"user:{KEY}@127.0.0.1:1\": not a host"),
                "nsqd TCP address \"***@127.0.0.1:1\": not a host",
            ),
            (
                format!("address u%3A{KEY}@h:1 refused"),
                "address ***@h:1 refused",
            ),
            (
                format!("the directory u:{KEY}@nohost does not exist"),
                "the directory ***@nohost does not exist",
            ),
            (
                format!("?http=u:{KEY}@h:4151&lookupd=v:{KEY}@h:4161"),
                "?http=***@h:4151&lookupd=***@h:4161",
            ),
        ] {
            assert_eq!(url(&s), expected);
        }
        for s in [
            "git@github.com:o/r",
            "mail me at a@b.c",
            "sqlite:/tmp/x@y/q.db",
        ] {
            assert_eq!(url(s), s);
        }
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for s in [
            "sqlite:/tmp/q.db",
            "nsq://127.0.0.1:4150/t/c?http=127.0.0.1:4151",
            "azure://devstoreaccount1/jobs?endpoint=http://127.0.0.1:10001/devstoreaccount1&encoding=base64",
            // Keys must start a parameter: `monkey=` is not `key=`.
            "http://h/x?monkey=1&signatures=2",
            "ünïcödé://ü@",
        ] {
            let expected = if s.contains('@') {
                "ünïcödé://***@".to_string()
            } else {
                s.to_string()
            };
            assert_eq!(url(s), expected);
        }
        // Forms written for people and load shapes quote `@` with nothing secret before it.
        for s in [
            "expected amqp://[USER[:PASSWORD]@]HOST[:PORT]/QUEUE or redis://[[USER]:PASSWORD@]HOST/S",
            "a term is const:RATE, burst:COUNT@OFFSET or step:RATE@OFFSET,…",
            "--shape const:10+burst:500@5s",
        ] {
            assert_eq!(url(s), s);
        }
        // …but a password beside them still is.
        assert_eq!(
            url("burst:COUNT@OFFSET amqp://u:pw@h/q"),
            "burst:COUNT@OFFSET amqp://***@h/q"
        );
    }
}

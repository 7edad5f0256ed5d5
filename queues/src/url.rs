//! The pieces of URL parsing the backends share: splitting `//AUTHORITY/PATH?QUERY`, `[USER@]HOST[:PORT]`,
//! query pairs and their common errors, the `tls=` flag, refusing credentials, percent escapes and the legacy
//! variables' reading.
//!
//! Each backend's `url.rs` still owns its URL form, its defaults and its error messages: these helpers only
//! cut and check, and those that can fail are told what to call the thing they check, so every message stays
//! the backend's own.

// A build with only some backends leaves some of these unused; they are all used with every backend.
#![cfg_attr(
    not(all(
        feature = "amqp",
        feature = "azure",
        feature = "nats",
        feature = "nsq",
        feature = "redis"
    )),
    allow(dead_code)
)]

use std::str::FromStr;

/// The parts of what follows `SCHEME:` in `SCHEME://AUTHORITY/PATH?QUERY`. `path` is everything after the
/// first `/` (itself excluded), `query` everything after the first `?`; either may be empty.
pub(crate) struct Parts<'a> {
    pub authority: &'a str,
    pub path: &'a str,
    pub query: &'a str,
}

/// Splits what follows `SCHEME:`; without the leading `//` the error is "missing '//': {form}".
pub(crate) fn split<'a>(rest: &'a str, form: &str) -> Result<Parts<'a>, String> {
    let rest = rest
        .strip_prefix("//")
        .ok_or_else(|| format!("missing '//': {form}"))?;
    let (main, query) = split_query(rest);
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    Ok(Parts {
        authority,
        path,
        query,
    })
}

/// Splits `[USER@]HOST…` at its last `@`: the user as written (possibly empty) when there is an `@`, and what
/// follows it. A password there (`USER:PASSWORD@`) is refused with `no_password`, the backend's words for
/// where it goes instead: a URL ends up in logs and process lists.
pub(crate) fn split_user<'a>(
    authority: &'a str,
    no_password: &str,
) -> Result<(Option<&'a str>, &'a str), String> {
    match authority.rsplit_once('@') {
        Some((user, _)) if user.contains(':') => Err(no_password.to_string()),
        Some((user, rest)) => Ok((Some(user), rest)),
        None => Ok((None, authority)),
    }
}

/// Refuses an address with credentials in it (`USER:PASSWORD@HOST`), for a backend whose URL takes none: the
/// error begins with `"{what} address {s:?}: "` and ends with `where_they_go`. (The quoted address is masked
/// by the registry's redaction, like every echoed URL.)
pub(crate) fn no_credentials(s: &str, what: &str, where_they_go: &str) -> Result<(), String> {
    if s.contains('@') {
        return Err(format!(
            "{what} address {s:?}: a queue URL carries no credentials; {where_they_go}"
        ));
    }
    Ok(())
}

/// `(before '?', after '?')`, the query empty when there is no `?`.
pub(crate) fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// The query's `key=value` pairs in order; empty pairs (`a=1&&b=2`) are skipped and a bare `key` has the
/// value `""` (so that `?tls` reads as `tls=`).
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The error for a query parameter the backend does not take; `known` lists those it does.
pub(crate) fn unknown_parameter(key: &str, known: &str) -> String {
    format!("unknown parameter {key:?}: the parameters are {known}")
}

/// `max_msg_size=BYTES`, a number of bytes above 0 that fits the backend's type.
pub(crate) fn max_msg_size<T: FromStr + Default + PartialOrd>(v: &str) -> Result<T, String> {
    v.parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| format!("max_msg_size={v:?} is not a positive number of bytes"))
}

/// A boolean parameter such as `tls=true`: `true`, `1` or nothing is on, `false` or `0` off.
pub(crate) fn flag(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{key}={v:?}: expected true or false")),
    }
}

/// Splits `HOST[:PORT]` at the port's colon; an IPv6 address takes brackets (`[::1]:5672`), which the host
/// keeps. The port is `None` when none is written; it is not checked here.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<&str>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (s, None),
    }
}

/// A port a client can connect to: 1-65535.
pub(crate) fn port(p: &str) -> Result<u16, String> {
    p.parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {p:?} is not a number 1-65535"))
}

/// A host name or an IP address, IPv6 in brackets or not: letters, digits, `.`, `-`, `_`, `[`, `]` and `:`.
/// (No more than that: it is the set in which no credential, path or query can hide.)
pub(crate) fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        })
}

/// `HOST[:PORT]` checked, with `default_port` when none is written. The errors begin with
/// `"{what} address {s:?}: "`.
pub(crate) fn host_port<'a>(
    s: &'a str,
    default_port: u16,
    what: &str,
) -> Result<(&'a str, u16), String> {
    let (host, port) = match split_host_port(s) {
        (h, Some(p)) => (
            h,
            port(p).map_err(|e| format!("{what} address {s:?}: {e}"))?,
        ),
        (h, None) => (h, default_port),
    };
    if !is_host(host) {
        return Err(format!(
            "{what} address {s:?}: not a host name or IP address"
        ));
    }
    Ok((host, port))
}

/// Decodes `%XX` escapes; the error names the bad escape.
pub(crate) fn percent_decode(s: &str, what: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{what} {s:?}: '%' must start a %XX escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{what} {s:?}: the escapes are not UTF-8"))
}

/// Percent-encodes what cannot stand in a path segment (a management API's path, logs).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `get` for the functions that read variables: `pairs` instead of the environment.
    pub(crate) fn vars(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn split_finds_authority_path_and_query() {
        let p = split("//h:1/a/b?x=1&y", "F").unwrap();
        assert_eq!((p.authority, p.path, p.query), ("h:1", "a/b", "x=1&y"));
        let p = split("//h", "F").unwrap();
        assert_eq!((p.authority, p.path, p.query), ("h", "", ""));
        assert_eq!(split("h/a", "F").err().as_deref(), Some("missing '//': F"));
        let pairs: Vec<_> = query_pairs("a=1&&b&c=x=y").collect();
        assert_eq!(pairs, vec![("a", "1"), ("b", ""), ("c", "x=y")]);
    }

    #[test]
    fn host_port_takes_defaults_brackets_and_refuses_the_rest() {
        assert_eq!(host_port("h", 7, "x"), Ok(("h", 7)));
        assert_eq!(host_port("[::1]:9", 7, "x"), Ok(("[::1]", 9)));
        let e = host_port("h:0", 7, "broker").unwrap_err();
        assert_eq!(
            e,
            "broker address \"h:0\": port \"0\" is not a number 1-65535"
        );
        let e = host_port("h!:1", 7, "x").unwrap_err();
        assert!(e.ends_with("not a host name or IP address"), "{e}");
        assert!(!is_host("u@h") && !is_host(""));
    }

    #[test]
    fn users_passwords_and_credentials_are_told_apart() {
        assert_eq!(split_user("u@h:1", "no"), Ok((Some("u"), "h:1")));
        assert_eq!(split_user("@h", "no"), Ok((Some(""), "h")));
        assert_eq!(split_user("h", "no"), Ok((None, "h")));
        assert_eq!(split_user("u:secret@h", "no").unwrap_err(), "no");
        assert_eq!(no_credentials("h:1", "server", "elsewhere"), Ok(()));
        let e = no_credentials("u:p@h", "server", "give them elsewhere").unwrap_err();
        assert!(
            e.starts_with("server address ") && e.ends_with("; give them elsewhere"),
            "{e}"
        );
    }

    #[test]
    fn common_parameters_and_their_errors() {
        assert_eq!(max_msg_size::<u32>("10"), Ok(10));
        for bad in ["0", "-1", "big", "99999999999"] {
            let e = max_msg_size::<u32>(bad).unwrap_err();
            assert!(e.contains("is not a positive number of bytes"), "{e}");
        }
        assert_eq!(port("1"), Ok(1));
        assert_eq!(port("0").unwrap_err(), "port \"0\" is not a number 1-65535");
        assert_eq!(
            unknown_parameter("x", "a and b"),
            "unknown parameter \"x\": the parameters are a and b"
        );
    }

    #[test]
    fn escapes_round_trip_and_bad_ones_are_named() {
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
        assert_eq!(percent_decode("a%2Fb%20c", "q").as_deref(), Ok("a/b c"));
        let e = percent_decode("q%zz", "queue name").unwrap_err();
        assert!(e.contains("%XX escape"), "{e}");
        assert_eq!(flag("tls", ""), Ok(true));
        assert!(flag("tls", "maybe").is_err());
        let get = |k: &str| (k == "A").then(|| "  v ".to_string());
        assert_eq!(crate::registry::legacy_var(&get, "A").as_deref(), Some("v"));
        assert_eq!(crate::registry::legacy_var(&get, "B"), None);
    }
}

//! The `azure://` queue URL and the Azure connection string: parsed and checked before anything is opened,
//! and never holding a secret (keys and SAS tokens come from the environment, see [`super::credential`]),
//! so that a URL can be logged and shown in errors as it is.
//!
//! ```text
//! azure://ACCOUNT/QUEUE[?endpoint=URL][&encoding=raw|base64][&depth=approximate|visible]
//!                      [&auth=auto|key|sas|entra][&api-version=YYYY-MM-DD]
//! ```
//!
//! `endpoint` is the account's queue endpoint when it is not `https://ACCOUNT.queue.core.windows.net`: Azurite
//! (`http://127.0.0.1:10001/devstoreaccount1`) or a sovereign cloud (`https://ACCOUNT.queue.core.chinacloudapi.cn`).

use std::fmt;

/// The storage API version sent by default: the newest that both Azure and Azurite 3.35.0 accept (the crate's
/// own default, 2026-04-06, is newer than Azurite knows).
pub const DEFAULT_API_VERSION: &str = "2025-11-05";

/// Azure's limit on one message, after encoding.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The development account every Azurite accepts, and its documented (public) key.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";

/// How message bodies are written on the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// The text as is, as the official Rust, Python v12 and .NET v12 SDKs send it.
    #[default]
    Raw,
    /// Base64, as Azure Functions and WebJobs expect by default.
    Base64,
}

/// What [`crate::Queue::depth`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DepthMode {
    /// The queue's approximate message count, which includes invisible (leased) messages: what the original
    /// engine and KEDA read by default. One cheap metadata call.
    #[default]
    Approximate,
    /// Visible messages only, by peeking (KEDA's `visibleonly`): exact up to 32, the approximate count above.
    Visible,
}

/// Which credential to use; `Auto` picks from the environment (see [`super::credential::select`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    #[default]
    Auto,
    Key,
    Sas,
    Entra,
}

/// A parsed `azure://` URL. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureUrl {
    pub account: String,
    pub queue: String,
    /// The account's queue endpoint, when given in the URL (else the connection string's, else Azure's).
    pub endpoint: Option<String>,
    pub encoding: Encoding,
    pub depth: DepthMode,
    pub auth: AuthMode,
    pub api_version: String,
    /// Set by [`Target::with_expiry`](crate::Target::with_expiry) (never by the URL): messages sent live this
    /// long.
    pub expiry: Option<std::time::Duration>,
}

impl AzureUrl {
    /// Parses what follows `azure:`. Errors are phrased for a person and name the rule that was broken.
    pub fn parse(rest: &str) -> Result<AzureUrl, String> {
        let rest = rest.strip_prefix("//").ok_or(
            "expected azure://ACCOUNT/QUEUE (for example azure://devstoreaccount1/jobs?endpoint=http://127.0.0.1:10001/devstoreaccount1)",
        )?;
        let (path, query) = crate::url::split_query(rest);
        let (account, queue) = path
            .split_once('/')
            .ok_or("expected azure://ACCOUNT/QUEUE: the queue name is missing")?;
        check_account(account)?;
        let queue = queue.strip_suffix('/').unwrap_or(queue);
        check_queue_name(queue)?;
        let mut url = AzureUrl {
            account: account.to_string(),
            queue: queue.to_string(),
            endpoint: None,
            encoding: Encoding::Raw,
            depth: DepthMode::Approximate,
            auth: AuthMode::Auto,
            api_version: DEFAULT_API_VERSION.to_string(),
            expiry: None,
        };
        for (k, v) in crate::url::query_pairs(query) {
            match k {
                "endpoint" => {
                    let e = v.trim_end_matches('/');
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(format!(
                            "endpoint {e:?} must be an http:// or https:// URL (for Azurite: http://127.0.0.1:10001/devstoreaccount1)"
                        ));
                    }
                    if e.split("://").nth(1).is_some_and(|rest| {
                        rest.split(['/', '?', '#'])
                            .next()
                            .is_some_and(|host| host.contains('@'))
                    }) {
                        return Err("endpoint must not carry a user name or password: Azure Storage does not use them; credentials go in AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING".into());
                    }
                    if e.contains('?') {
                        return Err("endpoint must not carry a query: pass a SAS token in AZURE_STORAGE_SAS_TOKEN, never in the URL".into());
                    }
                    url.endpoint = Some(e.to_string());
                }
                "encoding" => {
                    url.encoding = match v {
                        "raw" => Encoding::Raw,
                        "base64" => Encoding::Base64,
                        _ => return Err(format!("encoding={v:?}: expected raw or base64")),
                    }
                }
                "depth" => {
                    url.depth = match v {
                        "approximate" => DepthMode::Approximate,
                        "visible" => DepthMode::Visible,
                        _ => return Err(format!("depth={v:?}: expected approximate or visible")),
                    }
                }
                "auth" => {
                    url.auth = match v {
                        "auto" => AuthMode::Auto,
                        "key" => AuthMode::Key,
                        "sas" => AuthMode::Sas,
                        "entra" => AuthMode::Entra,
                        _ => return Err(format!("auth={v:?}: expected auto, key, sas or entra")),
                    }
                }
                "api-version" => {
                    let ok = v.len() == 10
                        && v.bytes().enumerate().all(|(i, b)| {
                            if i == 4 || i == 7 {
                                b == b'-'
                            } else {
                                b.is_ascii_digit()
                            }
                        });
                    if !ok {
                        return Err(format!(
                            "api-version={v:?}: expected a date such as {DEFAULT_API_VERSION}"
                        ));
                    }
                    url.api_version = v.to_string();
                }
                "sig" | "sv" | "se" | "sp" | "key" | "sas" => {
                    return Err(format!(
                        "{k}= in the URL: secrets go in AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING, never in the queue URL (it is logged)"
                    ));
                }
                other => {
                    return Err(format!(
                        "unknown option {other:?}: the options are endpoint, encoding, depth, auth and api-version"
                    ));
                }
            }
        }
        Ok(url)
    }

    /// The queue endpoint to use, given the connection string's (if any).
    pub fn endpoint_or(&self, from_connection_string: Option<&str>) -> String {
        self.endpoint
            .clone()
            .or_else(|| from_connection_string.map(str::to_string))
            .unwrap_or_else(|| format!("https://{}.queue.core.windows.net", self.account))
    }
}

impl fmt::Display for AzureUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "azure://{}/{}", self.account, self.queue)
    }
}

/// Azure's account name rule: 3-24 lowercase letters and digits.
fn check_account(account: &str) -> Result<(), String> {
    let ok = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "storage account name {account:?} is not valid: 3 to 24 lowercase letters and digits"
        ))
    }
}

/// Azure's queue name rule: 3-63 characters, lowercase letters, digits and single hyphens, starting and
/// ending with a letter or digit.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = (3..=63).contains(&name.len())
        && chars_ok
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "queue name {name:?} breaks Azure's rules: 3 to 63 characters, lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
        ))
    }
}

/// What an Azure Storage connection string says. The account key and SAS stay inside [`Secret`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    pub account: String,
    /// The queue endpoint, from `QueueEndpoint`, or built from the protocol and suffix.
    pub queue_endpoint: String,
    pub key: Option<super::credential::Secret>,
    pub sas: Option<super::credential::Secret>,
}

impl ConnectionString {
    /// Parses `Key=Value;…` as the Azure SDKs do, including `UseDevelopmentStorage=true` (Azurite's
    /// well-known account and ports). Errors never quote the string, which holds a secret.
    pub fn parse(s: &str) -> Result<ConnectionString, String> {
        let mut fields = std::collections::HashMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                "AZURE_STORAGE_CONNECTION_STRING is malformed: expected Key=Value pairs separated by ';' (e.g. AccountName=…;AccountKey=…)".to_string()
            })?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if fields
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(ConnectionString {
                account: DEV_ACCOUNT.into(),
                queue_endpoint: DEV_ENDPOINT.into(),
                key: Some(super::credential::Secret::new(DEV_ACCOUNT_KEY)),
                sas: None,
            });
        }
        let account = fields.get("accountname").cloned();
        let queue_endpoint = match (fields.get("queueendpoint"), &account) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(a)) => {
                let proto = fields
                    .get("defaultendpointsprotocol")
                    .map_or("https", String::as_str);
                let suffix = fields
                    .get("endpointsuffix")
                    .map_or("core.windows.net", String::as_str);
                format!("{proto}://{a}.queue.{suffix}")
            }
            (None, None) => {
                return Err("AZURE_STORAGE_CONNECTION_STRING is malformed: it has neither AccountName nor QueueEndpoint".into());
            }
        };
        let account = match account {
            Some(a) => a,
            // A SAS-only string names the endpoint; the account is its first host label (or, for Azurite's
            // path-style URLs, the first path segment).
            None => account_from_endpoint(&queue_endpoint).ok_or(
                "AZURE_STORAGE_CONNECTION_STRING is malformed: cannot tell the account from QueueEndpoint; add AccountName",
            )?,
        };
        let key = fields
            .get("accountkey")
            .map(|k| super::credential::Secret::new(k.clone()));
        let sas = fields
            .get("sharedaccesssignature")
            .map(|k| super::credential::Secret::new(k.trim_start_matches('?').to_string()));
        if key.is_none() && sas.is_none() {
            return Err(
                "AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor SharedAccessSignature"
                    .into(),
            );
        }
        if let Some(k) = &key
            && azure_core::base64::decode(k.expose()).is_err()
        {
            return Err("AccountKey in AZURE_STORAGE_CONNECTION_STRING is not base64".into());
        }
        Ok(ConnectionString {
            account,
            queue_endpoint,
            key,
            sas,
        })
    }
}

fn account_from_endpoint(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://")?.1;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next()?;
    let first = if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        path.split('/').next()?
    } else {
        host.split('.').next()?
    };
    (!first.is_empty()).then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_options() {
        let u = AzureUrl::parse("//acct1/jobs").unwrap();
        assert_eq!((u.account.as_str(), u.queue.as_str()), ("acct1", "jobs"));
        assert_eq!(u.endpoint_or(None), "https://acct1.queue.core.windows.net");
        assert_eq!(u.api_version, DEFAULT_API_VERSION);
        let u = AzureUrl::parse(
            "//devstoreaccount1/q-1?endpoint=http://127.0.0.1:9/devstoreaccount1/&encoding=base64&depth=visible&auth=key&api-version=2021-12-02",
        )
        .unwrap();
        assert_eq!(
            u.endpoint.as_deref(),
            Some("http://127.0.0.1:9/devstoreaccount1")
        );
        assert_eq!(u.encoding, Encoding::Base64);
        assert_eq!(u.depth, DepthMode::Visible);
        assert_eq!(u.auth, AuthMode::Key);
        assert_eq!(u.api_version, "2021-12-02");
    }

    #[test]
    fn bad_urls_say_what_rule_they_break() {
        for (url, needle) in [
            ("acct1/jobs", "expected azure://ACCOUNT/QUEUE"),
            ("//acct1", "queue name is missing"),
            ("//acct1/Jobs", "breaks Azure's rules"),
            ("//acct1/ab", "breaks Azure's rules"),
            ("//acct1/a--b", "breaks Azure's rules"),
            ("//acct1/-ab", "breaks Azure's rules"),
            (
                &format!("//acct1/{}", "a".repeat(64)),
                "breaks Azure's rules",
            ),
            ("//Acct/jobs", "account name"),
            ("//acct1/jobs?encoding=hex", "expected raw or base64"),
            ("//acct1/jobs?sig=abc", "never in the queue URL"),
            ("//acct1/jobs?endpoint=127.0.0.1", "http:// or https://"),
            ("//acct1/jobs?api-version=latest", "expected a date"),
            ("//acct1/jobs?color=red", "unknown option"),
        ] {
            let e = AzureUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
        assert!(check_queue_name(&"a".repeat(63)).is_ok());
        assert!(check_queue_name("a-1").is_ok());
    }

    #[test]
    fn connection_strings_parse_and_errors_hide_the_key() {
        let c = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(c.account, DEV_ACCOUNT);
        assert_eq!(c.queue_endpoint, DEV_ENDPOINT);
        assert!(c.key.is_some());

        let c = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=c2VjcmV0;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(
            c.queue_endpoint,
            "https://acct1.queue.core.chinacloudapi.cn"
        );
        assert!(
            !format!("{c:?}").contains("c2VjcmV0"),
            "Debug redacts the key"
        );

        let c = ConnectionString::parse(
            "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;SharedAccessSignature=?sv=1&sig=x",
        )
        .unwrap();
        assert_eq!(c.account, "devstoreaccount1");
        assert_eq!(c.sas.as_ref().unwrap().expose(), "sv=1&sig=x");

        for (s, needle) in [
            ("AccountName=a;AccountKey", "malformed"),
            (
                "AccountKey=c2VjcmV0",
                "neither AccountName nor QueueEndpoint",
            ),
            (
                "AccountName=acct1",
                "neither AccountKey nor SharedAccessSignature",
            ),
            ("AccountName=acct1;AccountKey=not base64!", "not base64"),
        ] {
            let e = ConnectionString::parse(s).unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
            assert!(!e.contains("c2VjcmV0") && !e.contains("base64!"), "{e}");
        }
    }
}

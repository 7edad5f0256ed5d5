//! The flags both binaries share (where Marathon is and how to reach it) and their validation. Everything
//! is checked here, before the first request, so a bad input never leaves a partial install.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use workload::cli::parse_duration;

use super::errors::UsageError;
use super::secret::Secret;

/// Where Marathon is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Marathon's base URL, e.g. http://marathon.mesos:8080 or, through the DC/OS admin router,
    /// https://leader.mesos/marathon.
    #[arg(
        long,
        env = "MSS_MARATHON_API",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub marathon_url: Option<String>,

    /// DC/OS authentication token, sent as "Authorization: token=…". Prefer DCOS_TOKEN or --token-file:
    /// command lines are visible to other users.
    #[arg(long, env = "DCOS_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<Secret>,

    /// Read the DC/OS token from FILE (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// User for HTTP Basic authentication (open-source Marathon); the password comes from MARATHON_PASSWORD
    /// or --password-file.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Read the Basic-authentication password from FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// The Basic-authentication password (set it in the environment; there is no flag, so it never shows in
    /// a process list).
    #[arg(skip)]
    pub password_env: Option<Secret>,

    /// PEM bundle of the certificate authorities to trust for https (DC/OS: the cluster's dcos-ca.crt), in
    /// addition to the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// How long to wait for a TCP (and TLS) connection to Marathon.
    #[arg(long, default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// How long to wait for any one answer from Marathon.
    #[arg(long, default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub request_timeout: Duration,
}

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// DC/OS: `Authorization: token=<JWT>`.
    Token(Secret),
    /// Open-source Marathon with `--http_credentials`.
    Basic {
        user: String,
        password: Secret,
    },
}

/// A validated connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The base URL without a trailing slash; paths such as `/v2/groups` are appended.
    pub url: String,
    pub auth: Auth,
    /// The CA bundle's bytes (read now, parsed when the client is built).
    pub ca_bundle: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// Reads a secret from a file, trimmed; `flag` names the option in errors.
fn read_secret_file(path: &PathBuf, flag: &str) -> Result<Secret, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError::new(format!("{flag} {}: cannot read it ({e})", path.display())))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(UsageError::new(format!(
            "{flag} {}: the file is empty",
            path.display()
        )));
    }
    Ok(Secret::new(value))
}

/// Checks a Marathon base URL: http or https, no credentials, no query; returns it without a trailing `/`.
pub fn validate_url(raw: &str) -> Result<String, UsageError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
        UsageError::new(format!(
            "--marathon-url {raw:?} is not a URL ({e}): expected e.g. http://marathon.mesos:8080 or https://leader.mesos/marathon"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UsageError::new(format!(
            "--marathon-url {raw:?}: the scheme must be http or https"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UsageError::new(
            "--marathon-url must not hold credentials: pass the user with --user and the password in MARATHON_PASSWORD or --password-file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UsageError::new(format!(
            "--marathon-url {raw:?}: give the base URL only, without ?query or #fragment"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

impl ConnectionArgs {
    /// The password from MARATHON_PASSWORD, read here rather than by clap so that no flag exists for it.
    pub fn with_env_password(mut self) -> Self {
        self.password_env = std::env::var("MARATHON_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        self
    }

    /// Validates everything and reads the files. `required` is false for `--dry-run`, which contacts nothing.
    pub fn validate(&self, required: bool) -> Result<Option<Connection>, UsageError> {
        let url = match &self.marathon_url {
            Some(u) if !u.trim().is_empty() => validate_url(u)?,
            _ if required => {
                return Err(UsageError::new(
                    "no Marathon given: pass --marathon-url URL or set MSS_MARATHON_API (e.g. http://marathon.mesos:8080)",
                ));
            }
            _ => String::new(),
        };
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(UsageError::new(
                    "give the DC/OS token once: --token/DCOS_TOKEN or --token-file, not both",
                ));
            }
            (Some(t), None) if t.is_empty() => {
                return Err(UsageError::new(
                    "the DC/OS token (--token or DCOS_TOKEN) is empty",
                ));
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(f)) => Some(read_secret_file(f, "--token-file")?),
            (None, None) => None,
        };
        let password = match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(UsageError::new(
                    "give the password once: MARATHON_PASSWORD or --password-file, not both",
                ));
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(f)) => Some(read_secret_file(f, "--password-file")?),
            (None, None) => None,
        };
        let auth = match (token, &self.user, password) {
            (Some(_), Some(_), _) => {
                return Err(UsageError::new(
                    "choose one authentication: a DC/OS token (--token, DCOS_TOKEN, --token-file) or --user with a password, not both",
                ));
            }
            (Some(t), None, _) => Auth::Token(t),
            (None, Some(user), Some(password)) => {
                if user.is_empty() || user.contains(':') {
                    return Err(UsageError::new(format!(
                        "--user {user:?}: a user name must be non-empty and hold no ':'"
                    )));
                }
                Auth::Basic {
                    user: user.clone(),
                    password,
                }
            }
            (None, Some(_), None) => {
                return Err(UsageError::new(
                    "--user needs a password: set MARATHON_PASSWORD or pass --password-file FILE",
                ));
            }
            (None, None, Some(_)) => {
                return Err(UsageError::new(
                    "a password was given (MARATHON_PASSWORD or --password-file) but no --user",
                ));
            }
            (None, None, None) => Auth::None,
        };
        let ca_bundle = match &self.ca_cert {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                UsageError::new(format!("--ca-cert {}: cannot read it ({e})", p.display()))
            })?),
            None => None,
        };
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(UsageError::new(
                "--connect-timeout and --request-timeout must be more than 0",
            ));
        }
        if !required && url.is_empty() {
            return Ok(None);
        }
        Ok(Some(Connection {
            url,
            auth,
            ca_bundle,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        }))
    }
}

/// Checks a Marathon group or app id and returns it absolute, without a trailing `/`: every segment holds
/// lowercase letters, digits, `-` and `.`, and starts and ends with a letter or digit (Marathon's rule).
pub fn validate_group(raw: &str) -> Result<String, UsageError> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Err(UsageError::new(
            "--group must name a group below the root, e.g. /microscaling-demo",
        ));
    }
    for seg in trimmed.split('/') {
        let ok = !seg.is_empty()
            && seg.split('.').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !p.starts_with('-')
                    && !p.ends_with('-')
            });
        if !ok {
            return Err(UsageError::new(format!(
                "--group {raw:?}: each part must hold only lowercase letters, digits, '-' and '.', and start and end with a letter or digit (Marathon's rule)"
            )));
        }
    }
    Ok(format!("/{trimmed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(validate_url("http://m:8080/").unwrap(), "http://m:8080");
        assert_eq!(
            validate_url("https://leader.mesos/marathon/").unwrap(),
            "https://leader.mesos/marathon"
        );
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("m:8080").is_err());
        let e = validate_url("http://u:secret@m:8080")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn groups_follow_marathon_ids() {
        assert_eq!(
            validate_group("microscaling-demo").unwrap(),
            "/microscaling-demo"
        );
        assert_eq!(validate_group("/a/b.c/").unwrap(), "/a/b.c");
        for bad in ["/", "/Demo", "/a_b", "/-a", "/a//b"] {
            assert!(validate_group(bad).is_err(), "{bad}");
        }
    }
}

//! The registry of backends and the dispatch from a URL to one: [`QueueUrl::parse`] picks the backend by the
//! URL's scheme and lets it parse the rest, once, into a typed value; [`QueueUrl::open`] opens it.
//!
//! Nothing here knows any backend: each one implements [`Backend`] (its scheme, URL forms, parsing, legacy
//! variables) and [`Target`] (opening what it parsed), and is listed once in [`super::REGISTRY`]. A backend
//! left out of the build by its cargo feature is still listed there, so that asking for it says how to get
//! it instead of "unknown scheme".

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::keda::KedaScaler;
use super::{ErrorKind, Queue, QueueError};

/// What a backend tells the registry about itself.
pub trait Backend: Sync {
    /// The URL scheme (`sqlite` in `sqlite:PATH`), which is also the `backend` metric label and the cargo
    /// feature that builds it in.
    fn scheme(&self) -> &'static str;

    /// The URL form, for help and errors: `sqlite:PATH`.
    fn form(&self) -> &'static str;

    /// A short line for `--help`: what this queue is.
    fn summary(&self) -> &'static str;

    /// An example URL that works as is on one machine, where there is one (the embedded queue).
    fn example(&self) -> Option<&'static str> {
        None
    }

    /// The URL of a queue kept in `dir`, with no server, where the backend can do that (the embedded queue):
    /// what the demo runs on when no `--queue` is given.
    fn local_url(&self, _dir: &std::path::Path) -> Option<String> {
        None
    }

    /// Parses what follows `SCHEME:`. The error is the reason, phrased for a person; the caller adds the URL
    /// (masked).
    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String>;

    /// A URL built from the 2016 demo's environment variables (read through `get`), when they are set.
    fn url_from_legacy_env(&self, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let _ = get;
        None
    }

    /// How KEDA's scaler for this backend reads it, where KEDA has one (the judge's KEDA policy reads any
    /// queue this way, by the backend's scheme).
    fn keda(&self) -> Option<&'static KedaScaler> {
        None
    }

    /// Log targets of the backend's client libraries to hold at `warn` (`target=warn` directives), for those
    /// whose `info` level is noisy or can print what the user put in a URL.
    fn quiet_log_targets(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Whether opening may create the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it when missing, so that producer, consumer and engine can start in any order.
    Create,
    /// Only open an existing queue: a watcher must not create the queue it watches (a missing one is a
    /// mistyped name). Backends that cannot tell, or whose queues always exist, treat it as `Create`.
    Existing,
}

/// A parsed queue URL as its backend understands it, ready to open.
#[async_trait]
pub trait Target: AsAny + fmt::Debug + Send + Sync {
    /// Opens the queue.
    async fn open(&self, mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError>;

    /// A sibling queue on the same backend, named from this one with `suffix` (queue `work`, suffix
    /// `telemetry`: `work-telemetry`), and its name for logs (no secret in it). Each backend owns its URL
    /// form, so each names its siblings: a table's file, a topic, a queue, a stream. The sibling must never be
    /// counted in this queue's depth: that is what a scaling engine reads (each backend has a test of it).
    /// The error is the reason, phrased for a person (a name that would break the backend's rules).
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String>;

    /// This queue with messages that expire `after` they were published, where the backend can expire them;
    /// `None` where it cannot (the default). Heartbeats use it: a beat is useless a few intervals later, and
    /// where nothing reads them (no `scorecard watch`) they would otherwise pile up for as long as the
    /// consumers run.
    fn with_expiry(&self, _after: Duration) -> Option<Box<dyn Target>> {
        None
    }
}

/// `&dyn Target` as `&dyn Any`, for [`QueueUrl::settings`] (trait upcasting needs a newer Rust than ours).
pub trait AsAny {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One line of the registry: a scheme, and its backend when this build has it.
pub struct Registration {
    /// The scheme, which is also the cargo feature of the backend.
    pub scheme: &'static str,
    /// `None` when the backend's feature is off in this build.
    pub backend: Option<&'static dyn Backend>,
    /// The 2016 demo's variables that select this backend (any one set), kept on the registration line so
    /// that a build without the backend can still say why they are ignored.
    pub legacy_vars: &'static [&'static str],
}

/// A registry line: `register!("nsq", nsq)` names the scheme (= cargo feature) and the module whose
/// `BACKEND` implements it; without the feature the line stays, with no backend.
macro_rules! register {
    ($scheme:tt, $module:ident) => {
        $crate::registry::register!($scheme, $module, [])
    };
    ($scheme:tt, $module:ident, [$($var:literal),*]) => {
        $crate::registry::Registration {
            scheme: $scheme,
            #[cfg(feature = $scheme)]
            backend: Some(&$module::BACKEND),
            #[cfg(not(feature = $scheme))]
            backend: None,
            legacy_vars: &[$($var),*],
        }
    };
}
pub(crate) use register;

/// The backends this build has, in registry order.
pub fn backends() -> impl Iterator<Item = &'static dyn Backend> {
    super::REGISTRY.iter().filter_map(|r| r.backend)
}

/// The backends of this build that KEDA has a scaler for, with the scaler, in registry order.
pub fn keda_scalers() -> impl Iterator<Item = (&'static str, &'static KedaScaler)> {
    backends().filter_map(|b| b.keda().map(|k| (b.scheme(), k)))
}

/// The schemes of this build, for messages: "sqlite, nsq and azure".
pub fn schemes() -> String {
    let names: Vec<&str> = backends().map(|b| b.scheme()).collect();
    match names.split_last() {
        None => "none".into(),
        Some((last, [])) => (*last).into(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Every form this build knows, for messages: "sqlite:PATH, nsq://… or azure://…".
pub fn forms() -> String {
    let forms: Vec<&str> = backends().map(|b| b.form()).collect();
    match forms.split_last() {
        None => "(none: this build has no queue backend)".into(),
        Some((last, [])) => (*last).into(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// An example `--queue` value for messages: the first backend's that has one, else the first form.
pub fn example() -> &'static str {
    backends()
        .find_map(|b| b.example())
        .or_else(|| backends().next().map(|b| b.form()))
        .unwrap_or("SCHEME:…")
}

/// The URL of a queue in `dir` that needs no server: the first backend of this build that offers one.
pub fn local_url(dir: &std::path::Path) -> Option<String> {
    backends().find_map(|b| b.local_url(dir))
}

/// The `--queue` help of every role, short (`-h`): every form this build knows.
pub fn help_short() -> String {
    format!("Queue to use, as a URL: {}", forms())
}

/// The `--queue` help of every role, long (`--help`): a line per backend, and the ones left out.
pub fn help_long() -> String {
    let mut s = String::from("Queue to use, as a URL, one of:\n");
    for b in backends() {
        s.push_str(&format!("  {}: {}\n", b.form(), b.summary()));
    }
    let missing: Vec<&str> = super::REGISTRY
        .iter()
        .filter(|r| r.backend.is_none())
        .map(|r| r.scheme)
        .collect();
    if !missing.is_empty() {
        s.push_str(&format!(
            "Not in this build: {} (rebuild with `--features {}`).\n",
            missing.join(", "),
            missing.join(",")
        ));
    }
    s.push_str("Without it, the 2016 demo's variables are read (see the README).");
    s
}

/// The URL from the 2016 demo's variables, from the first backend (in registry order) whose variables are set.
/// Every backend's [`Backend::quiet_log_targets`], for `workload::cli::init_logging`.
pub fn quiet_log_targets() -> Vec<&'static str> {
    backends()
        .flat_map(|b| b.quiet_log_targets().iter().copied())
        .collect()
}

pub fn url_from_legacy_env(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    backends().find_map(|b| b.url_from_legacy_env(get))
}

/// A legacy variable's value, trimmed; `None` when unset or blank (the 2016 demo's scripts exported empty
/// variables for what they did not use). `get` reads a variable (the environment, or a test's map).
pub(crate) fn legacy_var(get: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// When no backend of this build took the 2016 variables: the first set variable of a backend this build
/// left out, with its scheme, so that the error says why the variables were ignored.
pub fn legacy_env_of_missing(
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<(&'static str, &'static str)> {
    missing_legacy_in(super::REGISTRY, get)
}

fn missing_legacy_in(
    registry: &[Registration],
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<(&'static str, &'static str)> {
    registry
        .iter()
        .filter(|r| r.backend.is_none())
        .find_map(|r| {
            r.legacy_vars
                .iter()
                .find(|v| legacy_var(get, v).is_some())
                .map(|v| (*v, r.scheme))
        })
}

/// A parsed queue URL: its backend's scheme and typed settings. Parsed once (by the config), then opened.
///
/// Shown (`Display`) with its secrets masked; the text as given is never kept, so it cannot leak.
#[derive(Clone)]
pub struct QueueUrl {
    scheme: &'static str,
    shown: String,
    target: Arc<dyn Target>,
}

impl QueueUrl {
    /// Parses a queue URL without touching the queue, so that binaries can reject a bad one as a usage error
    /// before they start.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] for a missing, unknown or compiled-out scheme, or a URL its backend refuses.
    pub fn parse(url: &str) -> Result<QueueUrl, QueueError> {
        parse_in(super::REGISTRY, url)
    }

    /// The backend's scheme, also its `backend` metric label (never the URL, which can hold secrets).
    pub fn backend(&self) -> &'static str {
        self.scheme
    }

    /// The backend's typed settings, when they are a `T` (for tests and tools that check a URL's parts).
    pub fn settings<T: Any>(&self) -> Option<&T> {
        // Through `dyn Target`'s vtable: the `Arc` itself is `Any` too, and would always fail the downcast.
        AsAny::as_any(&*self.target).downcast_ref::<T>()
    }

    /// Opens the queue, creating it when missing.
    ///
    /// # Errors
    /// The backend's: the kind says whether it is worth retrying.
    pub async fn open(&self) -> Result<Arc<dyn Queue>, QueueError> {
        self.target.open(OpenMode::Create).await
    }

    /// The sibling queue named from this one with `suffix` (see [`Target::sibling`]): where the run's
    /// telemetry travels, beside the work queue and never in its depth.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] when the derived name breaks the backend's rules (too long, say).
    pub fn sibling(&self, suffix: &str) -> Result<QueueUrl, QueueError> {
        let (target, name) = self.target.sibling(suffix).map_err(|reason| {
            QueueError::new(
                ErrorKind::Invalid,
                format!("{}: no {suffix} sibling: {reason}", self.shown),
            )
        })?;
        Ok(QueueUrl {
            scheme: self.scheme,
            shown: format!("{} ({suffix}: {name})", self.shown),
            target: Arc::from(target),
        })
    }

    /// This queue with messages that expire `after` they were published ([`Target::with_expiry`]); `None`
    /// where the backend cannot expire messages.
    pub fn expiring(&self, after: Duration) -> Option<QueueUrl> {
        let target = self.target.with_expiry(after)?;
        Some(QueueUrl {
            scheme: self.scheme,
            shown: self.shown.clone(),
            target: Arc::from(target),
        })
    }

    /// Opens the queue only if it exists, where the backend can tell ([`OpenMode::Existing`]).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it does not exist; the backend's otherwise.
    pub async fn open_existing(&self) -> Result<Arc<dyn Queue>, QueueError> {
        self.target.open(OpenMode::Existing).await
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueUrl")
            .field("url", &self.shown)
            .field("target", &self.target)
            .finish()
    }
}

impl std::str::FromStr for QueueUrl {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<QueueUrl, QueueError> {
        QueueUrl::parse(s)
    }
}

/// [`QueueUrl::parse`] against a given registry (the tests pass one with a backend left out).
fn parse_in(registry: &[Registration], url: &str) -> Result<QueueUrl, QueueError> {
    let invalid = |reason: &str| QueueError::invalid_url(url, reason);
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(invalid(&format!(
            "no scheme: expected {} (for example {})",
            forms(),
            example()
        )));
    };
    let Some(registration) = registry.iter().find(|r| r.scheme == scheme) else {
        // `rediss://`, `amqps://`: the TLS spelling of other tools. Ours is `?tls=true` on the plain scheme.
        if let Some(plain) = scheme.strip_suffix('s')
            && registry.iter().any(|r| r.scheme == plain)
        {
            return Err(invalid(&format!(
                "unknown scheme {scheme:?}: for TLS give {plain}://…?tls=true (the schemes this build knows are {})",
                schemes()
            )));
        }
        return Err(invalid(&format!(
            "unknown scheme {scheme:?}: the schemes this build knows are {}",
            schemes()
        )));
    };
    let Some(backend) = registration.backend else {
        return Err(QueueError::new(
            ErrorKind::Invalid,
            format!(
                "{scheme}:// is not available in this build: rebuild with `--features {scheme}`"
            ),
        ));
    };
    let target = backend.parse(rest).map_err(|r| invalid(&r))?;
    Ok(QueueUrl {
        scheme: backend.scheme(),
        shown: workload::redact::url(url),
        target: Arc::from(target),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sqlite")]
    #[test]
    fn the_local_queue_is_the_embedded_one_and_parses_back() {
        let dir = std::path::Path::new("/tmp/demo-x");
        let url = local_url(dir).expect("the embedded backend offers one");
        assert_eq!(url, "sqlite:/tmp/demo-x/queue.db");
        assert_eq!(QueueUrl::parse(&url).expect("parses").backend(), "sqlite");
    }

    #[test]
    fn every_backend_is_registered_under_its_own_scheme() {
        for r in super::super::REGISTRY {
            if let Some(b) = r.backend {
                assert_eq!(b.scheme(), r.scheme, "the registry line names the scheme");
                assert!(
                    b.form().starts_with(&format!("{}:", r.scheme)),
                    "{}",
                    b.form()
                );
            }
        }
        let schemes = schemes();
        let help = format!("{}\n{}", help_short(), help_long());
        for b in backends() {
            assert!(schemes.contains(b.scheme()), "{schemes}");
            assert!(help.contains(b.form()), "{help}");
        }
    }

    #[test]
    fn a_compiled_out_backend_says_how_to_get_it() {
        let registry = [Registration {
            scheme: "nsq",
            backend: None,
            legacy_vars: &["MSS_QUEUE_ENDPOINT", "MSS_TOPIC_NAME"],
        }];
        let e = parse_in(&registry, "nsq://127.0.0.1:4150/t/c").expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(
            e.to_string(),
            "nsq:// is not available in this build: rebuild with `--features nsq`"
        );
        // Its 2016 variables are named, so that ignoring them can be explained; empty ones do not count.
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            missing_legacy_in(&registry, &vars(&[("MSS_TOPIC_NAME", "jobs")])),
            Some(("MSS_TOPIC_NAME", "nsq"))
        );
        assert_eq!(
            missing_legacy_in(&registry, &vars(&[("MSS_QUEUE_ENDPOINT", " ")])),
            None
        );
        assert_eq!(missing_legacy_in(&registry, &vars(&[])), None);
    }

    #[test]
    fn bad_urls_are_clear_errors_that_list_this_builds_schemes() {
        for (url, needle) in [
            ("kafka://x", "unknown scheme \"kafka\""),
            ("rediss://h/s", "for TLS give redis://…?tls=true"),
            ("amqps://h/q", "for TLS give amqp://…?tls=true"),
            ("queue.db", "no scheme"),
        ] {
            let e = QueueUrl::parse(url).err().map(|e| e.to_string());
            let e = e.unwrap_or_default();
            assert!(e.contains(needle), "{url}: {e}");
            for b in backends() {
                assert!(
                    e.contains(b.scheme()),
                    "{url}: {e} should name {}",
                    b.scheme()
                );
            }
        }
    }
}

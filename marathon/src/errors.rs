//! What can go wrong talking to Marathon, each with what to do about it. The binaries print these as they
//! are; every variant is a runtime failure (exit 1). Bad usage is [`UsageError`] (exit 2).

use std::time::Duration;

/// An input that cannot be used; found before any request is made. The same type as every binary's, so
/// that [`workload::cli::exit`] gives it exit status 2.
pub use workload::cli::UsageError;

/// A failed exchange with Marathon. `what` names the operation (`update group /microscaling-demo`).
#[derive(Debug, thiserror::Error)]
pub enum MarathonError {
    #[error(
        "cannot {what}: cannot connect to Marathon at {url} ({detail}) — is the URL right (--marathon-url or MSS_MARATHON_API) and is Marathon running?"
    )]
    Connect {
        what: String,
        url: String,
        detail: String,
    },
    #[error(
        "cannot {what}: Marathon's https certificate at {url} is not trusted ({detail}) — pass the certificate authority that signed it with --ca-cert FILE (DC/OS: the cluster's dcos-ca.crt, from https://MASTER/ca/dcos-ca.crt)"
    )]
    Certificate {
        what: String,
        url: String,
        detail: String,
    },
    #[error(
        "cannot {what}: Marathon at {url} did not answer within {timeout:?} — it may be overloaded or electing a leader; retry, or raise --request-timeout"
    )]
    Timeout {
        what: String,
        url: String,
        timeout: Duration,
    },
    #[error(
        "cannot {what}: the connection to Marathon at {url} failed ({detail}) — retry; if it persists, check the proxy or load balancer in front of Marathon"
    )]
    Transport {
        what: String,
        url: String,
        detail: String,
    },
    #[error(
        "cannot {what}: Marathon refused the credentials (401 Unauthorized: {message}) — check the token (--token, DCOS_TOKEN or --token-file; DC/OS tokens expire: get a new one with `dcos auth login`) or the user and password (--user, MARATHON_PASSWORD)"
    )]
    Unauthorized { what: String, message: String },
    #[error(
        "cannot {what}: Marathon denied it (403 Forbidden: {message}) — the credentials are valid but lack permission; ask an administrator for access to the group, or use --group for one you may change"
    )]
    Forbidden { what: String, message: String },
    #[error(
        "cannot {what}: {url} answered 404 Not Found and is not a Marathon API — check --marathon-url (through the DC/OS admin router it ends in /marathon, e.g. http://leader.mesos/marathon)"
    )]
    NotMarathon { what: String, url: String },
    #[error(
        "cannot {what}: locked by Marathon deployment(s) {} — wait for them to finish (GET /v2/deployments), or pass --force to cancel them",
        .deployments.join(", ")
    )]
    Locked {
        what: String,
        deployments: Vec<String>,
    },
    #[error(
        "cannot {what}: Marathon rejected the definition (422 {message}): {details} — an option value Marathon does not accept; fix it (or report it, if it is not one of yours) and retry"
    )]
    Invalid {
        what: String,
        message: String,
        details: String,
    },
    #[error(
        "cannot {what}: Marathon failed ({status}: {message}) — it may be restarting or without a leader; retry in a moment, and check Marathon's logs if it persists"
    )]
    Server {
        what: String,
        status: u16,
        message: String,
    },
    #[error("cannot {what}: unexpected answer from Marathon ({status}: {message})")]
    Unexpected {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "deployment {id} is still running after {waited:.1}s ({progress}) — Marathon keeps trying: check why the tasks do not start (image pull, cpus/mem, agents) in {url}/v2/deployments; wait longer with --timeout, or remove the install with marathon-uninstall --force"
    )]
    Stuck {
        id: String,
        /// Seconds since the command started.
        waited: f64,
        progress: String,
        url: String,
    },
    #[error(
        "cannot {what}: the group {group} holds apps marathon-install did not create ({apps}) — {advice}"
    )]
    Foreign {
        what: String,
        group: String,
        apps: String,
        advice: String,
    },
}

/// Why a binary failed, which decides its exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Marathon(#[from] MarathonError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs a binary's body and turns its outcome into the exit status with [`workload::cli::exit`], the rule every
/// binary follows.
pub fn exit_with(result: Result<(), Failure>) -> std::process::ExitCode {
    workload::cli::exit(result.map_err(|f| match f {
        // Unwrapped, because `Usage` is transparent: the chain must hold the UsageError itself.
        Failure::Usage(u) => anyhow::Error::new(u),
        other => anyhow::Error::new(other),
    }))
}

/// A current-thread runtime: the binaries make one request at a time.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

//! The `--queue` flag every role that uses a queue takes: its help, and the 2016 variables, come from the
//! registry, so they list exactly the backends of this build. And [`start`], what such a role's binary sets
//! up between its flags and its run.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use workload::metrics::{Exporter, MetricsError};
use workload::reporting::Reporting;
use workload::shutdown::Shutdown;

use crate::{Queue, QueueError, QueueUrl};

/// The queue every role talks to.
#[derive(Args, Clone, Debug)]
pub struct QueueArgs {
    // The help is made from the registry, so that it lists exactly the backends this build has.
    #[arg(
        long,
        env = "QUEUE_URL",
        // A URL may carry a password or a SAS signature: --help shows the variable, never its value.
        hide_env_values = true,
        value_name = "URL",
        help = crate::registry::help_short(),
        long_help = crate::registry::help_long()
    )]
    pub queue: Option<String>,
}

impl QueueArgs {
    /// The queue URL, parsed once: --queue/QUEUE_URL, else the first backend whose 2016 variables are set
    /// (see [`crate::Backend::url_from_legacy_env`]).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid): no queue given, or a URL that does not parse.
    pub fn url(&self) -> Result<crate::QueueUrl, crate::QueueError> {
        let get = |k: &str| std::env::var(k).ok();
        let url = match &self.queue {
            Some(u) => u.clone(),
            None => crate::registry::url_from_legacy_env(&get).ok_or_else(|| {
                let missing = crate::registry::legacy_env_of_missing(&get);
                crate::QueueError::new(crate::ErrorKind::Invalid, MissingQueue(missing))
            })?,
        };
        crate::QueueUrl::parse(&url)
    }
}

/// No queue URL was given. The text lists the forms this build knows, or, when a 2016 variable of a backend
/// this build left out is set (the variable, the scheme), says that is why it was ignored.
#[derive(Debug)]
pub struct MissingQueue(Option<(&'static str, &'static str)>);

impl Display for MissingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((var, scheme)) = self.0 {
            return write!(
                f,
                "{var} is set, which asks for the {scheme} backend, but {scheme} is not in this build: \
rebuild with `--features {scheme}` (or `cargo build --release` for every backend), or pass --queue URL"
            );
        }
        write!(
            f,
            "no queue given: pass --queue URL or set QUEUE_URL, one of {} (for example --queue {})",
            crate::registry::forms(),
            crate::registry::example()
        )
    }
}

impl std::error::Error for MissingQueue {}

/// What [`start`] set up, for the role's `run(config, queue, shutdown, reporting)`.
pub struct Start {
    pub queue: Arc<dyn Queue>,
    pub shutdown: Shutdown,
    /// Stats lines on stdout, and the `/metrics` endpoint when asked for.
    pub reporting: Reporting,
}

/// Sets up a role's run, in this order: the signal handlers, the `/metrics` endpoint on `metrics_addr` (bound
/// before the queue is opened, so that a port in use stops the run before it touches a message), the queue.
///
/// # Errors
/// [`StartError`]: the signal handlers cannot be installed, the address cannot be bound, or the queue cannot
/// be opened.
pub async fn start(
    queue: &QueueUrl,
    metrics_addr: Option<SocketAddr>,
) -> Result<Start, StartError> {
    let shutdown = Shutdown::from_signals().map_err(StartError::Signals)?;
    let exporter = match metrics_addr {
        Some(addr) => Some(Exporter::bind(addr).await?),
        None => None,
    };
    let opened = queue.open().await.map_err(|source| StartError::Open {
        url: queue.to_string(),
        source,
    })?;
    Ok(Start {
        queue: opened,
        shutdown,
        reporting: Reporting::stdout(exporter),
    })
}

/// Why a role's run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `url` is the queue's `Display`, which masks its secrets.
    #[error("cannot open queue {url:?}")]
    Open {
        url: String,
        #[source]
        source: QueueError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_help_and_the_missing_queue_error_list_every_backend_of_this_build() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Role {
            #[command(flatten)]
            queue: QueueArgs,
        }
        let mut cmd = Role::command();
        let short = cmd.render_help().to_string();
        let long = cmd.render_long_help().to_string();
        let missing = MissingQueue(None).to_string();
        let mut n = 0;
        for b in crate::registry::backends() {
            n += 1;
            for text in [&short, &long, &missing] {
                assert!(text.contains(&format!("{}:", b.scheme())), "{text}");
            }
            assert!(
                long.contains(b.summary().split(' ').next().unwrap_or("")),
                "{long}"
            );
        }
        assert!(n > 0, "this build has a backend");
    }
}

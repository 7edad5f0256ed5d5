//! The `--queue` flag every role that uses a queue takes: its help, and the 2016 variables, come from the
//! registry, so they list exactly the backends of this build.

use std::fmt::Display;

use clap::Args;

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
        let url = match &self.queue {
            Some(u) => u.clone(),
            None => crate::registry::url_from_legacy_env(&|k| std::env::var(k).ok())
                .ok_or_else(|| crate::QueueError::new(crate::ErrorKind::Invalid, MissingQueue))?,
        };
        crate::QueueUrl::parse(&url)
    }
}

/// No queue URL was given. The text lists the forms this build knows.
#[derive(Debug)]
pub struct MissingQueue;

impl Display for MissingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no queue given: pass --queue URL or set QUEUE_URL, one of {} (for example --queue {})",
            crate::registry::forms(),
            crate::registry::example()
        )
    }
}

impl std::error::Error for MissingQueue {}

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
        let missing = MissingQueue.to_string();
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

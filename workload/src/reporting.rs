//! [`Reporting`]: where a role's run reports, besides its logs.

use std::io::Write;

use crate::metrics::Exporter;

/// Where a run reports, besides its logs: the stats lines (stdout in the binaries, a buffer in tests) and,
/// when asked, the `/metrics` endpoint (bound by the caller before the queue is opened, so that a port in use
/// stops the run before it touches a message).
pub struct Reporting {
    /// Receives one JSON line per stats interval and the summary; flushed after each line.
    pub stats: Box<dyn Write + Send>,
    pub exporter: Option<Exporter>,
}

impl Reporting {
    /// Stats lines on stdout, as the binaries write them.
    pub fn stdout(exporter: Option<Exporter>) -> Reporting {
        Reporting {
            stats: Box::new(std::io::stdout()),
            exporter,
        }
    }
}

//! The backend's connection: the `redis` crate's `ConnectionManager`, with one immediate second try of a
//! call that failed on a connection refused.
//!
//! Why: a call that finds the manager's connection broken fails, and starts a reconnect in the background.
//! While the server is down, that reconnect fails too (after the manager's quick retries), and the manager
//! keeps its error until the next call. The next call, made after the caller's back-off (the consumer's is
//! up to 5 s), so typically once the server is back, gets that stale "connection refused" and only then
//! starts a new reconnect: the caller backs off a second time before anything works. After a 2 s Redis
//! restart under load, consumers sat out 5-10 s this way while one consumer took all the work. Trying once
//! more at once awaits the reconnect the first failure started, against the server as it is now.
//!
//! Only a refused connection is tried again: nothing was sent, so a second try cannot run a command (an
//! `XADD`, an ack script) twice. Every other error goes back to the caller as it came.

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

/// A [`ConnectionManager`] whose calls are tried once more at once after a refused connection.
#[derive(Clone)]
pub(crate) struct Connection(pub(crate) ConnectionManager);

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.req_packed_command(cmd).await {
                Err(e) if e.is_connection_refusal() => {
                    tracing::debug!(error = %e, "redis: connection refused; trying the reconnect at once");
                    self.0.req_packed_command(cmd).await
                }
                other => other,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.0.req_packed_commands(cmd, offset, count).await {
                Err(e) if e.is_connection_refusal() => {
                    tracing::debug!(error = %e, "redis: connection refused; trying the reconnect at once");
                    self.0.req_packed_commands(cmd, offset, count).await
                }
                other => other,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

//! Each backend's queue as the delivery tests drive it: its URL, its processes' credentials, and its state as
//! the server itself reports it (not as our backend reads it, which is what is under test). A test file that
//! needs flags of its own sets `roles` with struct update syntax.

use std::time::Duration;

use super::{Backend, PLAIN, Roles};
use crate::amqp::{self, Rabbit};
use crate::azurite::{self, Azurite};
use crate::nats::{self, NatsServer};
use crate::redis::{self, RedisServer};

/// Azure's processes authenticate with Azurite's account key.
pub const AZURE: Roles = Roles {
    env: azurite::with_key,
    ..PLAIN
};
/// The other backends' processes run with no credentials from the developer's shell.
pub const REDIS: Roles = Roles {
    env: redis::clear_credentials,
    ..PLAIN
};
pub const NATS: Roles = Roles {
    env: nats::clear_credentials,
    ..PLAIN
};
pub const AMQP: Roles = Roles {
    env: amqp::clear_credentials,
    ..PLAIN
};

impl<'a> Backend<'a> {
    /// A SQLite queue: its own depth is the truth (the file is the queue).
    pub fn sqlite(url: &str) -> Backend<'a> {
        let depth_url = url.to_string();
        Backend {
            roles: PLAIN,
            url: url.to_string(),
            state: Box::new(move || {
                let d = crate::depth(&depth_url);
                (d.visible, d.in_flight.unwrap_or(0))
            }),
            release_within: Duration::from_secs(2),
        }
    }

    /// The fake nsqd's channel behind `url`: the fake's own count, so a message left in flight to a stopped
    /// consumer (nsqd would only time it out) shows, and so does one waiting out a `REQ` delay.
    #[cfg(feature = "fake-nsqd")]
    pub fn nsq(fake: &'a crate::fake_nsqd::FakeNsqd, url: &str) -> Backend<'a> {
        Backend {
            roles: PLAIN,
            url: url.to_string(),
            state: Box::new(|| {
                let (visible, in_flight, deferred) = fake.channel_depth("t", "c");
                (visible, in_flight + deferred)
            }),
            release_within: Duration::from_secs(2),
        }
    }

    /// An Azurite queue: visible from a peek, in flight = the approximate count (which includes invisible
    /// messages) minus that.
    pub fn azure(az: &Azurite, queue: &str) -> Backend<'a> {
        let url = az.url(queue, "");
        let (total, visible) = (url.clone(), az.url(queue, "depth=visible"));
        Backend {
            roles: AZURE,
            url,
            state: Box::new(move || {
                let seen = azurite::depth(&visible).visible;
                (seen, azurite::depth(&total).total().saturating_sub(seen))
            }),
            release_within: Duration::from_secs(3),
        }
    }

    /// A Redis stream with a group of the same name, read with redis-cli: visible = the group's lag, in
    /// flight = its pending entries (a released entry is re-added, so it is lag at once; one released with a
    /// delay stays pending until claimed).
    pub fn redis(server: &'a RedisServer, stream: &'a str) -> Backend<'a> {
        Backend {
            roles: REDIS,
            url: server.url(stream, ""),
            state: Box::new(move || {
                let (_, pending, lag) = server.figures(stream, stream);
                (lag.expect("Redis counts the lag"), pending)
            }),
            release_within: Duration::from_secs(2),
        }
    }

    /// A JetStream stream: `num_pending` and `num_ack_pending` of the durable consumer, from the monitor
    /// port; (0, 0) before the consumer exists.
    pub fn nats(server: &'a NatsServer, stream: &'a str) -> Backend<'a> {
        Backend {
            roles: NATS,
            url: server.url(stream, ""),
            state: Box::new(move || server.jsz_consumer(stream, "workers").unwrap_or((0, 0))),
            release_within: Duration::from_secs(3),
        }
    }

    /// A RabbitMQ quorum queue as the broker counts it, after a statistics tick that began after the call
    /// (~5.5 s); unknown counts never read as drained.
    pub fn amqp(r: &'a Rabbit, queue: &'a str) -> Backend<'a> {
        Backend {
            roles: AMQP,
            url: r.url(queue, ""),
            state: Box::new(move || r.settled_counts(queue).unwrap_or((u64::MAX, u64::MAX))),
            release_within: Duration::from_secs(3),
        }
    }
}

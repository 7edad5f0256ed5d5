//! The NATS JetStream backend, on `async-nats` (the NATS project's own client), for servers from 2.9.
//!
//! How the queue contract maps onto JetStream:
//! - The queue is a stream with work-queue retention and file storage, capturing one subject, and one durable
//!   pull consumer (explicit acks) that every consumer process shares. Both are created on first use when
//!   missing (not with [`OpenMode::Existing`]).
//! - publish: a JetStream publish per message, all of a batch in flight at once; `Ok` only once every
//!   message's publish ack (the stream stored it) has arrived.
//! - receive: a no-wait pull request for up to `max`; when nothing is there and `wait` is not zero, a pull
//!   request for one message that expires after `wait` (a request for more would hold what arrived until it
//!   filled or expired). No request is ever left outstanding between calls, so nothing arrives unasked and
//!   [`Queue::stop_receiving`] has nothing to do.
//! - lease: the consumer's `AckWait`. JetStream has one per consumer, not per message: the first receive
//!   whose `lease` differs updates the consumer, so consumers of one queue should agree on `--lease`.
//!   extend is an in-progress ack (`+WPI`), which restarts `AckWait`; ack is `+ACK`; release is `-NAK` with
//!   its delay. Each of these is a request, so it returns once the server has processed it.
//! - lease lost: the server acks a message still pending whoever acks it, and says nothing about an ack that
//!   came late. So the receipt carries the lease's end as this process computed it, and an ack, extend or
//!   release after it is reported as lost (the ack is sent all the same: if the message was not delivered
//!   again yet, that saves a duplicate).
//! - delivery count: the `delivered` field of the message's ack subject (JetStream's metadata). The
//!   consumer's `MaxDeliver` is unlimited: the failure model decides when a message is poison and acks it; a
//!   server-side limit would leave a message in the stream that no consumer is ever given, uncounted.
//! - depth: the consumer's `num_pending` (stored, never delivered) is `visible`, and `num_ack_pending`
//!   (delivered and not yet acked, including those waiting for redelivery after a lease ran out or a `-NAK`)
//!   is `in_flight`. KEDA's `nats-jetstream` scaler reads the same two figures from `/jsz` and sums them.
//!
//! The connection is made on first use, so a producer or consumer starts even while the server is down;
//! once made, async-nats reconnects by itself, resubscribes, and our calls fail with `Unavailable` meanwhile
//! (the binaries retry with back-off). Receipts survive a reconnect: an ack subject is not tied to a
//! connection.

mod auth;
mod error;
pub mod url;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::OnceCell;

use self::auth::Auth;
pub use self::error::NatsError;
use self::error::{
    connect_error, consumer_error, consumer_info_error, create_stream_error, get_stream_error,
    publish_error,
};
use self::url::NatsUrl;
pub use self::url::{BACKEND, NatsBackend};
use super::{AckOutcome, Delivery, Depth, OpenMode, Queue, QueueError, Receipt};

/// The consumer's `AckWait` when it is made by a producer or a watcher, before any consumer said its lease:
/// the consumer's default `--lease`.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// JetStream's default duplicate window: an expiring stream's may not be longer than its max age.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a request (JetStream API, publish ack, ack) waits for the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pull request may run past its own end (at once for a no-wait fetch, `expires` for a waiting
/// one) before it is given up. The server ends it with a status; it was given [`REQUEST_TIMEOUT`] (5 s),
/// and twice under load (2.9.10) a heartbeat watcher read nothing for 4.7 s, counting live consumers gone,
/// and a consumer was starved as long: the stall of a request that was never ended. Given up, the request's messages that did
/// come are kept; any sent after it return once their `AckWait` ends: late, never lost.
const PULL_GRACE: Duration = Duration::from_millis(1000);
/// How long a connection attempt waits.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// This backend's receipt: the message's ack subject (where +ACK, +WPI and -NAK go) and the end of its
/// lease as this process knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NatsReceipt {
    reply: String,
    lease_until: Instant,
}

/// What one connection holds: the client, its JetStream context, the stream and the pull consumer.
struct Conn {
    client: async_nats::Client,
    stream: stream::Stream,
    consumer: Mutex<consumer::PullConsumer>,
    /// The consumer's `AckWait`, as last set or read.
    ack_wait: Mutex<Duration>,
}

/// A NATS JetStream queue (see the module docs for the mapping).
pub struct NatsQueue {
    url: NatsUrl,
    mode: OpenMode,
    auth: Auth,
    tls: rustls::ClientConfig,
    conn: OnceCell<Conn>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("url", &self.url)
            .field("auth", &self.auth)
            .finish()
    }
}

impl NatsQueue {
    /// A queue for `url` with credentials read through `get` (the environment, or a test's map). Connects
    /// nothing yet.
    ///
    /// # Errors
    /// [`NatsError::Config`] for inconsistent credential variables or an unusable CA file.
    pub fn new(
        url: NatsUrl,
        mode: OpenMode,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<NatsQueue, NatsError> {
        let auth = Auth::from_env(get)?;
        let tls = tls_config(url.ca.as_deref())?;
        Ok(NatsQueue {
            url,
            mode,
            auth,
            tls,
            conn: OnceCell::new(),
        })
    }

    /// The connection, made (with the stream and consumer) on first use; a failed attempt is made again on
    /// the next call.
    async fn conn(&self) -> Result<&Conn, NatsError> {
        self.conn.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<Conn, NatsError> {
        let addr = self.url.servers.join(",");
        let mut options = async_nats::ConnectOptions::new()
            .name("queue-workload")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Every TLS connection, whether the URL asks for it or the server does, uses common::tls's
            // verifying configuration on ring.
            .tls_client_config(self.tls.clone())
            .require_tls(self.url.tls)
            // Reconnect for ever, at most a second apart: a consumer must outlive a broker restart, and come
            // back soon after it.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50u64 << attempts.min(5)).min(1_000))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => tracing::warn!("NATS connection lost"),
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    other => tracing::debug!(%other, "NATS event"),
                }
            });
        options = match &self.auth {
            Auth::None => options,
            Auth::UserPassword(u, p) => options.user_and_password(u.clone(), p.clone()),
            Auth::Token(t) => options.token(t.clone()),
        };
        let servers: Vec<async_nats::ServerAddr> = self
            .url
            .servers
            .iter()
            .map(|s| {
                format!("nats://{s}")
                    .parse()
                    .map_err(|e| NatsError::Config(format!("server address {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| connect_error(&addr, &e))?;
        let js = jetstream::new(client.clone());
        let create = self.mode == OpenMode::Create;
        let stream = if create {
            let config = stream::Config {
                name: self.url.stream.clone(),
                subjects: vec![self.url.subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                // An expiring stream (heartbeats): JetStream drops what is older than `max_age`; its duplicate
                // window may not be longer. A stream made earlier without it keeps its own limits.
                max_age: self.url.expiry.unwrap_or_default(),
                duplicate_window: self
                    .url
                    .expiry
                    .map_or(Duration::ZERO, |after| after.min(DUPLICATE_WINDOW)),
                ..Default::default()
            };
            js.get_or_create_stream(config)
                .await
                .map_err(|e| create_stream_error(&e))?
        } else {
            js.get_stream(&self.url.stream)
                .await
                .map_err(|e| get_stream_error(&e))?
        };
        let consumer: consumer::PullConsumer = if create {
            stream
                .get_or_create_consumer(&self.url.consumer, self.consumer_config(DEFAULT_ACK_WAIT))
                .await
                .map_err(|e| consumer_error("creating the consumer", &e))?
        } else {
            // consumer_info's errors are typed (a missing consumer is NotFound); get_consumer's are not.
            stream
                .consumer_info(&self.url.consumer)
                .await
                .map_err(|e| consumer_info_error(&self.url.consumer, &e))?;
            stream
                .get_consumer(&self.url.consumer)
                .await
                .map_err(|e| NatsError::lost("looking up the consumer", e))?
        };
        let ack_wait = consumer.cached_info().config.ack_wait;
        tracing::debug!(queue = %self.url.describe(), ?ack_wait, "NATS stream and consumer ready");
        Ok(Conn {
            client,
            stream,
            consumer: Mutex::new(consumer),
            ack_wait: Mutex::new(ack_wait),
        })
    }

    /// The durable pull consumer every consumer process shares.
    fn consumer_config(&self, ack_wait: Duration) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.url.consumer.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            // Unlimited: the failure model decides poison (see the module docs).
            max_deliver: -1,
            // Unlimited: how many messages are held is up to the consumers' --max-in-flight.
            max_ack_pending: -1,
            filter_subject: self.url.subject.clone(),
            ..Default::default()
        }
    }

    /// The consumer, with its `AckWait` set to `lease` first if it differs.
    async fn consumer_for(
        &self,
        conn: &Conn,
        lease: Duration,
    ) -> Result<(consumer::PullConsumer, Duration), NatsError> {
        let current = *lock(&conn.ack_wait);
        if current != lease && self.mode == OpenMode::Create {
            let updated = conn
                .stream
                .create_consumer(self.consumer_config(lease))
                .await
                .map_err(|e| consumer_error("setting the consumer's AckWait to the lease", &e))?;
            tracing::info!(
                consumer = %self.url.consumer,
                was = ?current,
                now = ?lease,
                "set the consumer's AckWait to --lease (one AckWait per consumer: give every consumer the same --lease)"
            );
            *lock(&conn.consumer) = updated;
            *lock(&conn.ack_wait) = lease;
        }
        let ack_wait = *lock(&conn.ack_wait);
        Ok((lock(&conn.consumer).clone(), ack_wait))
    }

    /// Sends `payload` to each receipt's ack subject as a request, all at once; returns per receipt whether
    /// its lease was still ours when sent. Fails if any request failed (they are all safe to repeat).
    async fn to_each(
        &self,
        receipts: &[Receipt],
        payload: &'static [u8],
        what: &'static str,
    ) -> Result<Vec<bool>, QueueError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let now = Instant::now();
        let mut held = Vec::with_capacity(receipts.len());
        let mut calls = Vec::with_capacity(receipts.len());
        for r in receipts {
            let r = r.get::<NatsReceipt>()?;
            held.push(now <= r.lease_until);
            calls.push(conn.client.request(r.reply.clone(), payload.into()));
        }
        for result in join_all(calls).await {
            result.map_err(|e| NatsError::lost(what, e))?;
        }
        Ok(held)
    }
}

/// Locks a mutex; a poisoned one still holds a valid value here (plain data).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rustls configuration from common::tls: web PKI roots plus the URL's `ca=`, verified, on ring.
fn tls_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, NatsError> {
    let mut extra = Vec::new();
    let what = ca.map_or_else(
        || "TLS".to_string(),
        |ca| format!("CA file {}", ca.display()),
    );
    if let Some(ca) = ca {
        let pem = std::fs::read(ca)
            .map_err(|e| NatsError::Config(format!("cannot read CA file {}: {e}", ca.display())))?;
        extra = workload::tls::certificates_from_pem(&pem, &what)
            .map_err(|e| NatsError::Config(e.to_string()))?;
    }
    workload::tls::client_config(extra, &what).map_err(|e| NatsError::Config(e.to_string()))
}

/// Drains a pull request's messages into deliveries. A failure after some messages arrived keeps them (they
/// are leased to us: dropping them would only delay them until the lease ends).
async fn collect(
    mut batch: consumer::pull::Batch,
    ack_wait: Duration,
    out: &mut Vec<Delivery>,
) -> Result<(), NatsError> {
    while let Some(next) = batch.next().await {
        let message = match next {
            Ok(m) => m,
            Err(e) if out.is_empty() => return Err(NatsError::lost("receive", e)),
            Err(e) => {
                tracing::debug!(error = %e, "pull request ended early");
                return Ok(());
            }
        };
        let delivered = match message.info() {
            Ok(info) => info.delivered,
            Err(e) => {
                return Err(NatsError::Protocol(format!(
                    "a pulled message has no JetStream metadata ({e})"
                )));
            }
        };
        let reply = message
            .reply
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        out.push(Delivery {
            body: message.payload.to_vec(),
            receipt: Receipt::new(NatsReceipt {
                reply,
                lease_until: Instant::now() + ack_wait,
            }),
            deliveries: u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
        });
    }
    Ok(())
}

#[async_trait]
impl Queue for NatsQueue {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        let conn = self.conn().await?;
        // The server's own limit, learnt at connect, where it is lower than the URL's.
        let server_max = conn.client.server_info().max_payload;
        let max = if server_max > 0 {
            self.url.max_msg_size.min(server_max)
        } else {
            self.url.max_msg_size
        };
        if let Some(big) = bodies.iter().find(|b| b.len() > max) {
            return Err(NatsError::TooLarge {
                size: big.len(),
                max,
                limit: "the server's max_payload (the URL's max_msg_size)",
            }
            .into());
        }
        let js = jetstream::new(conn.client.clone());
        let mut acks = Vec::with_capacity(bodies.len());
        for body in bodies {
            let ack = js
                .publish(self.url.subject.clone(), body.into())
                .await
                .map_err(|e| publish_error(&e))?;
            acks.push(ack.into_future());
        }
        for ack in join_all(acks).await {
            ack.map_err(|e| publish_error(&e))?;
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let conn = self.conn().await?;
        let (consumer, ack_wait) = self.consumer_for(conn, lease).await?;
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| NatsError::lost("pull request", e))?;
        // A no-wait request that the server never ends must not hang the consumer.
        tokio::time::timeout(PULL_GRACE, collect(batch, ack_wait, &mut out))
            .await
            .unwrap_or_else(|_| {
                tracing::debug!(
                    got = out.len(),
                    "a no-wait pull request was not ended; given up"
                );
                Ok(())
            })?;
        if out.is_empty() && !wait.is_zero() {
            let batch = consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
                .map_err(|e| NatsError::lost("pull request", e))?;
            tokio::time::timeout(wait + PULL_GRACE, collect(batch, ack_wait, &mut out))
                .await
                .unwrap_or_else(|_| {
                    tracing::debug!(
                        got = out.len(),
                        "a waiting pull request was not ended; given up"
                    );
                    Ok(())
                })?;
        }
        Ok(out)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        let held = self.to_each(&receipts, b"+ACK", "ack").await?;
        let acked = held.iter().filter(|h| **h).count() as u64;
        Ok(AckOutcome {
            acked,
            lease_lost: held.len() as u64 - acked,
        })
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        let held = if delay.is_zero() {
            self.to_each(&receipts, b"-NAK", "release").await?
        } else {
            // The delay is per call, so the payload is made here (the common case, delay 0, allocates nothing).
            let payload = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
            let conn = self.conn().await?;
            let now = Instant::now();
            let mut held = Vec::with_capacity(receipts.len());
            let mut calls = Vec::with_capacity(receipts.len());
            for r in &receipts {
                let r = r.get::<NatsReceipt>()?;
                held.push(now <= r.lease_until);
                calls.push(conn.client.request(r.reply.clone(), payload.clone().into()));
            }
            for result in join_all(calls).await {
                result.map_err(|e| NatsError::lost("release", e))?;
            }
            held
        };
        Ok(held.iter().filter(|h| **h).count() as u64)
    }

    async fn extend(
        &self,
        receipts: &mut [Receipt],
        _lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        let held = self.to_each(receipts, b"+WPI", "extend").await?;
        // +WPI restarts AckWait (the consumer's, which receive set to the lease).
        let ack_wait = match self.conn.get() {
            Some(conn) => *lock(&conn.ack_wait),
            None => return Ok(held),
        };
        let until = Instant::now() + ack_wait;
        for (r, still) in receipts.iter_mut().zip(&held) {
            if *still {
                r.get_mut::<NatsReceipt>()?.lease_until = until;
            }
        }
        Ok(held)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let conn = self.conn().await?;
        let info = conn
            .stream
            .consumer_info(&self.url.consumer)
            .await
            .map_err(|e| consumer_info_error(&self.url.consumer, &e))?;
        Ok(Depth {
            visible: info.num_pending,
            in_flight: Some(info.num_ack_pending as u64),
        })
    }

    fn max_message_size(&self) -> Option<usize> {
        Some(self.url.max_msg_size)
    }

    fn describe(&self) -> String {
        self.url.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::tests::vars as env;

    #[test]
    fn a_missing_ca_file_is_a_clear_configuration_error() {
        let url = NatsUrl::parse("//127.0.0.1/s?ca=/nonexistent/ca.pem").unwrap();
        let e = NatsQueue::new(url, OpenMode::Create, &env(&[])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
        assert_eq!(QueueError::from(e).kind(), crate::ErrorKind::Invalid);
    }
}

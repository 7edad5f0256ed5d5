//! The AMQP 0-9-1 backend (RabbitMQ), on the `lapin` client.
//!
//! How the queue contract maps onto RabbitMQ:
//! - The queue is declared durable on every new connection: a quorum queue by default (`x-queue-type`),
//!   or a classic one with `type=classic`; passively (it must exist) when opened with
//!   [`OpenMode::Existing`].
//! - publish: the producer's channel is in confirm mode; every message is published persistent
//!   (`delivery-mode 2`) and `mandatory` to the default exchange, and the batch is `Ok` only once the broker
//!   has confirmed every message (a quorum queue confirms once the message is in its log on disk). A nack is
//!   reported as throttling, an unroutable return as the queue being gone.
//! - receive: RabbitMQ pushes. The consumer's channel gets `basic.qos` with the window the consumer said it
//!   may hold ([`Queue::hold_at_most`]: its `--max-in-flight` plus the finished messages awaiting their ack;
//!   else its first receive's `max`), then `basic.consume`; `receive` hands out what has arrived, waiting up
//!   to `wait` for the first. RabbitMQ applies a prefetch to consumers made after it, so the window is set
//!   once, before the consumer: a window of one receive's `max` made every turn wait for the previous
//!   turn's acks (with the telemetry channel on, for its records' confirmation too: 0.45× the throughput).
//! - leases, release with a delay, extend: kept by this backend per delivery (see [`leases`]): AMQP has no
//!   visibility timeout, and RabbitMQ's `consumer_timeout` closes the whole channel.
//! - ack is `basic.ack`, release is `basic.nack` with `requeue=true`. Receipts carry the channel's
//!   generation: a delivery tag only means something on its channel, and the broker requeued everything of a
//!   channel that closed, so an ack with a receipt of an older channel is `lease_lost`, never sent.
//! - The delivery count: a quorum queue sets `x-delivery-count` on every redelivery (a nack with requeue,
//!   or a channel that closed with the message unacked), so `deliveries` is that plus one. A classic queue
//!   has only the `redelivered` flag: `deliveries` is 1, or 2 when redelivered (an approximation: poison
//!   detection with `--max-deliveries` above 2 needs a quorum queue).
//! - [`Queue::stop_receiving`] cancels the consumer (`basic.cancel`) and gives back (nack, requeue) what
//!   arrived but was never handed out; ack, release and extend of held messages keep working.
//! - depth: `visible` is the ready count of a passive `queue.declare`, exact and at once (the figure
//!   KEDA's RabbitMQ scaler reads over AMQP, and over HTTP with `excludeUnacknowledged`); `in_flight` is the
//!   management API's `messages_unacknowledged`, which lags by its statistics interval (KEDA's HTTP
//!   `QueueLength` counts ready + unacked, our `visible + in_flight`). Without the management API
//!   (`management=off`, or not reachable) `in_flight` is unknown.
//!
//! Connections are made lazily and remade after a failure on the next call (the binaries retry with
//! back-off), so the broker can be down at start or restart mid-run. lapin's own recovery is left off: a
//! recovered channel would renumber deliveries under receipts we handed out.

mod conn;
mod error;
mod leases;
pub mod management;
pub mod url;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use self::error::AmqpError;
use self::leases::{Lease, Leases, lock};
use self::management::Management;
pub use self::url::{AmqpBackend, AmqpUrl, BACKEND, QueueType};
use super::{AckOutcome, Delivery, Depth, OpenMode, Queue, QueueError, Receipt};

/// How long a batch waits for the broker's confirms.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting (TCP, TLS and the AMQP handshake) and a declare may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `stop_receiving` waits for the consumer's cancel to be answered.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// A secret (the password) whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the places that send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// This backend's receipt: the consumer channel's generation and the delivery tag on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AmqpReceipt {
    generation: u64,
    tag: u64,
}

/// A connection and the one channel used on it.
struct Link {
    conn: Connection,
    channel: Channel,
}

impl Link {
    fn alive(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

/// The consumer's side: its link and its consumer, made on the first receive.
#[derive(Default)]
struct ConsumerSide {
    link: Option<Link>,
    consumer: Option<Consumer>,
    /// The prefetch (`basic.qos`) of every consumer channel, fixed at the first receive.
    prefetch: u16,
    stopped: bool,
    sweeping: bool,
}

/// A queue on a RabbitMQ broker.
pub struct AmqpQueue {
    url: AmqpUrl,
    mode: OpenMode,
    password: Secret,
    /// The private CA's PEM for lapin's rustls (web PKI roots are always trusted too), checked at open.
    ca_pem: Option<String>,
    management: Option<Management>,
    management_warned: AtomicBool,
    producer: Mutex<Option<Link>>,
    admin: Mutex<Option<Link>>,
    consumer: Mutex<ConsumerSide>,
    leases: leases::Shared,
    /// What the consumer said it may hold ([`Queue::hold_at_most`]), 0 until it does.
    window: AtomicUsize,
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("url", &self.url.describe())
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl AmqpQueue {
    /// Prepares the queue; connects nothing yet. The password comes from `AMQP_PASSWORD`.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](super::ErrorKind::Invalid) when the CA file is unusable.
    pub fn new(url: AmqpUrl, mode: OpenMode) -> Result<AmqpQueue, QueueError> {
        Self::with_env(url, mode, &|k| std::env::var(k).ok())
    }

    /// As [`AmqpQueue::new`], reading variables through `get` (tests pass their own).
    ///
    /// # Errors
    /// As [`AmqpQueue::new`].
    pub fn with_env(
        url: AmqpUrl,
        mode: OpenMode,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AmqpQueue, QueueError> {
        workload::tls::ensure_crypto_provider();
        let password = match get("AMQP_PASSWORD").filter(|p| !p.is_empty()) {
            Some(p) => p,
            // RabbitMQ's well-known default account, which it only accepts from loopback.
            None if url.user == "guest" => "guest".to_string(),
            None => String::new(),
        };
        let password = Secret(password);
        let (ca_pem, extra) = match &url.ca {
            Some(path) => {
                let what = format!("CA file {}", path.display());
                let pem = std::fs::read(path).map_err(|e| {
                    QueueError::from(AmqpError::Tls(format!("cannot read {what}: {e}")))
                })?;
                let certs = workload::tls::certificates_from_pem(&pem, &what)
                    .map_err(|e| QueueError::from(AmqpError::Tls(e.to_string())))?;
                (Some(String::from_utf8_lossy(&pem).into_owned()), certs)
            }
            None => (None, Vec::new()),
        };
        let management = match &url.management {
            Some(base) => Some(Management::new(base, &url, password.clone(), extra)?),
            None => None,
        };
        Ok(AmqpQueue {
            url,
            mode,
            password,
            ca_pem,
            management,
            management_warned: AtomicBool::new(false),
            producer: Mutex::new(None),
            admin: Mutex::new(None),
            consumer: Mutex::default(),
            leases: Arc::new(StdMutex::new(Leases::default())),
            window: AtomicUsize::new(0),
        })
    }

    /// Deliveries whose leases ran out and were given back by the sweeper (for tests and logs).
    pub fn expired_leases(&self) -> u64 {
        lock(&self.leases).expired
    }
}

/// The delivery count of a message: a quorum queue's `x-delivery-count` (previous deliveries) plus one; on a
/// classic queue, 2 when the broker flags a redelivery.
fn deliveries(d: &lapin::message::Delivery) -> u32 {
    let count = d.properties.headers().as_ref().and_then(|h| {
        h.inner().get("x-delivery-count").and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
            AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
            AMQPValue::ShortShortInt(n) => u32::try_from(*n).ok(),
            AMQPValue::ShortShortUInt(n) => Some(u32::from(*n)),
            _ => None,
        })
    });
    match count {
        Some(n) => n.saturating_add(1),
        None if d.redelivered => 2,
        None => 1,
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        Ok(self.publish_inner(&bodies).await?)
    }

    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut side = self.consumer.lock().await;
        if side.stopped || max == 0 {
            return Ok(Vec::new());
        }
        self.ensure_consumer(&mut side, max).await?;
        let Some(consumer) = side.consumer.as_mut() else {
            return Ok(Vec::new());
        };
        let mut got = Vec::new();
        let mut failed = None;
        let mut ended = false;
        while got.len() < max {
            let next = if got.is_empty() && !wait.is_zero() {
                match tokio::time::timeout(wait, consumer.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                }
            } else {
                match consumer.next().now_or_never() {
                    Some(n) => n,
                    None => break,
                }
            };
            match next {
                Some(Ok(d)) => got.push(d),
                Some(Err(e)) => {
                    failed = Some(self.err(&e, "the consumer"));
                    break;
                }
                // Cancelled by the broker (the queue was deleted) or the channel closed.
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if failed.is_some() || ended {
            side.link = None;
            side.consumer = None;
        }
        let deadline = Instant::now() + lease;
        let mut leases = lock(&self.leases);
        let generation = leases.generation;
        let out: Vec<Delivery> = got
            .into_iter()
            .map(|d| {
                let deliveries = deliveries(&d);
                leases.unsettled.insert(d.delivery_tag);
                leases.held.insert(
                    d.delivery_tag,
                    Lease {
                        acker: d.acker,
                        deadline,
                    },
                );
                Delivery {
                    body: d.data,
                    receipt: Receipt::new(AmqpReceipt {
                        generation,
                        tag: d.delivery_tag,
                    }),
                    deliveries,
                }
            })
            .collect();
        drop(leases);
        match failed {
            // What did arrive is handed out: its acks fail as lease_lost, and the broker redelivers it.
            Some(e) if out.is_empty() => Err(e.into()),
            _ => Ok(out),
        }
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        let now = Instant::now();
        let mut acking: Vec<(u64, lapin::Acker)> = Vec::with_capacity(receipts.len());
        let mut expired = Vec::new();
        let mut lost = 0u64;
        let (generation, covered) = {
            let mut leases = lock(&self.leases);
            let open = leases.channel_open();
            for r in &receipts {
                let r = r.get::<AmqpReceipt>()?;
                let lease = (r.generation == leases.generation && open)
                    .then(|| leases.held.remove(&r.tag))
                    .flatten();
                match lease {
                    Some(l) if l.deadline > now => acking.push((r.tag, l.acker)),
                    Some(l) => {
                        // Past its lease but not swept yet: it goes back, as it would have.
                        leases.expired += 1;
                        expired.push((r.tag, l.acker));
                        lost += 1;
                    }
                    None => lost += 1,
                }
            }
            acking.sort_unstable_by_key(|(tag, _)| *tag);
            let tags: Vec<u64> = acking.iter().map(|(tag, _)| *tag).collect();
            (leases.generation, leases.covered_by_one_ack(&tags))
        };
        let expired_tags: Vec<u64> = expired.iter().map(|(tag, _)| *tag).collect();
        leases::nack_all(expired.into_iter().map(|(_, a)| a).collect()).await;
        // The lowest `covered` tags go in one frame (when that saves any), the rest one frame each.
        let (one, each) = if covered >= 2 {
            acking.split_at(covered)
        } else {
            acking.split_at(0)
        };
        let multiple = async {
            match one.last() {
                Some((_, a)) => {
                    let sent = a.ack(BasicAckOptions { multiple: true }).await;
                    if matches!(sent, Ok(true)) {
                        one.len() as u64
                    } else {
                        0
                    }
                }
                None => 0,
            }
        };
        let singles = futures_util::future::join_all(
            each.iter()
                .map(|(_, a)| a.ack(BasicAckOptions { multiple: false })),
        );
        let (acked_together, results) = futures_util::join!(multiple, singles);
        let acked =
            acked_together + results.iter().filter(|r| matches!(r, Ok(true))).count() as u64;
        lock(&self.leases).settled(
            generation,
            acking.iter().map(|(tag, _)| *tag).chain(expired_tags),
        );
        Ok(AckOutcome {
            acked,
            lease_lost: lost + (acking.len() as u64 - acked),
        })
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        let mut now_back = Vec::new();
        let mut held = 0u64;
        let generation = {
            let mut leases = lock(&self.leases);
            let open = leases.channel_open();
            let due = Instant::now() + delay;
            for r in &receipts {
                let r = r.get::<AmqpReceipt>()?;
                if r.generation != leases.generation || !open {
                    continue;
                }
                if let Some(l) = leases.held.remove(&r.tag) {
                    held += 1;
                    if delay.is_zero() {
                        now_back.push((r.tag, l.acker));
                    } else {
                        leases.releasing.push((due, r.tag, l.acker));
                    }
                }
            }
            leases.generation
        };
        if now_back.is_empty() {
            return Ok(held);
        }
        let n = now_back.len() as u64;
        let tags: Vec<u64> = now_back.iter().map(|(tag, _)| *tag).collect();
        let sent = leases::nack_all(now_back.into_iter().map(|(_, a)| a).collect()).await;
        lock(&self.leases).settled(generation, tags);
        Ok(held - (n - sent))
    }

    async fn extend(
        &self,
        receipts: &mut [Receipt],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        let open = leases.channel_open();
        let generation = leases.generation;
        let mut flags = Vec::with_capacity(receipts.len());
        for r in receipts.iter() {
            let r = r.get::<AmqpReceipt>()?;
            let ok = open
                && r.generation == generation
                && match leases.held.get_mut(&r.tag) {
                    Some(l) if l.deadline > now => {
                        l.deadline = now + lease;
                        true
                    }
                    _ => false,
                };
            flags.push(ok);
        }
        Ok(flags)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let visible = self.ready().await?;
        Ok(Depth {
            visible,
            in_flight: self.unacked().await,
        })
    }

    async fn stop_receiving(&self) -> Result<(), QueueError> {
        let mut side = self.consumer.lock().await;
        side.stopped = true;
        let (Some(link), Some(mut consumer)) = (side.link.take(), side.consumer.take()) else {
            return Ok(());
        };
        if !link.alive() {
            return Ok(());
        }
        // Bounded: a stopping consumer must exit within its drain, and a node under load took seconds to answer
        // cancel-ok. Without the answer nothing is lost: what the broker still sends is never handed out, and
        // it goes back when the channel closes at exit.
        let cancel = link
            .channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default());
        match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
            Ok(done) => done.map_err(|e| QueueError::from(self.err(&e, "basic.cancel")))?,
            Err(_) => {
                tracing::warn!("no cancel-ok within {CANCEL_TIMEOUT:?}: stopping without it");
                side.link = Some(link);
                return Ok(());
            }
        }
        // What the broker sent before the cancel took effect, never handed out: give it back now.
        let mut back = Vec::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(CANCEL_TIMEOUT, consumer.next()).await {
            back.push(d.acker);
        }
        leases::nack_all(back).await;
        // The link stays open for the held messages' acks (the lease table has its channel).
        side.link = Some(link);
        Ok(())
    }

    fn hold_at_most(&self, messages: usize) {
        self.window.store(messages, Ordering::Relaxed);
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

    #[test]
    fn the_password_comes_from_the_environment_and_is_never_shown() {
        let url = AmqpUrl::parse("//app@127.0.0.1/q?management=off").unwrap();
        let q = AmqpQueue::with_env(url, OpenMode::Create, &|k| {
            (k == "AMQP_PASSWORD").then(|| "hunter2".to_string())
        })
        .unwrap();
        assert_eq!(q.password.expose(), "hunter2");
        assert!(!format!("{q:?}").contains("hunter2"));
        assert!(!q.describe().contains("hunter2"));
        let url = AmqpUrl::parse("//127.0.0.1/q").unwrap();
        let q = AmqpQueue::with_env(url, OpenMode::Create, &|_| None).unwrap();
        assert_eq!(q.password.expose(), "guest");
    }

    #[test]
    fn an_unusable_ca_file_is_a_usage_error_that_names_it() {
        let url = AmqpUrl::parse("//h/q?tls=true&ca=/nonexistent/ca.pem").unwrap();
        let e = AmqpQueue::with_env(url, OpenMode::Create, &|_| None).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::Invalid);
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}

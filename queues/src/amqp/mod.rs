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
//! - receive: RabbitMQ pushes. The consumer's channel gets `basic.qos` with the largest window the consumer
//!   asks for at its first receive (`--max-in-flight`, capped by `--batch`), then `basic.consume`;
//!   `receive` hands out what has arrived, waiting up to `wait` for the first.
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

mod error;
mod leases;
pub mod management;
pub mod url;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
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
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.url.host, self.url.port)
    }

    fn err(&self, e: &lapin::Error, op: &'static str) -> AmqpError {
        AmqpError::from_lapin(e, op, &self.addr())
    }

    /// Connects, opens a channel and declares the queue (passively with [`OpenMode::Existing`]).
    async fn connect(&self, role: &str) -> Result<Link, AmqpError> {
        let uri = lapin::uri::AMQPUri {
            scheme: if self.url.tls {
                lapin::uri::AMQPScheme::AMQPS
            } else {
                lapin::uri::AMQPScheme::AMQP
            },
            authority: lapin::uri::AMQPAuthority {
                userinfo: lapin::uri::AMQPUserInfo {
                    username: self.url.user.clone(),
                    password: self.password.expose().to_string(),
                },
                host: self
                    .url
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: self.url.port,
            },
            vhost: self.url.vhost.clone(),
            query: lapin::uri::AMQPQueryString {
                // Seconds: a broker that vanishes without closing the socket is noticed within two beats.
                heartbeat: Some(10),
                connection_timeout: Some(CONNECT_TIMEOUT.as_millis() as u64),
                ..Default::default()
            },
        };
        let props = ConnectionProperties::default()
            .with_connection_name(format!("queue-workload {role}").into());
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let connect = async {
            let conn = lapin::DefaultConnectionBuilder::new()
                .map_err(|e| self.err(&e, "the connection"))?
                .with_uri(uri)
                .with_properties(props)
                .with_tls_config(tls)
                .connect()
                .await
                .map_err(|e| self.err(&e, "the connection"))?;
            self.ensure_queue(&conn).await?;
            let channel = self.channel(&conn).await?;
            Ok(Link { conn, channel })
        };
        tokio::time::timeout(CONNECT_TIMEOUT * 2, connect)
            .await
            .map_err(|_| AmqpError::Timeout {
                what: "the connection",
                secs: (CONNECT_TIMEOUT * 2).as_secs(),
                blocked: false,
            })?
    }

    async fn channel(&self, conn: &Connection) -> Result<Channel, AmqpError> {
        conn.create_channel()
            .await
            .map_err(|e| self.err(&e, "a channel"))
    }

    /// Declares the queue: passively, and when it is missing (and this open may create it) durably, one
    /// client at a time. Why the lock: when a producer and consumers start together, their declares of a new
    /// quorum queue race, and RabbitMQ 3.10 answered one of them 541 INTERNAL_ERROR, which closes that
    /// client's whole connection (it recovered on its retry, but logged an error and counted a failure). The
    /// lock is an exclusive queue: a second connection declaring it gets 405 RESOURCE_LOCKED and waits.
    async fn ensure_queue(&self, conn: &Connection) -> Result<(), AmqpError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let lock_name: String = format!(
            "{}.declare-lock",
            self.url.queue.chars().take(200).collect::<String>()
        );
        loop {
            // A refused declare closes its channel, so each attempt has its own.
            let ch = self.channel(conn).await?;
            match self.declare(&ch, true).await {
                Ok(_) => {
                    let _ = ch.close(200, "OK".into()).await;
                    return Ok(());
                }
                Err(AmqpError::Refused { code: 404, .. }) if self.mode == OpenMode::Create => {}
                Err(e) => return Err(e),
            }
            let lock = self.channel(conn).await?;
            let locked = lock
                .queue_declare(
                    lock_name.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match locked {
                Ok(_) => {
                    let made = self.declare(&lock, false).await;
                    let _ = lock
                        .queue_delete(lock_name.as_str().into(), Default::default())
                        .await;
                    let _ = lock.close(200, "OK".into()).await;
                    return made.map(|_| ());
                }
                Err(e) => match self.err(&e, "queue.declare (creation lock)") {
                    AmqpError::Refused { code: 405, .. } if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return Err(other),
                },
            }
        }
    }

    /// Declares the queue, passively (it must exist) or durably (creating it); returns its ready count.
    async fn declare(&self, channel: &Channel, passive: bool) -> Result<u64, AmqpError> {
        let mut args = FieldTable::default();
        if self.url.queue_type == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let options = QueueDeclareOptions {
            passive,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let q = channel
            .queue_declare(self.url.queue.as_str().into(), options, args)
            .await
            .map_err(|e| self.err(&e, "queue.declare"))?;
        Ok(u64::from(q.message_count()))
    }

    /// The consumer's link and consumer, (re)made when missing or dead. What an old channel held is the
    /// broker's again (it requeued it), so the lease table starts a new generation.
    async fn ensure_consumer(&self, side: &mut ConsumerSide, max: usize) -> Result<(), AmqpError> {
        if side.link.as_ref().is_some_and(Link::alive) && side.consumer.is_some() {
            return Ok(());
        }
        side.link = None;
        side.consumer = None;
        if side.prefetch == 0 {
            side.prefetch = max.clamp(1, usize::from(u16::MAX)) as u16;
        }
        let link = self.connect("consumer").await?;
        link.channel
            .basic_qos(side.prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| self.err(&e, "basic.qos"))?;
        let consumer = link
            .channel
            .basic_consume(
                self.url.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.err(&e, "basic.consume"))?;
        lock(&self.leases).new_channel(link.channel.clone());
        if !side.sweeping {
            side.sweeping = true;
            leases::spawn_sweeper(Arc::downgrade(&self.leases));
        }
        side.link = Some(link);
        side.consumer = Some(consumer);
        Ok(())
    }

    async fn publish_inner(&self, bodies: &[Vec<u8>]) -> Result<(), AmqpError> {
        if let Some(b) = bodies.iter().find(|b| b.len() > self.url.max_msg_size) {
            return Err(AmqpError::TooLarge {
                size: b.len(),
                max: self.url.max_msg_size,
            });
        }
        let mut side = self.producer.lock().await;
        if !side.as_ref().is_some_and(Link::alive) {
            *side = None;
            let link = self.connect("producer").await?;
            link.channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.err(&e, "confirm.select"))?;
            *side = Some(link);
        }
        let Some(link) = side.as_ref() else {
            return Ok(());
        };
        let result = self.publish_on(link, bodies).await;
        if result.is_err() {
            *side = None;
        }
        result
    }

    async fn publish_on(&self, link: &Link, bodies: &[Vec<u8>]) -> Result<(), AmqpError> {
        let queue: lapin::types::ShortString = self.url.queue.as_str().into();
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let props = BasicProperties::default().with_delivery_mode(2);
        // All the batch's frames go out in one go (join_all polls in order, so the confirm sequence numbers
        // follow the bodies); then every confirm is awaited.
        let sent = futures_util::future::join_all(bodies.iter().map(|b| {
            link.channel
                .basic_publish("".into(), queue.clone(), options, b, props.clone())
        }));
        let blocked = || link.conn.status().blocked();
        let timeout = |what| AmqpError::Timeout {
            what,
            secs: PUBLISH_TIMEOUT.as_secs(),
            blocked: blocked(),
        };
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let sent = tokio::time::timeout_at(deadline, sent)
            .await
            .map_err(|_| timeout("the publish"))?;
        let mut confirms = Vec::with_capacity(sent.len());
        for s in sent {
            confirms.push(s.map_err(|e| self.err(&e, "basic.publish"))?);
        }
        let confirmed = tokio::time::timeout_at(deadline, futures_util::future::join_all(confirms))
            .await
            .map_err(|_| timeout("the publish confirms"))?;
        let mut nacked = 0;
        for c in confirmed {
            match c.map_err(|e| self.err(&e, "basic.publish"))? {
                lapin::Confirmation::Ack(None) => {}
                lapin::Confirmation::Ack(Some(returned)) => {
                    return Err(AmqpError::Returned(
                        format!("{} {}", returned.reply_code, returned.reply_text),
                        self.url.queue.clone(),
                    ));
                }
                lapin::Confirmation::Nack(_) => nacked += 1,
                lapin::Confirmation::NotRequested => {
                    return Err(AmqpError::Unreachable {
                        addr: self.addr(),
                        reason: "the channel is not in confirm mode".into(),
                    });
                }
            }
        }
        if nacked > 0 {
            return Err(AmqpError::Nacked(nacked));
        }
        Ok(())
    }

    /// The ready count, from a passive declare on the admin link (made, or remade, on demand).
    async fn ready(&self) -> Result<u64, AmqpError> {
        let mut side = self.admin.lock().await;
        if !side.as_ref().is_some_and(Link::alive) {
            *side = None;
            *side = Some(self.connect("depth").await?);
        }
        let Some(link) = side.as_ref() else {
            return Ok(0);
        };
        let declared =
            tokio::time::timeout(CONNECT_TIMEOUT, self.declare(&link.channel, true)).await;
        match declared {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => {
                *side = None;
                Err(e)
            }
            Err(_) => {
                *side = None;
                Err(AmqpError::Timeout {
                    what: "queue.declare (passive)",
                    secs: CONNECT_TIMEOUT.as_secs(),
                    blocked: false,
                })
            }
        }
    }

    /// The unacked count from the management API; `None` (logged once) when it cannot be had.
    async fn unacked(&self) -> Option<u64> {
        let m = self.management.as_ref()?;
        match m.queue_stats().await {
            Ok(s) => s.unacked,
            Err(e) => {
                if !self.management_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "no unacked count from the management API: depth reports the ready count only (set management=off to silence this)");
                } else {
                    tracing::debug!(error = %e, "no unacked count from the management API");
                }
                None
            }
        }
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
        let mut ackers = Vec::with_capacity(receipts.len());
        let mut expired = Vec::new();
        let mut lost = 0u64;
        {
            let mut leases = lock(&self.leases);
            let open = leases.channel_open();
            for r in &receipts {
                let r = r.get::<AmqpReceipt>()?;
                let lease = (r.generation == leases.generation && open)
                    .then(|| leases.held.remove(&r.tag))
                    .flatten();
                match lease {
                    Some(l) if l.deadline > now => ackers.push(l.acker),
                    Some(l) => {
                        // Past its lease but not swept yet: it goes back, as it would have.
                        leases.expired += 1;
                        expired.push(l.acker);
                        lost += 1;
                    }
                    None => lost += 1,
                }
            }
        }
        leases::nack_all(expired).await;
        let results = futures_util::future::join_all(
            ackers
                .iter()
                .map(|a| a.ack(lapin::options::BasicAckOptions { multiple: false })),
        )
        .await;
        let acked = results.iter().filter(|r| matches!(r, Ok(true))).count() as u64;
        Ok(AckOutcome {
            acked,
            lease_lost: lost + (results.len() as u64 - acked),
        })
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        let mut now_back = Vec::new();
        let mut held = 0u64;
        {
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
                        now_back.push(l.acker);
                    } else {
                        leases.releasing.push((due, l.acker));
                    }
                }
            }
        }
        if now_back.is_empty() {
            return Ok(held);
        }
        let n = now_back.len() as u64;
        let sent = leases::nack_all(now_back).await;
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
        link.channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(|e| QueueError::from(self.err(&e, "basic.cancel")))?;
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

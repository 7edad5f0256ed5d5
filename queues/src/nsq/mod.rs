//! The NSQ backend: this suite's own client for nsqd's TCP protocol (V2), depth from nsqd's HTTP `/stats`.
//!
//! Why our own client: the ecosystem's async crate (`tokio-nsq` 0.14) cannot send `RDY 0`/`CLS` (so a
//! consumer cannot drain), drops commands queued while a connection is down, ends on error frames it does not
//! know, and does not verify TLS certificates by default; the README's dependency section has the evidence.
//! The protocol is small, and the frame codec is shared with the fake nsqd the tests run against.
//!
//! How the queue contract maps onto NSQ:
//! - publish: `PUB` for one message, `MPUB` for more (split to respect nsqd's max body size); `Ok` only after
//!   nsqd's `OK` for every command of the batch.
//! - receive: NSQ pushes. The connection is `SUB`scribed with `RDY` set to the largest window the consumer
//!   has asked for (messages it holds plus `max`), so nsqd never has more in flight to us than the consumer
//!   wants; `receive` returns what has arrived, waiting up to `wait` for the first.
//! - lease: IDENTIFY's `msg_timeout` is the lease (nsqd accepts 1 s to 15 min); `extend` is `TOUCH`, which
//!   restarts that timeout; `ack` is `FIN`; `release` is `REQ` with the delay.
//! - Receipts carry the connection's generation: nsqd only accepts FIN/REQ/TOUCH on the connection that got
//!   the message, so a receipt from a connection that has since dropped is reported as lease lost (nsqd will
//!   deliver that message again once its timeout passes), never sent to the wrong connection.
//! - [`Queue::stop_receiving`] sends `RDY 0`, gives back (REQ 0) what arrived but was never handed out, then
//!   `CLS` and waits for `CLOSE_WAIT`; FIN/REQ/TOUCH of held messages still work after it, as in nsqd.
//! - depth: `GET /stats?format=json&topic=…&channel=…` on nsqd's HTTP port: channel `depth` is `visible`,
//!   `in_flight_count` is `in_flight`.
//!
//! Connections are made lazily, so a producer or consumer starts even while nsqd is down, and made again
//! after a failure on the next call (the binaries retry with back-off).

mod chunks;
pub mod codec;
mod conn;
mod error;
pub mod stats;
mod tls;
pub mod url;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

use self::chunks::chunks;
use self::codec::{Message, MessageId};
use self::conn::{Conn, ConnectOptions, await_reply};
pub use self::error::NsqError;
use self::url::NsqUrl;
pub use self::url::{BACKEND, NsqBackend};
use super::{AckOutcome, Delivery, Depth, ErrorKind, Queue, QueueError, Receipt};

/// This backend's receipt: the nsqd connection the message came on (FIN/REQ/TOUCH only work there) and
/// nsqd's message id. `attempts` tells a redelivery of the same id apart from the delivery it was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NsqReceipt {
    generation: u64,
    id: [u8; 16],
    attempts: u16,
}

/// How long a publish waits for nsqd's OK.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop_receiving` waits for CLOSE_WAIT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one HTTP call (stats, create, lookup).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The AUTH secret: the suite's one secret type, which never prints its value.
pub use workload::redact::Secret;

/// The producer's connection, made on the first publish.
#[derive(Default)]
struct ProducerSide {
    conn: Option<Conn>,
    /// Whether the topic and channel were created over HTTP, so that depth shows before any consumer.
    created: bool,
    /// Whether a failure to create them was logged: once is enough, the publish errors that follow say the rest
    /// (each retry logged it again: two lines per retry against a dead nsqd).
    create_warned: bool,
}

/// The consumer's connection, made on the first receive.
#[derive(Default)]
struct ConsumerSide {
    conn: Option<Arc<Conn>>,
    rx: Option<mpsc::UnboundedReceiver<Message>>,
    /// The RDY count sent on the current connection.
    rdy: u32,
    /// The window the consumer has asked for (held + max): RDY on every new connection.
    window: u32,
    stopped: bool,
}

/// A queue on nsqd: one topic, one channel.
pub struct NsqQueue {
    url: NsqUrl,
    http: reqwest::Client,
    tls: Option<tls::TlsSettings>,
    auth: Option<Secret>,
    producer: Mutex<ProducerSide>,
    consumer: Mutex<ConsumerSide>,
    /// The consumer's current connection, for ack/release/extend without waiting on a receive.
    current: std::sync::Mutex<Option<Arc<Conn>>>,
    generation: AtomicU64,
    /// Messages handed to the consumer and not yet FIN'd or REQ'd on the current connection: id → attempts
    /// of the delivery handed out. A receipt whose attempts differ is for an earlier delivery of the same id
    /// (its lease lapsed and nsqd sent the message again), so it is stale.
    held: std::sync::Mutex<HashMap<[u8; 16], u16>>,
}

impl std::fmt::Debug for NsqQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsqQueue")
            .field("url", &self.url.describe())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn nsq_err(e: NsqError) -> QueueError {
    e.into()
}

impl NsqQueue {
    /// Prepares the queue; connects nothing yet. The AUTH secret comes from `NSQ_AUTH_SECRET`.
    ///
    /// # Errors
    /// [`NsqError::Tls`] when `tls=true` and the CA file is unusable.
    pub fn new(url: NsqUrl) -> Result<NsqQueue, QueueError> {
        let tls = if url.tls {
            // At set-up, a TLS failure is an unusable CA file: a usage error, not a service that is down.
            Some(
                tls::TlsSettings::new(url.ca.as_deref())
                    .map_err(|e| QueueError::new(ErrorKind::Invalid, e))?,
            )
        } else {
            None
        };
        let auth = std::env::var("NSQ_AUTH_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        let http = workload::tls::http_client_builder(Vec::new(), "nsqd HTTP")
            .map_err(|e| {
                nsq_err(NsqError::Http {
                    url: String::new(),
                    reason: e.to_string(),
                })
            })?
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| {
                nsq_err(NsqError::Http {
                    url: String::new(),
                    reason: e.to_string(),
                })
            })?;
        Ok(NsqQueue {
            url,
            http,
            tls,
            auth,
            producer: Mutex::default(),
            consumer: Mutex::default(),
            current: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            held: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// nsqd's (TCP, HTTP) addresses: from the URL, or found through nsqlookupd.
    async fn nsqd_addrs(&self) -> Result<(String, String), NsqError> {
        if let (Some(tcp), Some(http)) = (&self.url.tcp, &self.url.http) {
            return Ok((tcp.clone(), http.clone()));
        }
        let mut last = None;
        for l in &self.url.lookupd {
            match self.lookup(l).await {
                Ok(found) => return Ok(found),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(NsqError::NoProducers {
            topic: self.url.topic.clone(),
            lookupd: self.url.lookupd.join(","),
        }))
    }

    /// Asks one nsqlookupd which nsqd has the topic (`GET /lookup?topic=`, 1.x and 0.3.x shapes).
    async fn lookup(&self, lookupd: &str) -> Result<(String, String), NsqError> {
        #[derive(serde::Deserialize)]
        struct Producer {
            broadcast_address: String,
            tcp_port: u16,
            http_port: u16,
        }
        #[derive(serde::Deserialize)]
        struct Lookup {
            producers: Option<Vec<Producer>>,
        }
        #[derive(serde::Deserialize)]
        struct Wrapped {
            data: Lookup,
        }
        let url = format!("http://{lookupd}/lookup?topic={}", self.url.topic);
        let body = self.http_call(reqwest::Method::GET, &url).await?;
        let found: Lookup = match serde_json::from_slice::<Wrapped>(&body) {
            Ok(w) => w.data,
            Err(_) => serde_json::from_slice(&body).map_err(|e| NsqError::Http {
                url: url.clone(),
                reason: format!("not a lookup answer: {e}"),
            })?,
        };
        let p = found
            .producers
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| NsqError::NoProducers {
                topic: self.url.topic.clone(),
                lookupd: lookupd.to_string(),
            })?;
        Ok((
            format!("{}:{}", p.broadcast_address, p.tcp_port),
            format!("{}:{}", p.broadcast_address, p.http_port),
        ))
    }

    /// One HTTP call; a non-2xx answer is an error carrying nsqd's `{"message":…}`.
    async fn http_call(&self, method: reqwest::Method, url: &str) -> Result<Vec<u8>, NsqError> {
        let err = |reason: String| NsqError::Http {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .http
            .request(method, url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            let text = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(err(format!("{status}: {text}")));
        }
        Ok(body.to_vec())
    }

    fn options<'a>(&'a self, addr: &'a str) -> ConnectOptions<'a> {
        ConnectOptions {
            addr,
            msg_timeout: None,
            tls: self.tls.as_ref(),
            auth_secret: self.auth.as_ref(),
            subscribe: None,
            generation: self.generation.fetch_add(1, Ordering::AcqRel) + 1,
        }
    }

    /// Creates the topic and channel, so the channel's depth counts messages before any consumer connects.
    async fn create_topic_and_channel(&self, http: &str) -> Result<(), NsqError> {
        let u = &self.url;
        self.http_call(
            reqwest::Method::POST,
            &format!("http://{http}/topic/create?topic={}", u.topic),
        )
        .await?;
        self.http_call(
            reqwest::Method::POST,
            &format!(
                "http://{http}/channel/create?topic={}&channel={}",
                u.topic, u.channel
            ),
        )
        .await?;
        Ok(())
    }

    async fn publish_inner(&self, bodies: &[Vec<u8>]) -> Result<(), NsqError> {
        let max = self.url.max_msg_size;
        if let Some(b) = bodies
            .iter()
            .find(|b| b.len() > max as usize || b.is_empty())
        {
            if b.is_empty() {
                return Err(NsqError::Protocol("nsqd refuses empty messages".into()));
            }
            return Err(NsqError::MessageTooBig { size: b.len(), max });
        }
        let mut side = self.producer.lock().await;
        if side.conn.as_ref().is_none_or(|c| !c.is_alive()) {
            side.conn = None;
            let (tcp, http) = self.nsqd_addrs().await?;
            if !side.created {
                match self.create_topic_and_channel(&http).await {
                    Ok(()) => side.created = true,
                    Err(e) if !side.create_warned => {
                        side.create_warned = true;
                        tracing::warn!(error = %e, "could not create the topic and channel; depth stays empty until a consumer subscribes")
                    }
                    Err(e) => tracing::debug!(error = %e, "could not create the topic and channel"),
                }
            }
            side.conn = Some(Conn::connect(self.options(&tcp)).await?);
        }
        let Some(conn) = side.conn.as_ref() else {
            return Err(NsqError::Lost("no connection".into()));
        };
        let result = async {
            let mut replies = Vec::new();
            let mut cmd = Vec::new();
            for chunk in chunks(bodies, codec::DEFAULT_MAX_BODY_SIZE as usize) {
                cmd.clear();
                if chunk.len() == 1 {
                    codec::encode_pub(&mut cmd, &self.url.topic, &chunk[0]);
                } else {
                    codec::encode_mpub(&mut cmd, &self.url.topic, chunk);
                }
                replies.push(conn.send_request(&cmd).await?);
            }
            for rx in replies {
                let ok = await_reply(rx, "the publish", PUBLISH_TIMEOUT).await?;
                if ok != b"OK" {
                    return Err(NsqError::Protocol(format!(
                        "publish answered {:?}",
                        String::from_utf8_lossy(&ok)
                    )));
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            side.conn = None;
        }
        result
    }

    /// The consumer's connection, (re)made when missing or dead. Messages of a dead connection are dropped
    /// here: nsqd redelivers them after their timeout, and they could not be FIN'd on a new connection.
    async fn consumer_conn(
        &self,
        side: &mut ConsumerSide,
        lease: Duration,
    ) -> Result<Arc<Conn>, NsqError> {
        if let Some(c) = side.conn.as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        side.conn = None;
        side.rx = None;
        side.rdy = 0;
        self.held_map().clear();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let (tcp, _) = self.nsqd_addrs().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut opts = self.options(&tcp);
        opts.msg_timeout = Some(lease);
        opts.subscribe = Some((&self.url.topic, &self.url.channel, tx));
        let conn = Arc::new(Conn::connect(opts).await?);
        side.conn = Some(conn.clone());
        side.rx = Some(rx);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], u16>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Option<Arc<Conn>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends one command per receipt still held on the current connection; returns (sent, stale, a flag per
    /// receipt). `settle` (FIN, REQ) ends the hold; TOUCH keeps it.
    async fn per_receipt(
        &self,
        receipts: &[Receipt],
        settle: bool,
        mut encode: impl FnMut(&mut Vec<u8>, &MessageId),
    ) -> Result<(u64, u64, Vec<bool>), QueueError> {
        let conn = self.current().filter(|c| c.is_alive());
        let mut buf = Vec::with_capacity(receipts.len() * 32);
        let mut flags = Vec::with_capacity(receipts.len());
        let mut sent = 0u64;
        {
            let mut held = self.held_map();
            for r in receipts {
                let NsqReceipt {
                    generation,
                    id,
                    attempts,
                } = r.get::<NsqReceipt>()?;
                let ours = conn.as_ref().is_some_and(|c| c.generation == *generation)
                    && held.get(id) == Some(attempts);
                if ours {
                    if settle {
                        held.remove(id);
                    }
                    encode(&mut buf, &MessageId(*id));
                    sent += 1;
                }
                flags.push(ours);
            }
        }
        if let (Some(conn), false) = (conn, buf.is_empty()) {
            conn.send(&buf).await.map_err(nsq_err)?;
        }
        Ok((sent, receipts.len() as u64 - sent, flags))
    }
}

#[async_trait]
impl Queue for NsqQueue {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        self.publish_inner(&bodies).await.map_err(nsq_err)
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
        let conn = self
            .consumer_conn(&mut side, lease)
            .await
            .map_err(nsq_err)?;
        let max_rdy = match conn.negotiated.max_rdy_count {
            0 => codec::DEFAULT_MAX_RDY_COUNT,
            n => n,
        };
        let window = (self.held_map().len() + max).min(max_rdy as usize) as u32;
        side.window = side.window.max(window);
        if side.rdy < side.window {
            let mut cmd = Vec::new();
            codec::encode_rdy(&mut cmd, side.window);
            conn.send(&cmd).await.map_err(nsq_err)?;
            side.rdy = side.window;
        }
        let Some(rx) = side.rx.as_mut() else {
            return Ok(Vec::new());
        };
        let mut got = Vec::new();
        while got.len() < max {
            match rx.try_recv() {
                Ok(m) => got.push(m),
                Err(_) => break,
            }
        }
        if got.is_empty()
            && !wait.is_zero()
            && let Ok(Some(m)) = tokio::time::timeout(wait, rx.recv()).await
        {
            got.push(m);
            while got.len() < max {
                match rx.try_recv() {
                    Ok(m) => got.push(m),
                    Err(_) => break,
                }
            }
        }
        let generation = conn.generation;
        let mut held = self.held_map();
        Ok(got
            .into_iter()
            .map(|m| {
                held.insert(m.id.0, m.attempts);
                Delivery {
                    body: m.body,
                    receipt: Receipt::new(NsqReceipt {
                        generation,
                        id: m.id.0,
                        attempts: m.attempts,
                    }),
                    deliveries: u32::from(m.attempts),
                }
            })
            .collect())
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        let (sent, stale, _) = self.per_receipt(&receipts, true, codec::encode_fin).await?;
        // FIN is not answered on success; a refused one (the message had timed out on nsqd) arrives later as
        // E_FIN_FAILED and is reported with the next ack.
        let failed = self.current().map_or(0, |c| c.take_failed_ids()).min(sent);
        Ok(AckOutcome {
            acked: sent - failed,
            lease_lost: stale + failed,
        })
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        let ms = delay.as_millis().min(u128::from(u32::MAX)) as u64;
        let (sent, _, _) = self
            .per_receipt(&receipts, true, |buf, id| codec::encode_req(buf, id, ms))
            .await?;
        Ok(sent)
    }

    async fn extend(
        &self,
        receipts: &mut [Receipt],
        _lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        // TOUCH restarts the connection's msg_timeout, which IDENTIFY set to the lease.
        let (_, _, flags) = self
            .per_receipt(receipts, false, codec::encode_touch)
            .await?;
        Ok(flags)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let (_, http) = self.nsqd_addrs().await.map_err(nsq_err)?;
        let u = &self.url;
        let body = self
            .http_call(
                reqwest::Method::GET,
                &format!(
                    "http://{http}/stats?format=json&topic={}&channel={}&include_clients=false&include_mem=false",
                    u.topic, u.channel
                ),
            )
            .await
            .map_err(nsq_err)?;
        let d = stats::parse_stats(&body, &u.topic, &u.channel).map_err(|reason| {
            nsq_err(NsqError::Http {
                url: format!("http://{http}/stats"),
                reason,
            })
        })?;
        Ok(Depth {
            visible: d.depth,
            in_flight: Some(d.in_flight),
        })
    }

    async fn stop_receiving(&self) -> Result<(), QueueError> {
        let mut side = self.consumer.lock().await;
        side.stopped = true;
        let Some(conn) = side.conn.clone().filter(|c| c.is_alive()) else {
            return Ok(());
        };
        let mut cmd = Vec::new();
        codec::encode_rdy(&mut cmd, 0);
        conn.send(&cmd).await.map_err(nsq_err)?;
        cmd.clear();
        codec::encode_cls(&mut cmd);
        let rx = conn.send_request(&cmd).await.map_err(nsq_err)?;
        let answer = await_reply(rx, "CLS", CLOSE_TIMEOUT)
            .await
            .map_err(nsq_err)?;
        if answer != b"CLOSE_WAIT" {
            tracing::debug!(answer = %String::from_utf8_lossy(&answer), "unexpected answer to CLS");
        }
        // Everything nsqd sent before CLOSE_WAIT has been read: give back what was never handed out.
        cmd.clear();
        if let Some(rx) = side.rx.as_mut() {
            while let Ok(m) = rx.try_recv() {
                codec::encode_req(&mut cmd, &m.id, 0);
            }
        }
        if !cmd.is_empty() {
            conn.send(&cmd).await.map_err(nsq_err)?;
        }
        Ok(())
    }

    fn max_message_size(&self) -> Option<usize> {
        Some(self.url.max_msg_size as usize)
    }

    fn describe(&self) -> String {
        self.url.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

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
//! - `connections=N`: the producer spreads its publishes over N connections (a publish takes a free one; all
//!   commands of one publish go on one connection), the consumer subscribes on N and splits its RDY window
//!   across them (`consumer.rs`). nsqd serves each connection on one goroutine: one caps the rate.
//!
//! Connections are made lazily, so a producer or consumer starts even while nsqd is down, and made again
//! after a failure on the next call (the binaries retry with back-off).

mod chunks;
pub mod codec;
mod conn;
mod consumer;
mod error;
pub mod stats;
mod tls;
pub mod url;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use self::chunks::chunks;
use self::conn::{Conn, ConnectOptions, await_reply};
use self::consumer::ConsumerSide;
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

/// Whether the producer created the topic and channel.
#[derive(Default)]
struct Creation {
    /// Whether the topic and channel were created over HTTP, so that depth shows before any consumer.
    created: bool,
    /// Whether a failure to create them was logged: once is enough, the publish errors that follow say the rest
    /// (each retry logged it again: two lines per retry against a dead nsqd).
    create_warned: bool,
}

/// A queue on nsqd: one topic, one channel.
pub struct NsqQueue {
    url: NsqUrl,
    http: reqwest::Client,
    tls: Option<tls::TlsSettings>,
    auth: Option<Secret>,
    /// The producer's connections (`connections=N`), each made on its first publish.
    producers: Vec<Mutex<Option<Arc<Conn>>>>,
    /// Where the next publish starts looking for a free connection.
    next_producer: AtomicUsize,
    creation: Mutex<Creation>,
    consumer: Mutex<ConsumerSide>,
    /// The consumer's live connections, for ack/release/extend without waiting on a receive.
    live: std::sync::Mutex<Vec<Arc<Conn>>>,
    generation: AtomicU64,
    /// Messages handed to the consumer and not yet FIN'd or REQ'd: id → (generation of the connection it came
    /// on, attempts of the delivery handed out). A receipt whose attempts differ is for an earlier delivery
    /// of the same id (its lease lapsed and nsqd sent the message again, maybe on another connection), so it
    /// is stale.
    held: std::sync::Mutex<HashMap<[u8; 16], (u64, u16)>>,
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
        let n = url.connections.max(1);
        Ok(NsqQueue {
            producers: (0..n).map(|_| Mutex::new(None)).collect(),
            next_producer: AtomicUsize::new(0),
            creation: Mutex::default(),
            consumer: Mutex::new(ConsumerSide::new(n)),
            live: std::sync::Mutex::new(Vec::new()),
            url,
            http,
            tls,
            auth,
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
        // A free connection if there is one, else the next in turn (its commands pipeline behind the others').
        let n = self.producers.len();
        let first = self.next_producer.fetch_add(1, Ordering::Relaxed) % n;
        let mut at = first;
        let mut slot = None;
        for i in 0..n {
            if let Ok(s) = self.producers[(first + i) % n].try_lock() {
                at = (first + i) % n;
                slot = Some(s);
                break;
            }
        }
        let mut slot = match slot {
            Some(s) => s,
            None => self.producers[first].lock().await,
        };
        if slot.as_ref().is_none_or(|c| !c.is_alive()) {
            *slot = None;
            let (tcp, http) = self.nsqd_addrs().await?;
            self.create_once(&http).await;
            *slot = Some(Arc::new(Conn::connect(self.options(&tcp)).await?));
        }
        let Some(conn) = slot.clone() else {
            return Err(NsqError::Lost("no connection".into()));
        };
        let result = async {
            // Written while the slot is held, so the commands of one publish are not interleaved with another's.
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
            drop(slot);
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
            // Drop this connection (not one made since by another publish): the next publish makes a new one.
            let mut slot = self.producers[at].lock().await;
            if slot
                .as_ref()
                .is_some_and(|c| c.generation == conn.generation)
            {
                *slot = None;
            }
        }
        result
    }

    /// Creates the topic and channel over HTTP once, before the first connection; a failure is logged once.
    async fn create_once(&self, http: &str) {
        let mut side = self.creation.lock().await;
        if side.created {
            return;
        }
        match self.create_topic_and_channel(http).await {
            Ok(()) => side.created = true,
            Err(e) if !side.create_warned => {
                side.create_warned = true;
                tracing::warn!(error = %e, "could not create the topic and channel; depth stays empty until a consumer subscribes")
            }
            Err(e) => tracing::debug!(error = %e, "could not create the topic and channel"),
        }
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], (u64, u16)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_conns(&self) -> Vec<Arc<Conn>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
        self.receive_inner(max, lease, wait).await
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        let (sent, stale, _) = self.per_receipt(&receipts, true, codec::encode_fin).await?;
        // FIN is not answered on success; a refused one (the message had timed out on nsqd) arrives later as
        // E_FIN_FAILED and is reported with the next ack.
        let failed = self
            .live_conns()
            .iter()
            .map(|c| c.take_failed_fins())
            .sum::<u64>()
            .min(sent);
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
        self.stop_inner().await
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

//! The `redis://` backend: a Redis stream (Redis 7+) read by one consumer group, through the `redis` crate's
//! `ConnectionManager` (one multiplexed connection, remade after a failure).
//!
//! How the queue contract maps onto Redis Streams:
//! - publish: one `XADD key * body BYTES` per message, a batch pipelined in one round trip. A message counts as
//!   sent once its `XADD` has answered with an id. That reply means the entry is in the server's memory: it
//!   survives a restart only with `appendonly yes`, and a crash only with `appendfsync always` too (the reply
//!   then follows the fsync); with the default `everysec`, up to a second of confirmed messages can go.
//! - receive: first `XAUTOCLAIM … min-idle = --lease` takes over entries whose lease ran out (another
//!   consumer died, or a release with a delay came due), resuming its cursor across calls; then `XREADGROUP …
//!   >` reads new entries, blocking up to the wait. Each consumer process has its own consumer name.
//! - the lease is the pending entry's idle time: an entry is leased while it idles less than the claimer's
//!   `--lease`, so every consumer of a queue should run with the same `--lease`.
//! - the delivery count is the pending list's counter (1 on `XREADGROUP`, +1 per claim) plus the `deliveries`
//!   field that an entry released at once carries (it is re-added, see [`scripts::RELEASE`]).
//! - ack, release and extend are Lua scripts that act only while this consumer still holds the entry with
//!   the same counter (see [`scripts`]); ack is `XACK` and a trim, extend is `XCLAIM` to ourselves with
//!   min-idle 0 and `JUSTID` (it resets the idle time and leaves the counter).
//! - depth: `XINFO GROUPS` (the group's `lag` and `pending`) and `XLEN`, in one round trip.

mod conn;
mod error;
mod figures;
mod reply;
mod scripts;
mod url;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};
use async_trait::async_trait;

pub use error::RedisError;
pub use figures::StreamFigures;
use reply::{delivery, int, text};
pub use url::{BACKEND, DEFAULT_PORT, RedisBackend, RedisUrl};

use super::{AckOutcome, Delivery, Depth, Queue, QueueError, Receipt};

/// The largest bulk string a default server accepts (`proto-max-bulk-len`, 512 MiB).
pub const MAX_MESSAGE_SIZE: usize = 512 * 1024 * 1024;
/// The entry field that holds our body, and the one that counts earlier deliveries of a released entry.
pub const BODY_FIELD: &str = "body";
pub const DELIVERIES_FIELD: &str = "deliveries";
/// The longest a receive blocks in `XREADGROUP`, whatever the caller asks: the connection is shared.
const MAX_BLOCK: Duration = Duration::from_secs(2);
/// How long a reply may take. Above `MAX_BLOCK`, and long enough for a busy `appendfsync always` server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two claim scans when the last one found nothing; at once while they find work.
const CLAIM_EVERY: Duration = Duration::from_millis(200);

/// Proof of a lease: the entry's id and the pending list's counter when we got it.
#[derive(Clone, Debug, PartialEq)]
struct RedisReceipt {
    id: String,
    counter: u64,
    /// The lease it was received or last extended with, to time a release with a delay.
    lease_ms: u64,
    /// Until when no one else can claim it: the lease counted from before the request that set it.
    ours_until: Instant,
}

/// Where the claim scan resumes, and when it is due.
struct ClaimState {
    cursor: String,
    due: Instant,
}

/// A Redis stream as a [`Queue`].
pub struct RedisQueue {
    url: RedisUrl,
    conn: conn::Connection,
    consumer: String,
    group_ready: AtomicBool,
    claim: Mutex<ClaimState>,
    ack_script: ::redis::Script,
    release_script: ::redis::Script,
    extend_script: ::redis::Script,
    claim_script: ::redis::Script,
}

impl RedisQueue {
    /// Prepares the queue; connects nothing yet (the first call does, and a broken connection is remade).
    /// `env` reads `REDIS_PASSWORD` and `REDIS_USERNAME` (the environment, or a test's map).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](super::ErrorKind::Invalid) for an unreadable `ca=` bundle or client settings
    /// the crate refuses.
    pub fn new(
        url: RedisUrl,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RedisQueue, QueueError> {
        let config_err = |detail: String| RedisError::Config {
            target: url.describe(),
            detail,
        };
        let addr = if url.tls {
            workload::tls::ensure_crypto_provider();
            ConnectionAddr::TcpTls {
                host: url.host.clone(),
                port: url.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(url.host.clone(), url.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(url.db);
        if let Some(user) = url.user.clone().or_else(|| env("REDIS_USERNAME")) {
            settings = settings.set_username(user);
        }
        if let Some(password) = env("REDIS_PASSWORD").filter(|p| !p.is_empty()) {
            settings = settings.set_password(password);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| config_err(e.to_string()))?
            .set_redis_settings(settings);
        let client = match &url.ca {
            Some(path) => {
                let what = format!("ca={}", path.display());
                let pem = std::fs::read(path)
                    .map_err(|e| config_err(format!("{what}: cannot read it: {e}")))?;
                // Checked here for a clear error: the crate would say "Unable to parse TLS trust anchors".
                workload::tls::certificates_from_pem(&pem, &what)
                    .map_err(|e| config_err(e.to_string()))?;
                let certs = ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                ::redis::Client::build_with_tls(info, certs)
            }
            None => ::redis::Client::open(info),
        }
        .map_err(|e| config_err(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            // A few quick tries per failure; the roles' own back-off does the rest, and counts it.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| config_err(e.to_string()))?;
        Ok(RedisQueue {
            consumer: consumer_name(env),
            conn: conn::Connection(conn),
            group_ready: AtomicBool::new(false),
            claim: Mutex::new(ClaimState {
                cursor: "0-0".into(),
                due: Instant::now(),
            }),
            ack_script: scripts::script(scripts::ACK),
            release_script: scripts::script(scripts::RELEASE),
            extend_script: scripts::script(scripts::EXTEND),
            claim_script: scripts::script(scripts::CLAIM),
            url,
        })
    }

    /// This consumer's name in the group.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    fn err(&self, what: &'static str) -> impl FnOnce(::redis::RedisError) -> QueueError + '_ {
        move |source| {
            if error::server_code(&source).as_deref() == Some("NOGROUP") {
                // Gone with a server that restarted without persistence, or deleted: made again next call.
                self.group_ready.store(false, Ordering::Relaxed);
            }
            RedisError::Call {
                what,
                target: self.url.describe(),
                source,
            }
            .into()
        }
    }

    fn reply(&self, what: &'static str, detail: impl Into<String>) -> QueueError {
        RedisError::Reply {
            what,
            target: self.url.describe(),
            detail: detail.into(),
        }
        .into()
    }

    /// Creates the group (and the stream) when missing, reading from the stream's start so that messages
    /// published before the first consumer are delivered. Once per connection life, and again after NOGROUP.
    async fn ensure_group(&self) -> Result<(), QueueError> {
        if self.group_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let r: Result<Value, _> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.url.stream)
            .arg(&self.url.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(self.err("XGROUP CREATE")(e)),
        }
        self.group_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// For [`OpenMode::Existing`](super::OpenMode::Existing): the stream and its group must be there.
    pub(crate) async fn check_exists(&self) -> Result<(), QueueError> {
        if !self.figures().await?.group_exists {
            return Err(RedisError::Missing {
                target: self.url.describe(),
                detail: format!(
                    "no stream {:?} with a consumer group {:?} (a producer or consumer creates them)",
                    self.url.stream, self.url.group
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Claims entries whose lease ran out, when a scan is due.
    async fn claim_expired(
        &self,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let cursor = {
            let state = self
                .claim
                .lock()
                .map_err(|_| self.reply("XAUTOCLAIM", "lock poisoned"))?;
            if Instant::now() < state.due {
                return Ok(Vec::new());
            }
            state.cursor.clone()
        };
        let sent_at = Instant::now();
        let mut conn = self.conn.clone();
        let reply: Value = self
            .claim_script
            .key(&self.url.stream)
            .arg(&self.url.group)
            .arg(&self.consumer)
            .arg(lease.as_millis() as u64)
            .arg(&cursor)
            .arg(max)
            .invoke_async(&mut conn)
            .await
            .map_err(self.err("XAUTOCLAIM"))?;
        let Value::Array(parts) = reply else {
            return Err(self.reply("XAUTOCLAIM", format!("{reply:?}")));
        };
        let (next, entries, deleted) = match parts.as_slice() {
            [next, Value::Array(entries), deleted] => {
                (text(next), entries, int(deleted).unwrap_or(0))
            }
            _ => return Err(self.reply("XAUTOCLAIM", format!("{parts:?}"))),
        };
        if deleted > 0 {
            tracing::warn!(
                deleted,
                queue = %self.url.describe(),
                "pending entries were deleted from the stream by someone else (XDEL/XTRIM): they cannot be delivered"
            );
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            match e {
                Value::Array(x) if x.len() == 3 => {
                    let id = text(&x[0]).unwrap_or_default().to_string();
                    let counter = int(&x[1]).unwrap_or(1);
                    out.push(delivery(id, counter, &x[2], lease, sent_at));
                }
                other => return Err(self.reply("XAUTOCLAIM", format!("{other:?}"))),
            }
        }
        if let Ok(mut state) = self.claim.lock() {
            let next = next.unwrap_or("0-0").to_string();
            // Straight on while the scan finds work or has more to scan; else pause.
            state.due = if out.len() >= max || next != "0-0" {
                Instant::now()
            } else {
                Instant::now() + CLAIM_EVERY.min(lease / 4)
            };
            state.cursor = next;
        }
        Ok(out)
    }

    /// Reads new entries for the group, blocking up to `block` when given.
    async fn read_new(
        &self,
        max: usize,
        block: Option<Duration>,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.url.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max);
        if let Some(b) = block {
            // BLOCK 0 would wait for ever.
            cmd.arg("BLOCK")
                .arg(b.min(MAX_BLOCK).as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.url.stream).arg(">");
        let sent_at = Instant::now();
        let mut conn = self.conn.clone();
        let reply: Value = cmd
            .query_async(&mut conn)
            .await
            .map_err(self.err("XREADGROUP"))?;
        let streams = match reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(s) => s,
            other => return Err(self.reply("XREADGROUP", format!("{other:?}"))),
        };
        let mut out = Vec::new();
        for s in streams {
            let Value::Array(s) = s else { continue };
            let Some(Value::Array(entries)) = s.get(1) else {
                continue;
            };
            for e in entries {
                if let Value::Array(x) = e
                    && x.len() == 2
                {
                    let id = text(&x[0]).unwrap_or_default().to_string();
                    out.push(delivery(id, 1, &x[1], lease, sent_at));
                }
            }
        }
        Ok(out)
    }

    async fn run_script(
        &self,
        what: &'static str,
        script: &::redis::Script,
        args: Vec<String>,
    ) -> Result<Value, QueueError> {
        let mut inv = script.key(&self.url.stream);
        inv.arg(&self.url.group).arg(&self.consumer);
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(self.err(what))
    }
}

/// Whether a call failed on NOGROUP: the group is gone (a server restarted without persistence, or the group
/// deleted), and its pending list with it.
fn group_gone(e: &QueueError) -> bool {
    e.kind() == super::ErrorKind::NotFound
}

/// A consumer name unique to this process: the host (the pod's name in Kubernetes), the pid and a random
/// part (a restarted container may reuse both).
fn consumer_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    let host = env("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "consumer".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[async_trait]
impl Queue for RedisQueue {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        // The group first, so that the backlog shows as lag (what KEDA's lagCount reads) before any consumer.
        self.ensure_group().await?;
        let mut pipe = ::redis::pipe();
        // An expiring stream (heartbeats) drops what is older than its expiry on each XADD. Entry ids are the
        // server's milliseconds, the bound is ours: a clock skew shorter than the expiry (a minute and more)
        // trims a little early or late, never a fresh entry. Exact (no `~`, which trims whole nodes of 100
        // entries only): a heartbeat stream is short, and `~` would keep a quiet stack's beats for hours.
        let min_id = self.url.expiry.map(|after| {
            let now_ms = workload::clock::unix_micros() / 1000;
            now_ms.saturating_sub(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
        });
        for b in &bodies {
            let cmd = pipe.cmd("XADD").arg(&self.url.stream);
            if let Some(min_id) = min_id {
                cmd.arg("MINID").arg(min_id);
            }
            cmd.arg("*").arg(BODY_FIELD).arg(b.as_slice());
        }
        let mut conn = self.conn.clone();
        let ids: Vec<Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(self.err("XADD"))?;
        // Every XADD answered with an id: only then are the messages sent.
        if ids.len() != bodies.len() || ids.iter().any(|v| text(v).is_none()) {
            return Err(self.reply(
                "XADD",
                format!("{} replies for {} messages", ids.len(), bodies.len()),
            ));
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.ensure_group().await?;
        let mut out = match self.claim_expired(max, lease).await {
            Err(e) if !self.group_ready.load(Ordering::Relaxed) => {
                // NOGROUP: made again, then claimed from scratch on the next call.
                self.ensure_group().await?;
                tracing::debug!(error = %e, "consumer group was missing; created it");
                Vec::new()
            }
            other => other?,
        };
        if out.len() < max {
            let block = (out.is_empty() && !wait.is_zero()).then_some(wait);
            let new = match self.read_new(max - out.len(), block, lease).await {
                Err(_) if !self.group_ready.load(Ordering::Relaxed) => {
                    self.ensure_group().await?;
                    self.read_new(max - out.len(), block, lease).await?
                }
                other => other?,
            };
            out.extend(new);
        }
        Ok(out)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        if receipts.is_empty() {
            return Ok(AckOutcome::default());
        }
        let mut args = Vec::with_capacity(receipts.len() * 2);
        for r in &receipts {
            let r = r.get::<RedisReceipt>()?;
            args.push(r.id.clone());
            args.push(r.counter.to_string());
        }
        let reply = match self.run_script("ack", &self.ack_script, args).await {
            // The group is gone, and its pending list with these entries: nobody holds them any more, so the
            // acks are refused as lease lost (the ledger already has them). Failing instead would have the
            // consumer retry them for ever, never receiving again; the next receive makes the group again.
            Err(e) if group_gone(&e) => {
                tracing::warn!(error = %e, "the consumer group is gone: its pending acks count as lease lost");
                return Ok(AckOutcome {
                    acked: 0,
                    lease_lost: receipts.len() as u64,
                });
            }
            other => other?,
        };
        match &reply {
            Value::Array(v) if v.len() == 3 => {
                let mut outcome = AckOutcome {
                    acked: int(&v[0]).unwrap_or(0),
                    lease_lost: int(&v[1]).unwrap_or(0),
                };
                // Pending to no one: within our lease no one else could have claimed it, so it was our
                // earlier ack, whose reply was lost (counted lost, its message gone, a consumer with --count
                // waited for ever for it); after the lease, someone else's.
                let now = Instant::now();
                let Value::Array(gone) = &v[2] else {
                    return Err(self.reply("ack", format!("{reply:?}")));
                };
                for g in gone {
                    let ours = int(g)
                        .and_then(|i| receipts.get(i as usize))
                        .and_then(|r| r.get::<RedisReceipt>().ok())
                        .is_some_and(|r| now < r.ours_until);
                    if ours {
                        outcome.acked += 1;
                    } else {
                        outcome.lease_lost += 1;
                    }
                }
                Ok(outcome)
            }
            _ => Err(self.reply("ack", format!("{reply:?}"))),
        }
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        let mut args = Vec::with_capacity(receipts.len() * 3);
        for r in &receipts {
            let r = r.get::<RedisReceipt>()?;
            // Claimable once it has idled a lease: so set its idle time to (lease - delay). A delay past the
            // lease is capped at the lease.
            let idle = if delay.is_zero() {
                -1
            } else {
                r.lease_ms.saturating_sub(delay.as_millis() as u64) as i64
            };
            args.push(r.id.clone());
            args.push(r.counter.to_string());
            args.push(idle.to_string());
        }
        let reply = match self.run_script("release", &self.release_script, args).await {
            // The group is gone with its pending list: there is nothing to give back.
            Err(e) if group_gone(&e) => return Ok(0),
            other => other?,
        };
        int(&reply).ok_or_else(|| self.reply("release", format!("{reply:?}")))
    }

    async fn extend(
        &self,
        receipts: &mut [Receipt],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = Vec::with_capacity(receipts.len() * 2);
        for r in receipts.iter() {
            let r = r.get::<RedisReceipt>()?;
            args.push(r.id.clone());
            args.push(r.counter.to_string());
        }
        let sent_at = Instant::now();
        let reply = match self.run_script("extend", &self.extend_script, args).await {
            // The group is gone with its pending list: none of these leases is held any more.
            Err(e) if group_gone(&e) => return Ok(vec![false; receipts.len()]),
            other => other?,
        };
        let Value::Array(flags) = &reply else {
            return Err(self.reply("extend", format!("{reply:?}")));
        };
        if flags.len() != receipts.len() {
            return Err(self.reply("extend", format!("{reply:?}")));
        }
        let held: Vec<bool> = flags.iter().map(|f| int(f) == Some(1)).collect();
        for (r, h) in receipts.iter_mut().zip(&held) {
            if *h {
                let r = r.get_mut::<RedisReceipt>()?;
                r.lease_ms = lease.as_millis() as u64;
                r.ours_until = sent_at + lease;
            }
        }
        Ok(held)
    }

    /// `visible` is the group's `lag` (entries never delivered to it: KEDA's `lagCount`); `in_flight` its
    /// pending entries (delivered, not acked: KEDA's default `pendingEntriesCount`), which include leases that
    /// ran out and wait to be claimed, and releases with a delay. Their sum is what `XLEN` shows once the
    /// acked entries are trimmed (KEDA's `streamLength`).
    async fn depth(&self) -> Result<Depth, QueueError> {
        let StreamFigures {
            length: len,
            pending,
            lag,
            ..
        } = self.figures().await?;
        Ok(Depth {
            // Redis 7 cannot always count the lag (entries deleted after the group's position): then the
            // stream length less the pending entries, the closest figure it has.
            visible: lag.unwrap_or_else(|| len.saturating_sub(pending)),
            in_flight: Some(pending),
        })
    }

    fn max_message_size(&self) -> Option<usize> {
        Some(MAX_MESSAGE_SIZE)
    }

    fn describe(&self) -> String {
        self.url.describe()
    }
}

//! One connection to nsqd: the handshake (magic, IDENTIFY, optional TLS and AUTH, optional SUB), then a
//! reader task that answers heartbeats, hands responses to the commands waiting for them, counts the
//! non-fatal `E_*_FAILED` errors, and forwards messages.
//!
//! Writes go straight to the socket under a lock, one `write_all` per call, so a batch of FINs is one
//! syscall. Commands that nsqd answers (`PUB`, `MPUB`, `CLS` …) queue a oneshot in `pending` under the same
//! lock, so answers, which nsqd sends in command order, are matched in order. When the connection ends,
//! every waiting command gets an error (its sender is dropped): nothing is silently thrown away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::codec::{self, Frame, Message};
use super::error::NsqError;
use super::tls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame accepted from nsqd: a maximal message plus its header, with room to spare.
const MAX_FRAME: usize = 64 * 1024 * 1024;
const READ_CHUNK: usize = 64 * 1024;

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;
type Reply = oneshot::Sender<Result<Vec<u8>, NsqError>>;
/// A message and the generation of the connection it came on (FIN/REQ/TOUCH must go back there).
pub type Tagged = (u64, Message);

/// What IDENTIFY tells nsqd about this client.
#[derive(Serialize)]
struct Identify<'a> {
    client_id: &'a str,
    hostname: &'a str,
    user_agent: &'a str,
    feature_negotiation: bool,
    heartbeat_interval: u64,
    /// Milliseconds before nsqd gives an unfinished message to someone else: the consumer's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_timeout: Option<u64>,
    tls_v1: bool,
}

/// nsqd's answer to IDENTIFY with feature negotiation (the fields this client uses).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Negotiated {
    #[serde(default)]
    pub max_rdy_count: u32,
    #[serde(default)]
    pub tls_v1: bool,
    #[serde(default)]
    pub auth_required: bool,
}

/// How to open a connection.
pub struct ConnectOptions<'a> {
    pub addr: &'a str,
    /// Lease for messages, sent as IDENTIFY's `msg_timeout` (nsqd accepts 1 s to its max-msg-timeout).
    pub msg_timeout: Option<Duration>,
    pub tls: Option<&'a tls::TlsSettings>,
    pub auth_secret: Option<&'a super::Secret>,
    /// Subscribe to (topic, channel) and forward messages to the sender, tagged with this connection's
    /// generation (several connections of one consumer share one channel).
    pub subscribe: Option<(&'a str, &'a str, mpsc::UnboundedSender<Tagged>)>,
    pub generation: u64,
}

struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    pending: Mutex<VecDeque<Reply>>,
    alive: AtomicBool,
    /// E_FIN_FAILED seen: the message had timed out on nsqd before its FIN. (E_REQ_FAILED and
    /// E_TOUCH_FAILED say the same of a release or an extend; counted here, they turned FINs that went through
    /// into lost ones.)
    failed_fins: AtomicU64,
}

/// An open connection. Dropping it stops its reader task and closes the socket.
pub struct Conn {
    pub generation: u64,
    pub negotiated: Negotiated,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads one frame during the handshake, answering nothing (nsqd sends no heartbeat before SUB).
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<Frame, NsqError> {
    loop {
        match codec::decode_frame(buf, MAX_FRAME) {
            Ok(Some((frame, n))) => {
                buf.drain(..n);
                return Ok(frame);
            }
            Ok(None) => {}
            Err(e) => return Err(NsqError::Protocol(e.to_string())),
        }
        let mut chunk = [0u8; 4096];
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| NsqError::Lost(e.to_string()))?;
        if n == 0 {
            return Err(NsqError::Lost("nsqd closed the connection".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one command and reads its answer during the handshake.
async fn request(
    r: &mut Reader,
    w: &mut Writer,
    buf: &mut Vec<u8>,
    cmd: &[u8],
) -> Result<Vec<u8>, NsqError> {
    w.write_all(cmd)
        .await
        .map_err(|e| NsqError::Lost(e.to_string()))?;
    match read_frame(r, buf).await? {
        Frame::Response(data) => Ok(data),
        Frame::Error(data) => Err(refused(&data)),
        Frame::Message(_) => Err(NsqError::Protocol(
            "a message arrived before the handshake ended".into(),
        )),
    }
}

fn refused(data: &[u8]) -> NsqError {
    let code = codec::error_code(data).to_string();
    let message = String::from_utf8_lossy(data.get(code.len() + 1..).unwrap_or(b"")).into_owned();
    NsqError::Refused { code, message }
}

impl Conn {
    /// Connects and completes the handshake.
    ///
    /// # Errors
    /// [`NsqError::Connect`] when nsqd is unreachable; [`NsqError::Refused`] when it rejects IDENTIFY, AUTH or
    /// SUB; [`NsqError::Timeout`] when it does not answer.
    pub async fn connect(opts: ConnectOptions<'_>) -> Result<Conn, NsqError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(opts.addr))
            .await
            .map_err(|_| NsqError::Connect {
                addr: opts.addr.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|source| NsqError::Connect {
                addr: opts.addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        tokio::time::timeout(HANDSHAKE_TIMEOUT, Self::handshake(stream, opts))
            .await
            .map_err(|_| NsqError::Timeout {
                what: "the handshake",
                secs: HANDSHAKE_TIMEOUT.as_secs(),
            })?
    }

    async fn handshake(mut stream: TcpStream, opts: ConnectOptions<'_>) -> Result<Conn, NsqError> {
        let lost = |e: std::io::Error| NsqError::Lost(e.to_string());
        stream.write_all(codec::MAGIC_V2).await.map_err(lost)?;
        let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let client_id = format!("queue-workload-{}", std::process::id());
        let identify = Identify {
            client_id: &client_id,
            hostname: &hostname,
            user_agent: concat!("queue-workload/", env!("CARGO_PKG_VERSION")),
            feature_negotiation: true,
            heartbeat_interval: 30_000,
            msg_timeout: opts
                .msg_timeout
                .map(|d| (d.as_millis() as u64).clamp(1000, 15 * 60 * 1000)),
            tls_v1: opts.tls.is_some(),
        };
        let json = serde_json::to_vec(&identify).map_err(|e| NsqError::Protocol(e.to_string()))?;
        let mut cmd = Vec::new();
        codec::encode_identify(&mut cmd, &json);
        stream.write_all(&cmd).await.map_err(lost)?;
        // Read IDENTIFY's answer on the plain stream: with TLS, the upgrade starts right after it.
        let mut buf = Vec::new();
        let answer = match read_frame(&mut stream, &mut buf).await? {
            Frame::Response(d) => d,
            Frame::Error(d) => return Err(refused(&d)),
            Frame::Message(_) => {
                return Err(NsqError::Protocol(
                    "message before IDENTIFY's answer".into(),
                ));
            }
        };
        let negotiated: Negotiated = if answer.starts_with(b"{") {
            serde_json::from_slice(&answer)
                .map_err(|e| NsqError::Protocol(format!("IDENTIFY answer is not JSON: {e}")))?
        } else {
            Negotiated::default()
        };
        let (mut r, mut w): (Reader, Writer) = match opts.tls {
            Some(settings) => {
                if !negotiated.tls_v1 {
                    return Err(NsqError::Tls(
                        "TLS was asked for but nsqd does not offer it (start nsqd with --tls-cert and --tls-key)"
                            .into(),
                    ));
                }
                let mut tls = tls::upgrade(stream, opts.addr, settings).await?;
                // nsqd confirms the upgrade with an OK sent over TLS.
                buf.clear();
                match read_frame(&mut tls, &mut buf).await? {
                    Frame::Response(d) if d == b"OK" => {}
                    _ => {
                        return Err(NsqError::Tls("nsqd did not confirm the TLS upgrade".into()));
                    }
                }
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Box::new(w))
            }
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        if negotiated.auth_required {
            let Some(secret) = opts.auth_secret else {
                return Err(NsqError::Refused {
                    code: "E_AUTH_FIRST".into(),
                    message: "nsqd requires AUTH: set NSQ_AUTH_SECRET".into(),
                });
            };
            let mut cmd = Vec::new();
            codec::encode_auth(&mut cmd, secret.expose().as_bytes());
            request(&mut r, &mut w, &mut buf, &cmd).await?;
        }
        let msg_tx = match opts.subscribe {
            Some((topic, channel, tx)) => {
                let mut cmd = Vec::new();
                codec::encode_sub(&mut cmd, topic, channel);
                let ok = request(&mut r, &mut w, &mut buf, &cmd).await?;
                if ok != b"OK" {
                    return Err(NsqError::Protocol(format!(
                        "SUB answered {:?}",
                        String::from_utf8_lossy(&ok)
                    )));
                }
                Some(tx)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(w),
            pending: Mutex::new(VecDeque::new()),
            alive: AtomicBool::new(true),
            failed_fins: AtomicU64::new(0),
        });
        let reader = tokio::spawn(read_loop(r, buf, shared.clone(), msg_tx, opts.generation));
        Ok(Conn {
            generation: opts.generation,
            negotiated,
            shared,
            reader,
        })
    }

    /// Whether the connection is still up.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// How many FINs nsqd refused since the last call (their message had timed out on nsqd).
    pub fn take_failed_fins(&self) -> u64 {
        self.shared.failed_fins.swap(0, Ordering::AcqRel)
    }

    /// Writes commands that nsqd does not answer on success (RDY, FIN, REQ, TOUCH, NOP).
    ///
    /// # Errors
    /// [`NsqError::Lost`] when the connection is down.
    pub async fn send(&self, bytes: &[u8]) -> Result<(), NsqError> {
        if !self.is_alive() {
            return Err(NsqError::Lost("connection closed".into()));
        }
        let mut w = self.shared.writer.lock().await;
        w.write_all(bytes).await.map_err(|e| {
            self.shared.alive.store(false, Ordering::Release);
            NsqError::Lost(e.to_string())
        })
    }

    /// Writes one command that nsqd answers, and returns the receiver of its answer. Several may be written
    /// before any answer is awaited (pipelining). A failed write still returns the receiver: see below.
    ///
    /// # Errors
    /// [`NsqError::Lost`] when the connection was already down.
    pub async fn send_request(
        &self,
        bytes: &[u8],
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, NsqError>>, NsqError> {
        if !self.is_alive() {
            return Err(NsqError::Lost("connection closed".into()));
        }
        let (tx, rx) = oneshot::channel();
        let mut w = self.shared.writer.lock().await;
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(tx);
        if let Err(e) = w.write_all(bytes).await {
            // nsqd refuses some commands before reading their body (an oversized PUB gets E_BAD_MESSAGE) and
            // closes the connection, so our write fails with EPIPE while its error frame waits in the receive
            // buffer. Hand back the receiver anyway: the read loop delivers that frame if there is one, or
            // reports the connection lost when it ends.
            self.shared.alive.store(false, Ordering::Release);
            tracing::debug!(error = %e, "write failed; waiting for nsqd's answer or the end of the connection");
        }
        Ok(rx)
    }
}

/// Waits for an answer from [`Conn::send_request`], at most `limit`.
///
/// # Errors
/// The error frame nsqd sent, [`NsqError::Lost`] when the connection ended first, or a timeout.
pub async fn await_reply(
    rx: oneshot::Receiver<Result<Vec<u8>, NsqError>>,
    what: &'static str,
    limit: Duration,
) -> Result<Vec<u8>, NsqError> {
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(NsqError::Lost(format!(
            "the connection ended before nsqd answered {what}"
        ))),
        Err(_) => Err(NsqError::Timeout {
            what,
            secs: limit.as_secs(),
        }),
    }
}

async fn read_loop(
    mut r: Reader,
    mut buf: Vec<u8>,
    shared: Arc<Shared>,
    msg_tx: Option<mpsc::UnboundedSender<Tagged>>,
    generation: u64,
) {
    let reason = loop {
        let mut used = 0;
        let mut fatal = None;
        loop {
            match codec::decode_frame(&buf[used..], MAX_FRAME) {
                Ok(Some((frame, n))) => {
                    used += n;
                    if let Err(e) = handle_frame(frame, &shared, msg_tx.as_ref(), generation).await
                    {
                        fatal = Some(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(format!("bad frame from nsqd: {e}"));
                    break;
                }
            }
        }
        buf.drain(..used);
        if let Some(reason) = fatal {
            break reason;
        }
        let len = buf.len();
        buf.resize(len + READ_CHUNK, 0);
        match r.read(&mut buf[len..]).await {
            Ok(0) => {
                buf.truncate(len);
                break "nsqd closed the connection".to_string();
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) => {
                buf.truncate(len);
                break e.to_string();
            }
        }
    };
    tracing::debug!(reason, "nsqd connection ended");
    shared.alive.store(false, Ordering::Release);
    // Fail every command still waiting for an answer.
    let waiting: Vec<Reply> = shared
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect();
    for tx in waiting {
        let _ = tx.send(Err(NsqError::Lost(reason.clone())));
    }
}

async fn handle_frame(
    frame: Frame,
    shared: &Shared,
    msg_tx: Option<&mpsc::UnboundedSender<Tagged>>,
    generation: u64,
) -> Result<(), String> {
    match frame {
        Frame::Response(data) if data == codec::HEARTBEAT => {
            let mut nop = Vec::new();
            codec::encode_nop(&mut nop);
            let mut w = shared.writer.lock().await;
            w.write_all(&nop).await.map_err(|e| e.to_string())?;
        }
        Frame::Response(data) => {
            let tx = shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            match tx {
                Some(tx) => {
                    let _ = tx.send(Ok(data));
                }
                None => {
                    return Err(format!(
                        "unexpected answer {:?}",
                        String::from_utf8_lossy(&data)
                    ));
                }
            }
        }
        Frame::Error(data) => {
            let code = codec::error_code(&data);
            if !codec::is_fatal_error(code) {
                if code == "E_FIN_FAILED" {
                    shared.failed_fins.fetch_add(1, Ordering::AcqRel);
                }
                tracing::debug!(error = %String::from_utf8_lossy(&data), "nsqd refused a message command");
            } else {
                let err = refused(&data);
                let text = err.to_string();
                let tx = shared
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                if let Some(tx) = tx {
                    let _ = tx.send(Err(err));
                }
                // nsqd closes the connection after a fatal error; do not wait for it.
                return Err(text);
            }
        }
        Frame::Message(m) => {
            if let Some(tx) = msg_tx {
                // The receiver lives as long as the connection's consumer side; nothing to do if it is gone.
                let _ = tx.send((generation, m));
            }
        }
    }
    Ok(())
}

//! The fake nsqd's TCP side: one task per connection reading commands with the shared codec and answering
//! as nsqd 1.3.0 does (`protocol_v2.go`): fatal errors are sent and the connection closed; `E_FIN_FAILED`,
//! `E_REQ_FAILED` and `E_TOUCH_FAILED` leave it open; NOP has no answer; CLS answers `CLOSE_WAIT`; an
//! oversized PUB is refused as soon as its size is read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use queues::nsq::codec::{self, CodecError, Command, MessageId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::Options;
use super::state::State;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Init,
    Subscribed,
    Closing,
}

/// The IDENTIFY fields the fake acts on.
struct IdentifyBody {
    feature_negotiation: bool,
    msg_timeout: i64,
    heartbeat_interval: i64,
    /// Shown in `/stats`.
    client_id: String,
    hostname: String,
    user_agent: String,
}

impl IdentifyBody {
    fn parse(body: &[u8]) -> Option<IdentifyBody> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        if !v.is_object() {
            return None;
        }
        Some(IdentifyBody {
            feature_negotiation: v["feature_negotiation"].as_bool().unwrap_or(false),
            msg_timeout: v["msg_timeout"].as_i64().unwrap_or(0),
            heartbeat_interval: v["heartbeat_interval"].as_i64().unwrap_or(0),
            client_id: v["client_id"].as_str().unwrap_or_default().to_string(),
            hostname: v["hostname"].as_str().unwrap_or_default().to_string(),
            user_agent: v["user_agent"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// An error frame, and whether it ends the connection.
struct Refusal {
    code: &'static str,
    message: String,
}

fn fatal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

impl From<CodecError> for Refusal {
    fn from(e: CodecError) -> Refusal {
        Refusal {
            code: e.code,
            message: e.message,
        }
    }
}

struct Session {
    id: u64,
    phase: Phase,
    identified: bool,
    authed: bool,
    heartbeat: Duration,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    state: Arc<Mutex<State>>,
    opts: Options,
}

fn frame(frame_type: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() + 8);
    codec::encode_frame(&mut b, frame_type, data);
    b
}

/// Serves one client until it leaves, breaks the protocol, or the fake stops.
pub async fn serve(stream: TcpStream, state: Arc<Mutex<State>>, opts: Options) {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let id = {
        let mut st = lock(&state);
        let id = st.add_client(tx.clone(), opts.msg_timeout);
        if let Some(c) = st.clients.get_mut(&id) {
            c.info.remote_address = peer;
        }
        id
    };
    let mut s = Session {
        id,
        phase: Phase::Init,
        identified: false,
        authed: false,
        heartbeat: opts.heartbeat_interval,
        tx,
        state: state.clone(),
        opts,
    };
    // Writer: everything for the socket goes through one queue, so answers and messages keep their order.
    // A `None`-length vec is the signal to close after flushing.
    let writer = tokio::spawn(async move {
        while let Some(mut bytes) = rx.recv().await {
            if bytes.is_empty() {
                break;
            }
            while let Ok(more) = rx.try_recv() {
                if more.is_empty() {
                    let _ = w.write_all(&bytes).await;
                    return;
                }
                bytes.extend_from_slice(&more);
            }
            if w.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut magic = [0u8; 4];
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut magic)).await,
        Ok(Ok(_))
    ) && &magic == codec::MAGIC_V2;
    if ok {
        s.read_loop(&mut r).await;
    } else {
        let _ = s.tx.send(frame(
            codec::FRAME_ERROR,
            b"E_BAD_PROTOCOL bad protocol magic",
        ));
    }
    lock(&state).remove_client(id);
    let _ = s.tx.send(Vec::new());
    let _ = writer.await;
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    async fn read_loop(&mut self, r: &mut tokio::net::tcp::OwnedReadHalf) {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.reset();
        let mut missed = 0u32;
        loop {
            // Decode and run every complete command in the buffer.
            let mut used = 0;
            loop {
                let limits = codec::Limits {
                    max_msg_size: self.opts.max_msg_size,
                    max_body_size: self.opts.max_body_size,
                };
                match codec::decode_command(&buf[used..], limits) {
                    Ok(Some((cmd, n))) => {
                        used += n;
                        if let Err(refusal) = self.exec(cmd) {
                            let fatal = codec::is_fatal_error(refusal.code);
                            let text = format!("{} {}", refusal.code, refusal.message);
                            let _ = self.tx.send(frame(codec::FRAME_ERROR, text.as_bytes()));
                            if fatal {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let text = format!("{} {}", e.code, e.message);
                        let _ = self.tx.send(frame(codec::FRAME_ERROR, text.as_bytes()));
                        return;
                    }
                }
            }
            buf.drain(..used);
            let len = buf.len();
            buf.resize(len + 64 * 1024, 0);
            tokio::select! {
                n = r.read(&mut buf[len..]) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.truncate(len + n);
                        missed = 0;
                    }
                },
                _ = heartbeat.tick() => {
                    buf.truncate(len);
                    // nsqd closes a client that has sent nothing for two heartbeat intervals.
                    missed += 1;
                    if missed >= 2 {
                        return;
                    }
                    if self.phase != Phase::Init || self.identified {
                        let _ = self.tx.send(frame(codec::FRAME_RESPONSE, codec::HEARTBEAT));
                    }
                }
            }
        }
    }

    fn reply(&self, data: &[u8]) {
        let _ = self.tx.send(frame(codec::FRAME_RESPONSE, data));
    }

    fn exec(&mut self, cmd: Command) -> Result<(), Refusal> {
        let name = String::from_utf8_lossy(cmd.name()).into_owned();
        if name == "IDENTIFY" {
            return self.identify(cmd);
        }
        if name == "AUTH" {
            return self.auth(cmd);
        }
        if self.opts.auth_secret.is_some() && !self.authed && name != "NOP" {
            return Err(fatal(
                "E_AUTH_FIRST",
                format!("AUTH required before {name}"),
            ));
        }
        match name.as_str() {
            "SUB" => self.sub(cmd),
            "RDY" => self.rdy(cmd),
            "FIN" => self.on_message(cmd, "FIN", |st, c, id, _| st.finish(c, id)),
            "REQ" => self.on_message(cmd, "REQ", |st, c, id, d| st.requeue(c, id, d)),
            "TOUCH" => self.on_message(cmd, "TOUCH", |st, c, id, _| st.touch(c, id)),
            "NOP" => Ok(()),
            "CLS" => {
                if self.phase != Phase::Subscribed {
                    return Err(fatal("E_INVALID", "cannot CLS in current state"));
                }
                self.phase = Phase::Closing;
                if let Some(c) = lock(&self.state).clients.get_mut(&self.id) {
                    c.closing = true;
                    c.rdy = 0;
                }
                self.reply(b"CLOSE_WAIT");
                Ok(())
            }
            "PUB" | "DPUB" => self.publish(cmd, &name),
            "MPUB" => {
                let topic = self.topic_param(&cmd, "MPUB")?;
                let body = cmd.body.unwrap_or_default();
                let limits = codec::Limits {
                    max_msg_size: self.opts.max_msg_size,
                    max_body_size: self.opts.max_body_size,
                };
                let msgs = codec::decode_mpub_body(&body, limits)?;
                lock(&self.state).publish(&topic, msgs, Duration::ZERO);
                self.reply(b"OK");
                Ok(())
            }
            other => Err(fatal("E_INVALID", format!("invalid command {other}"))),
        }
    }

    fn identify(&mut self, cmd: Command) -> Result<(), Refusal> {
        if self.phase != Phase::Init || self.identified {
            return Err(fatal("E_INVALID", "cannot IDENTIFY in current state"));
        }
        let body = cmd.body.unwrap_or_default();
        let data = IdentifyBody::parse(&body)
            .ok_or_else(|| fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        let max_timeout = self.opts.max_msg_timeout.as_millis() as i64;
        let timeout = match data.msg_timeout {
            0 => self.opts.msg_timeout,
            ms if (1000..=max_timeout).contains(&ms) => Duration::from_millis(ms as u64),
            ms => {
                return Err(fatal(
                    "E_BAD_BODY",
                    format!("IDENTIFY msg timeout ({ms}) is invalid"),
                ));
            }
        };
        match data.heartbeat_interval {
            -1 => self.heartbeat = Duration::from_secs(3600),
            0 => {}
            ms if (1000..=60_000).contains(&ms) => {
                // Tests may configure a shorter heartbeat than any client asks for.
                self.heartbeat = self.heartbeat.min(Duration::from_millis(ms as u64));
            }
            ms => {
                return Err(fatal(
                    "E_BAD_BODY",
                    format!("IDENTIFY heartbeat interval ({ms}) is invalid"),
                ));
            }
        }
        if let Some(c) = lock(&self.state).clients.get_mut(&self.id) {
            c.msg_timeout = timeout;
            c.info.client_id = data.client_id;
            c.info.hostname = data.hostname;
            c.info.user_agent = data.user_agent;
        }
        self.identified = true;
        if !data.feature_negotiation {
            self.reply(b"OK");
            return Ok(());
        }
        let answer = serde_json::json!({
            "max_rdy_count": self.opts.max_rdy_count,
            "version": "1.3.0",
            "max_msg_timeout": max_timeout,
            "msg_timeout": timeout.as_millis() as u64,
            "tls_v1": false,
            "deflate": false,
            "deflate_level": 6,
            "max_deflate_level": 6,
            "snappy": false,
            "sample_rate": 0,
            "auth_required": self.opts.auth_secret.is_some(),
            "output_buffer_size": 16384,
            "output_buffer_timeout": 250,
            "topology_region": "",
            "topology_zone": "",
        });
        self.reply(answer.to_string().as_bytes());
        Ok(())
    }

    fn auth(&mut self, cmd: Command) -> Result<(), Refusal> {
        if self.phase != Phase::Init {
            return Err(fatal("E_INVALID", "cannot AUTH in current state"));
        }
        if self.authed {
            return Err(fatal("E_INVALID", "AUTH already set"));
        }
        let Some(secret) = self.opts.auth_secret.as_deref() else {
            return Err(fatal("E_AUTH_DISABLED", "AUTH disabled"));
        };
        if cmd.body.as_deref() != Some(secret.as_bytes()) {
            return Err(fatal("E_AUTH_FAILED", "AUTH failed"));
        }
        self.authed = true;
        self.reply(br#"{"identity":"test","identity_url":"","permission_count":1}"#);
        Ok(())
    }

    fn topic_param(&self, cmd: &Command, what: &str) -> Result<String, Refusal> {
        let Some(topic) = cmd.param(1) else {
            return Err(fatal(
                "E_INVALID",
                format!("{what} insufficient number of parameters"),
            ));
        };
        if !codec::is_valid_name(topic) {
            return Err(fatal(
                "E_BAD_TOPIC",
                format!("{what} topic name {topic:?} is not valid"),
            ));
        }
        Ok(topic.to_string())
    }

    fn publish(&mut self, cmd: Command, name: &str) -> Result<(), Refusal> {
        let topic = self.topic_param(&cmd, name)?;
        let defer = if name == "DPUB" {
            let ms: i64 = cmd
                .param(2)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| fatal("E_INVALID", "DPUB could not parse timeout"))?;
            if !(0..=3_600_000).contains(&ms) {
                return Err(fatal(
                    "E_INVALID",
                    format!("DPUB timeout {ms} out of range 0-3600000"),
                ));
            }
            Duration::from_millis(ms as u64)
        } else {
            Duration::ZERO
        };
        let body = cmd.body.unwrap_or_default();
        lock(&self.state).publish(&topic, vec![body], defer);
        self.reply(b"OK");
        Ok(())
    }

    fn sub(&mut self, cmd: Command) -> Result<(), Refusal> {
        if self.phase != Phase::Init {
            return Err(fatal("E_INVALID", "cannot SUB in current state"));
        }
        let (Some(topic), Some(channel)) = (cmd.param(1), cmd.param(2)) else {
            return Err(fatal("E_INVALID", "SUB insufficient number of parameters"));
        };
        if !codec::is_valid_name(topic) {
            return Err(fatal(
                "E_BAD_TOPIC",
                format!("SUB topic name {topic:?} is not valid"),
            ));
        }
        if !codec::is_valid_name(channel) {
            return Err(fatal(
                "E_BAD_CHANNEL",
                format!("SUB channel name {channel:?} is not valid"),
            ));
        }
        let mut st = lock(&self.state);
        st.channel(topic, channel).clients.push(self.id);
        if let Some(c) = st.clients.get_mut(&self.id) {
            c.sub = Some((topic.to_string(), channel.to_string()));
        }
        drop(st);
        self.phase = Phase::Subscribed;
        self.reply(b"OK");
        Ok(())
    }

    fn rdy(&mut self, cmd: Command) -> Result<(), Refusal> {
        if self.phase == Phase::Closing {
            // nsqd ignores RDY after CLS.
            return Ok(());
        }
        if self.phase != Phase::Subscribed {
            return Err(fatal("E_INVALID", "cannot RDY in current state"));
        }
        let count: i64 = match cmd.param(1) {
            None => 1,
            Some(p) => p
                .parse()
                .map_err(|_| fatal("E_INVALID", format!("RDY could not parse count {p}")))?,
        };
        let max = i64::from(self.opts.max_rdy_count);
        if !(0..=max).contains(&count) {
            return Err(fatal(
                "E_INVALID",
                format!("RDY count {count} out of range 0-{max}"),
            ));
        }
        let mut st = lock(&self.state);
        let sub = st.clients.get_mut(&self.id).and_then(|c| {
            c.rdy = count as u32;
            c.sub.clone()
        });
        if let Some((t, c)) = sub {
            st.dispatch(&t, &c);
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        cmd: Command,
        what: &'static str,
        f: impl FnOnce(&mut State, u64, &MessageId, Duration) -> Result<(), String>,
    ) -> Result<(), Refusal> {
        if self.phase == Phase::Init {
            return Err(fatal(
                "E_INVALID",
                format!("cannot {what} in current state"),
            ));
        }
        let needed = if what == "REQ" { 3 } else { 2 };
        if cmd.params.len() < needed {
            return Err(fatal(
                "E_INVALID",
                format!("{what} insufficient number of params"),
            ));
        }
        let id = MessageId::parse(&cmd.params[1])
            .ok_or_else(|| fatal("E_INVALID", "invalid message ID"))?;
        let delay = if what == "REQ" {
            let ms: i64 = cmd
                .param(2)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| fatal("E_INVALID", "REQ could not parse timeout"))?;
            // nsqd clamps REQ's timeout to 0..max-req-timeout.
            Duration::from_millis(ms.clamp(0, 3_600_000) as u64)
        } else {
            Duration::ZERO
        };
        let code = match what {
            "FIN" => "E_FIN_FAILED",
            "REQ" => "E_REQ_FAILED",
            _ => "E_TOUCH_FAILED",
        };
        f(&mut lock(&self.state), self.id, &id, delay).map_err(|reason| Refusal {
            code,
            message: format!("{what} {id} failed {reason}"),
        })
    }
}

//! The NSQ TCP protocol (V2) as bytes: what a client writes and what nsqd answers, both ways, so that the
//! client and the fake nsqd in `testkit` share one reading of the protocol.
//!
//! The format, from nsqd's `protocol_v2.go` and the published protocol spec:
//! - A client opens with the 4-byte magic `"  V2"`, then sends newline-terminated commands; `IDENTIFY`, `PUB`,
//!   `MPUB`, `DPUB` and `AUTH` are followed by a 4-byte big-endian size and a body.
//! - nsqd answers in frames: 4-byte size (covering what follows), 4-byte frame type (0 response, 1 error,
//!   2 message), data. A message is 8-byte timestamp (ns), 2-byte attempts, 16-byte ASCII id, body.
//!
//! Decoding works on a buffer and never panics: `Ok(None)` means "incomplete, read more" (the mini-redis
//! `Frame::check` pattern), and a size that breaks a limit is refused as soon as the size is known, before
//! the body arrives, as nsqd does.

use std::fmt;

/// What a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";
/// Frame type of a response (`OK`, `CLOSE_WAIT`, `_heartbeat_`, IDENTIFY's JSON).
pub const FRAME_RESPONSE: u32 = 0;
/// Frame type of an error (`E_INVALID …`).
pub const FRAME_ERROR: u32 = 1;
/// Frame type of a message.
pub const FRAME_MESSAGE: u32 = 2;
/// The body of a heartbeat response; the client must answer with `NOP`.
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
/// Bytes of a message frame's data before the body: timestamp, attempts, id.
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + 16;

/// nsqd's defaults for the limits a client must respect (`--max-msg-size`, `--max-body-size`,
/// `--max-rdy-count`).
pub const DEFAULT_MAX_MSG_SIZE: u32 = 1024 * 1024;
pub const DEFAULT_MAX_BODY_SIZE: u32 = 5 * 1024 * 1024;
pub const DEFAULT_MAX_RDY_COUNT: u32 = 2500;

/// A message id: 16 ASCII bytes (nsqd writes a hex GUID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// The id nsqd-style: 16 lowercase hex digits of `n`.
    pub fn from_u64(n: u64) -> MessageId {
        let mut id = [0u8; 16];
        let hex = b"0123456789abcdef";
        for (i, b) in id.iter_mut().enumerate() {
            *b = hex[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        MessageId(id)
    }

    /// Parses an id from a command parameter; `None` unless it is exactly 16 bytes.
    pub fn parse(s: &[u8]) -> Option<MessageId> {
        <[u8; 16]>::try_from(s).ok().map(MessageId)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A message as nsqd frames it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// When nsqd accepted it, ns since the epoch.
    pub timestamp_ns: i64,
    /// Deliveries so far, this one included.
    pub attempts: u16,
    pub id: MessageId,
    pub body: Vec<u8>,
}

/// A frame from nsqd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Response(Vec<u8>),
    Error(Vec<u8>),
    Message(Message),
}

/// Why bytes could not be decoded. Each carries nsqd's error code, so the fake can answer as nsqd does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct CodecError {
    /// nsqd's code (`E_INVALID`, `E_BAD_MESSAGE`, `E_BAD_BODY`, `E_BAD_TOPIC` …).
    pub code: &'static str,
    pub message: String,
}

impl CodecError {
    fn new(code: &'static str, message: impl Into<String>) -> CodecError {
        CodecError {
            code,
            message: message.into(),
        }
    }
}

/// Whether `name` is a valid topic or channel name, by nsqd's rule: 1-64 characters of
/// `[.a-zA-Z0-9_-]`, optionally ending in `#ephemeral`.
pub fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let stem = name.strip_suffix("#ephemeral").unwrap_or(name);
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// ---- client → nsqd ----------------------------------------------------------------------------------------

fn put_body(buf: &mut Vec<u8>, body: &[u8]) {
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
}

/// `IDENTIFY\n` + JSON body.
pub fn encode_identify(buf: &mut Vec<u8>, json: &[u8]) {
    buf.extend_from_slice(b"IDENTIFY\n");
    put_body(buf, json);
}

/// `AUTH\n` + secret.
pub fn encode_auth(buf: &mut Vec<u8>, secret: &[u8]) {
    buf.extend_from_slice(b"AUTH\n");
    put_body(buf, secret);
}

/// `SUB <topic> <channel>\n`.
pub fn encode_sub(buf: &mut Vec<u8>, topic: &str, channel: &str) {
    buf.extend_from_slice(format!("SUB {topic} {channel}\n").as_bytes());
}

/// `RDY <count>\n`.
pub fn encode_rdy(buf: &mut Vec<u8>, count: u32) {
    buf.extend_from_slice(format!("RDY {count}\n").as_bytes());
}

/// `FIN <id>\n`.
pub fn encode_fin(buf: &mut Vec<u8>, id: &MessageId) {
    buf.extend_from_slice(b"FIN ");
    buf.extend_from_slice(&id.0);
    buf.push(b'\n');
}

/// `REQ <id> <timeout_ms>\n`.
pub fn encode_req(buf: &mut Vec<u8>, id: &MessageId, delay_ms: u64) {
    buf.extend_from_slice(b"REQ ");
    buf.extend_from_slice(&id.0);
    buf.extend_from_slice(format!(" {delay_ms}\n").as_bytes());
}

/// `TOUCH <id>\n`.
pub fn encode_touch(buf: &mut Vec<u8>, id: &MessageId) {
    buf.extend_from_slice(b"TOUCH ");
    buf.extend_from_slice(&id.0);
    buf.push(b'\n');
}

/// `NOP\n`, the answer to a heartbeat.
pub fn encode_nop(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"NOP\n");
}

/// `CLS\n`: stop sending me messages (nsqd answers `CLOSE_WAIT`).
pub fn encode_cls(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"CLS\n");
}

/// `PUB <topic>\n` + body.
pub fn encode_pub(buf: &mut Vec<u8>, topic: &str, body: &[u8]) {
    buf.extend_from_slice(b"PUB ");
    buf.extend_from_slice(topic.as_bytes());
    buf.push(b'\n');
    put_body(buf, body);
}

/// `DPUB <topic> <defer_ms>\n` + body.
pub fn encode_dpub(buf: &mut Vec<u8>, topic: &str, defer_ms: u64, body: &[u8]) {
    buf.extend_from_slice(format!("DPUB {topic} {defer_ms}\n").as_bytes());
    put_body(buf, body);
}

/// The size of an MPUB body carrying `bodies`: count, then size + bytes for each.
pub fn mpub_body_len<B: AsRef<[u8]>>(bodies: &[B]) -> usize {
    4 + bodies.iter().map(|b| 4 + b.as_ref().len()).sum::<usize>()
}

/// `MPUB <topic>\n` + body size + message count + (size, bytes) per message.
pub fn encode_mpub<B: AsRef<[u8]>>(buf: &mut Vec<u8>, topic: &str, bodies: &[B]) {
    buf.extend_from_slice(b"MPUB ");
    buf.extend_from_slice(topic.as_bytes());
    buf.push(b'\n');
    buf.reserve(4 + mpub_body_len(bodies));
    buf.extend_from_slice(&(mpub_body_len(bodies) as u32).to_be_bytes());
    buf.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
    for b in bodies {
        put_body(buf, b.as_ref());
    }
}

// ---- nsqd → client ----------------------------------------------------------------------------------------

/// Appends a frame of `frame_type` with `data`.
pub fn encode_frame(buf: &mut Vec<u8>, frame_type: u32, data: &[u8]) {
    buf.extend_from_slice(&((data.len() + 4) as u32).to_be_bytes());
    buf.extend_from_slice(&frame_type.to_be_bytes());
    buf.extend_from_slice(data);
}

/// Appends a message frame.
pub fn encode_message(buf: &mut Vec<u8>, m: &Message) {
    let size = 4 + MESSAGE_HEADER_LEN + m.body.len();
    buf.extend_from_slice(&(size as u32).to_be_bytes());
    buf.extend_from_slice(&FRAME_MESSAGE.to_be_bytes());
    buf.extend_from_slice(&m.timestamp_ns.to_be_bytes());
    buf.extend_from_slice(&m.attempts.to_be_bytes());
    buf.extend_from_slice(&m.id.0);
    buf.extend_from_slice(&m.body);
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one frame from the front of `buf`: `Ok(Some((frame, bytes used)))`, `Ok(None)` when more bytes
/// are needed, an error for a frame that cannot be valid (bigger than `max_frame`, unknown type, a message
/// shorter than its header).
pub fn decode_frame(buf: &[u8], max_frame: usize) -> Result<Option<(Frame, usize)>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = be_u32(buf) as usize;
    if !(4..=max_frame).contains(&size) {
        return Err(CodecError::new(
            "E_BAD_FRAME",
            format!("frame size {size} out of range 4-{max_frame}"),
        ));
    }
    if buf.len() < 4 + size {
        return Ok(None);
    }
    let frame_type = be_u32(&buf[4..]);
    let data = &buf[8..4 + size];
    let frame = match frame_type {
        FRAME_RESPONSE => Frame::Response(data.to_vec()),
        FRAME_ERROR => Frame::Error(data.to_vec()),
        FRAME_MESSAGE => {
            if data.len() < MESSAGE_HEADER_LEN {
                return Err(CodecError::new(
                    "E_BAD_FRAME",
                    format!(
                        "message frame of {} bytes is shorter than its header",
                        data.len()
                    ),
                ));
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&data[..8]);
            let mut id = [0u8; 16];
            id.copy_from_slice(&data[10..26]);
            Frame::Message(Message {
                timestamp_ns: i64::from_be_bytes(ts),
                attempts: u16::from_be_bytes([data[8], data[9]]),
                id: MessageId(id),
                body: data[MESSAGE_HEADER_LEN..].to_vec(),
            })
        }
        other => {
            return Err(CodecError::new(
                "E_BAD_FRAME",
                format!("unknown frame type {other}"),
            ));
        }
    };
    Ok(Some((frame, 4 + size)))
}

/// A command as nsqd reads it: the words of its line, and its body for the commands that have one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub params: Vec<Vec<u8>>,
    pub body: Option<Vec<u8>>,
}

impl Command {
    /// The command's name (`PUB`, `FIN` …).
    pub fn name(&self) -> &[u8] {
        self.params.first().map(Vec::as_slice).unwrap_or(b"")
    }

    /// Parameter `i` (0 is the name) as text, if present and UTF-8.
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).and_then(|p| std::str::from_utf8(p).ok())
    }
}

/// The limits nsqd applies while reading a command.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_msg_size: u32,
    pub max_body_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msg_size: DEFAULT_MAX_MSG_SIZE,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

/// The longest command line accepted (nsqd reads lines with a 16 KiB buffer).
const MAX_LINE: usize = 16 * 1024;

/// Decodes one command from the front of `buf`, as nsqd would: `Ok(None)` when more bytes are needed.
/// A body size beyond the limits is refused as soon as the size is read, before the body arrives, with
/// nsqd's code and text (`E_BAD_MESSAGE PUB message too big 2000000 > 1048576`).
pub fn decode_command(buf: &[u8], limits: Limits) -> Result<Option<(Command, usize)>, CodecError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Err(CodecError::new("E_INVALID", "command line too long"));
        }
        return Ok(None);
    };
    let mut line = &buf[..nl];
    if let Some(l) = line.strip_suffix(b"\r") {
        line = l;
    }
    let params: Vec<Vec<u8>> = line.split(|&b| b == b' ').map(<[u8]>::to_vec).collect();
    let name = params[0].as_slice();
    let (code, what, max) = match name {
        b"PUB" | b"DPUB" => ("E_BAD_MESSAGE", "message", limits.max_msg_size),
        b"MPUB" => ("E_BAD_BODY", "body", limits.max_body_size),
        b"IDENTIFY" | b"AUTH" => ("E_BAD_BODY", "body", limits.max_body_size),
        _ => return Ok(Some((Command { params, body: None }, nl + 1))),
    };
    let cmd = String::from_utf8_lossy(name).into_owned();
    let rest = &buf[nl + 1..];
    if rest.len() < 4 {
        return Ok(None);
    }
    let size = be_u32(rest) as i32;
    if size <= 0 {
        return Err(CodecError::new(
            code,
            format!("{cmd} invalid {what} size {size}"),
        ));
    }
    if size as u32 > max {
        let message = if code == "E_BAD_MESSAGE" {
            format!("{cmd} message too big {size} > {max}")
        } else {
            format!("{cmd} body too big {size} > {max}")
        };
        return Err(CodecError::new(code, message));
    }
    let size = size as usize;
    if rest.len() < 4 + size {
        return Ok(None);
    }
    let body = rest[4..4 + size].to_vec();
    Ok(Some((
        Command {
            params,
            body: Some(body),
        },
        nl + 1 + 4 + size,
    )))
}

/// Splits an MPUB body into its messages, checking each against `max_msg_size` as nsqd does.
pub fn decode_mpub_body(body: &[u8], limits: Limits) -> Result<Vec<Vec<u8>>, CodecError> {
    if body.len() < 4 {
        return Err(CodecError::new(
            "E_BAD_BODY",
            "MPUB failed to read message count",
        ));
    }
    let count = be_u32(body) as i32;
    let max_messages = (limits.max_body_size as i64 - 4) / 5;
    if count <= 0 || count as i64 > max_messages {
        return Err(CodecError::new(
            "E_BAD_BODY",
            format!("MPUB invalid message count {count}"),
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = 4;
    for i in 0..count {
        let Some(size) = body.get(at..at + 4).map(be_u32) else {
            return Err(CodecError::new(
                "E_BAD_MESSAGE",
                format!("MPUB failed to read message({i}) body size"),
            ));
        };
        let size = size as i32;
        if size <= 0 {
            return Err(CodecError::new(
                "E_BAD_MESSAGE",
                format!("MPUB invalid message({i}) body size {size}"),
            ));
        }
        if size as u32 > limits.max_msg_size {
            return Err(CodecError::new(
                "E_BAD_MESSAGE",
                format!("MPUB message too big {size} > {}", limits.max_msg_size),
            ));
        }
        at += 4;
        let Some(msg) = body.get(at..at + size as usize) else {
            return Err(CodecError::new(
                "E_BAD_MESSAGE",
                "MPUB failed to read message body",
            ));
        };
        out.push(msg.to_vec());
        at += size as usize;
    }
    Ok(out)
}

/// The code of an error frame (`E_FIN_FAILED` from `E_FIN_FAILED FIN … failed …`).
pub fn error_code(data: &[u8]) -> &str {
    let end = data.iter().position(|&b| b == b' ').unwrap_or(data.len());
    std::str::from_utf8(&data[..end]).unwrap_or("E_UNKNOWN")
}

/// Whether nsqd closes the connection after sending this error. Only the three "failed" errors about a
/// message id leave it open (nsqd's `NewClientErr`); every other error is fatal (`NewFatalClientErr`).
pub fn is_fatal_error(code: &str) -> bool {
    !matches!(code, "E_FIN_FAILED" | "E_REQ_FAILED" | "E_TOUCH_FAILED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nsqds_rule() {
        for ok in [
            "microscaling-demo",
            "a",
            "a.b_c-d",
            "x#ephemeral",
            &"a".repeat(64),
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "é",
            "#ephemeral",
            "a/b",
            &"a".repeat(65),
            "a#other",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn frames_round_trip_and_incomplete_is_not_an_error() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, FRAME_RESPONSE, b"OK");
        let m = Message {
            timestamp_ns: 42,
            attempts: 3,
            id: MessageId::from_u64(0xabc),
            body: b"hello".to_vec(),
        };
        encode_message(&mut buf, &m);
        encode_frame(&mut buf, FRAME_ERROR, b"E_INVALID nope");
        for cut in 0..10 {
            assert_eq!(decode_frame(&buf[..cut], 1 << 20), Ok(None));
        }
        let (f1, n1) = decode_frame(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(f1, Frame::Response(b"OK".to_vec()));
        let (f2, n2) = decode_frame(&buf[n1..], 1 << 20).unwrap().unwrap();
        assert_eq!(f2, Frame::Message(m));
        let (f3, _) = decode_frame(&buf[n1 + n2..], 1 << 20).unwrap().unwrap();
        assert_eq!(f3, Frame::Error(b"E_INVALID nope".to_vec()));
        assert_eq!(MessageId::from_u64(0xabc).to_string(), "0000000000000abc");
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(decode_frame(&[0, 0, 0, 1], 100).is_err());
        assert!(decode_frame(&[0, 0, 0, 200], 100).is_err());
        let mut buf = Vec::new();
        encode_frame(&mut buf, 9, b"x");
        assert!(decode_frame(&buf, 100).is_err());
        let mut buf = Vec::new();
        encode_frame(&mut buf, FRAME_MESSAGE, b"short");
        assert!(decode_frame(&buf, 100).is_err());
    }

    #[test]
    fn commands_decode_and_oversized_bodies_are_refused_before_they_arrive() {
        let mut buf = Vec::new();
        encode_pub(&mut buf, "t", b"body");
        encode_mpub(&mut buf, "t", &[b"a".as_slice(), b"bc"]);
        encode_fin(&mut buf, &MessageId::from_u64(1));
        let limits = Limits::default();
        let (c1, n1) = decode_command(&buf, limits).unwrap().unwrap();
        assert_eq!(c1.name(), b"PUB");
        assert_eq!(c1.body.as_deref(), Some(b"body".as_slice()));
        let (c2, n2) = decode_command(&buf[n1..], limits).unwrap().unwrap();
        let msgs = decode_mpub_body(c2.body.as_deref().unwrap(), limits).unwrap();
        assert_eq!(msgs, vec![b"a".to_vec(), b"bc".to_vec()]);
        let (c3, _) = decode_command(&buf[n1 + n2..], limits).unwrap().unwrap();
        assert_eq!(c3.param(1), Some("0000000000000001"));
        // Only the line and the size of a 2 MB PUB have arrived: refused already.
        let mut big = b"PUB t\n".to_vec();
        big.extend_from_slice(&2_000_000u32.to_be_bytes());
        let e = decode_command(&big, limits).unwrap_err();
        assert_eq!(e.code, "E_BAD_MESSAGE");
        assert_eq!(e.message, "PUB message too big 2000000 > 1048576");
        assert_eq!(decode_command(b"PUB t\n\0\0", limits), Ok(None));
    }

    #[test]
    fn error_codes_and_which_close() {
        assert_eq!(error_code(b"E_FIN_FAILED FIN x failed"), "E_FIN_FAILED");
        assert!(!is_fatal_error("E_TOUCH_FAILED"));
        assert!(is_fatal_error("E_BAD_MESSAGE"));
    }
}

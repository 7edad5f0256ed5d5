//! The fake nsqd against nsqd 1.3.0's observed behaviour, spoken to in raw protocol bytes (no client of
//! ours in the way), so that the fake the other NSQ tests rely on is itself checked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use queues::nsq::codec::{self, Frame, Message};
use testkit::fake_nsqd::{FakeNsqd, Options};

/// A raw protocol client: writes commands, reads frames.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(fake: &FakeNsqd) -> Raw {
        let mut s = TcpStream::connect(fake.tcp_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(codec::MAGIC_V2).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn send(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut b = Vec::new();
        f(&mut b);
        self.s.write_all(&b).unwrap();
    }

    /// The next frame, or None when the server closed the connection.
    fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = codec::decode_frame(&self.buf, 1 << 24).unwrap() {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn response(&mut self) -> Vec<u8> {
        match self.frame() {
            Some(Frame::Response(d)) => d,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn error(&mut self) -> String {
        match self.frame() {
            Some(Frame::Error(d)) => String::from_utf8(d).unwrap(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn message(&mut self) -> Message {
        match self.frame() {
            Some(Frame::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn identify(&mut self, json: &str) -> Vec<u8> {
        self.send(|b| codec::encode_identify(b, json.as_bytes()));
        self.response()
    }

    /// IDENTIFY with msg_timeout, SUB, RDY.
    fn subscriber(fake: &FakeNsqd, msg_timeout_ms: u64, rdy: u32) -> Raw {
        let mut r = Raw::connect(fake);
        r.identify(&format!(
            r#"{{"feature_negotiation":true,"msg_timeout":{msg_timeout_ms}}}"#
        ));
        r.send(|b| codec::encode_sub(b, "t", "c"));
        assert_eq!(r.response(), b"OK");
        r.send(|b| codec::encode_rdy(b, rdy));
        r
    }

    /// A message if one arrives within the read timeout.
    fn try_message(&mut self) -> Option<Message> {
        loop {
            if let Some((f, n)) = codec::decode_frame(&self.buf, 1 << 24).unwrap() {
                self.buf.drain(..n);
                match f {
                    Frame::Message(m) => return Some(m),
                    other => panic!("expected a message, got {other:?}"),
                }
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    fn closed(&mut self) -> bool {
        self.frame().is_none()
    }
}

fn publish(fake: &FakeNsqd, n: usize) {
    let mut p = Raw::connect(fake);
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| format!("m{i}").into_bytes()).collect();
    p.send(|b| codec::encode_mpub(b, "t", &bodies));
    assert_eq!(p.response(), b"OK");
}

#[test]
fn identify_negotiates_features_and_honours_msg_timeout() {
    let fake = FakeNsqd::start();
    let mut r = Raw::connect(&fake);
    let answer = r.identify(r#"{"feature_negotiation":true,"msg_timeout":5000}"#);
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["msg_timeout"], 5000);
    assert_eq!(v["max_rdy_count"], 2500);
    assert_eq!(v["version"], "1.3.0");
    let mut plain = Raw::connect(&fake);
    assert_eq!(plain.identify(r#"{"client_id":"x"}"#), b"OK");
    let mut bad = Raw::connect(&fake);
    bad.send(|b| codec::encode_identify(b, br#"{"msg_timeout":10}"#));
    assert!(bad.error().starts_with("E_BAD_BODY"));
    assert!(bad.closed());
}

#[test]
fn messages_carry_attempts_and_fin_removes_them() {
    let fake = FakeNsqd::start();
    let mut c = Raw::subscriber(&fake, 60_000, 1);
    publish(&fake, 2);
    let m = c.message();
    assert_eq!((m.attempts, m.body.as_slice()), (1, b"m0".as_slice()));
    // RDY 1: the second waits until the first is finished. Depth excludes in-flight.
    assert!(testkit::eventually(Duration::from_secs(2), || fake
        .channel_depth("t", "c")
        == (1, 1, 0)));
    c.send(|b| codec::encode_fin(b, &m.id));
    let m2 = c.message();
    assert_eq!(m2.body, b"m1");
    c.send(|b| codec::encode_fin(b, &m2.id));
    assert!(testkit::eventually(Duration::from_secs(2), || fake
        .channel_depth("t", "c")
        == (0, 0, 0)));
}

#[test]
fn failed_fin_req_touch_keep_the_connection_fatal_errors_close_it() {
    let fake = FakeNsqd::start();
    let mut c = Raw::subscriber(&fake, 60_000, 0);
    let unknown = codec::MessageId::from_u64(999);
    c.send(|b| codec::encode_fin(b, &unknown));
    assert!(
        c.error()
            .starts_with("E_FIN_FAILED FIN 00000000000003e7 failed")
    );
    c.send(|b| codec::encode_req(b, &unknown, 0));
    assert!(c.error().starts_with("E_REQ_FAILED"));
    c.send(|b| codec::encode_touch(b, &unknown));
    assert!(c.error().starts_with("E_TOUCH_FAILED"));
    // NOP has no answer: the next frame is PUB's OK. CLS answers CLOSE_WAIT.
    c.send(codec::encode_nop);
    c.send(|b| codec::encode_pub(b, "t", b"x"));
    assert_eq!(c.response(), b"OK");
    c.send(codec::encode_cls);
    assert_eq!(c.response(), b"CLOSE_WAIT");

    for (cmd, code) in [
        (b"PUB bad/topic\n\0\0\0\x01x".to_vec(), "E_BAD_TOPIC"),
        (b"SUB t bad/channel\n".to_vec(), "E_BAD_CHANNEL"),
        (b"WHAT\n".to_vec(), "E_INVALID"),
        (b"RDY 1\n".to_vec(), "E_INVALID"),
        (b"PUB t\n\0\0\0\0".to_vec(), "E_BAD_MESSAGE"),
        (b"MPUB t\n\0\0\0\x04\0\0\0\0".to_vec(), "E_BAD_BODY"),
    ] {
        let mut r = Raw::connect(&fake);
        r.s.write_all(&cmd).unwrap();
        let e = r.error();
        assert!(
            e.starts_with(code),
            "{}: {e}",
            String::from_utf8_lossy(&cmd)
        );
        assert!(r.closed(), "{code} closes the connection");
    }
}

#[test]
fn an_oversized_pub_is_refused_before_its_body_is_sent() {
    let fake = FakeNsqd::start();
    let mut r = Raw::connect(&fake);
    let mut head = b"PUB t\n".to_vec();
    head.extend_from_slice(&(2 * 1024 * 1024u32).to_be_bytes());
    r.s.write_all(&head).unwrap();
    assert_eq!(
        r.error(),
        "E_BAD_MESSAGE PUB message too big 2097152 > 1048576"
    );
    assert!(r.closed());
}

#[test]
fn in_flight_messages_of_a_gone_client_wait_for_their_timeout() {
    let fake = FakeNsqd::start();
    let mut c = Raw::subscriber(&fake, 1000, 5);
    publish(&fake, 3);
    for _ in 0..3 {
        c.message();
    }
    drop(c);
    let gone = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fake.channel_depth("t", "c"),
        (0, 3, 0),
        "still in flight after the disconnect"
    );
    assert!(testkit::eventually(Duration::from_secs(3), || fake
        .channel_depth("t", "c")
        == (3, 0, 0)));
    assert!(gone.elapsed() >= Duration::from_millis(700));
    assert_eq!(fake.channel_counts("t", "c").0, 3, "timeout_count");
    let mut again = Raw::subscriber(&fake, 1000, 5);
    assert_eq!(again.message().attempts, 2);
}

#[test]
fn req_with_delay_defers_and_touch_extends() {
    let fake = FakeNsqd::start();
    let mut c = Raw::subscriber(&fake, 1000, 2);
    publish(&fake, 2);
    let (a, b) = (c.message(), c.message());
    c.send(|buf| codec::encode_req(buf, &a.id, 400));
    assert!(testkit::eventually(Duration::from_secs(1), || fake
        .channel_depth("t", "c")
        .2
        == 1));
    // Keep b alive past its 1 s timeout with TOUCH every 300 ms, meanwhile a comes back after its delay.
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let mut got_a = None;
    while start.elapsed() < Duration::from_millis(1600) {
        c.send(|buf| codec::encode_touch(buf, &b.id));
        if let Some(m) = c.try_message() {
            c.send(|buf| codec::encode_fin(buf, &m.id));
            got_a = Some(m);
        }
    }
    let again = got_a.expect("the requeued message came back after its delay");
    assert_eq!((again.id, again.attempts), (a.id, 2));
    assert_eq!(
        fake.channel_counts("t", "c"),
        (0, 1),
        "nothing timed out; one requeue"
    );
    c.send(|buf| codec::encode_fin(buf, &b.id));
}

#[test]
fn heartbeats_are_sent_and_a_silent_client_is_dropped() {
    let fake = FakeNsqd::with_options(Options {
        heartbeat_interval: Duration::from_millis(200),
        ..Options::default()
    });
    let mut r = Raw::connect(&fake);
    r.identify(r#"{"feature_negotiation":true,"heartbeat_interval":1000}"#);
    assert_eq!(r.response(), codec::HEARTBEAT);
    // Not answering with NOP: closed after two intervals.
    let start = Instant::now();
    loop {
        match r.frame() {
            None => break,
            Some(Frame::Response(d)) if d == codec::HEARTBEAT => {}
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}

#[test]
fn a_topic_keeps_messages_until_its_first_channel_then_copies_to_each() {
    let fake = FakeNsqd::start();
    publish(&fake, 3);
    let (status, _, body) = http(&fake, "GET", "/stats?format=json&topic=t", b"");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["topics"][0]["depth"], 3);
    let (status, _, _) = http(&fake, "POST", "/channel/create?topic=t&channel=c", b"");
    assert_eq!(status, 200);
    let (status, _, _) = http(&fake, "POST", "/channel/create?topic=t&channel=d", b"");
    assert_eq!(status, 200);
    publish(&fake, 2);
    assert_eq!(fake.channel_depth("t", "c").0, 5);
    assert_eq!(fake.channel_depth("t", "d").0, 2);
}

/// A minimal HTTP/1.1 request; returns (status, raw headers, body).
fn http(fake: &FakeNsqd, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(fake.http_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let headers = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
    out
}

#[test]
fn http_answers_like_nsqd() {
    let fake = FakeNsqd::start();
    let (status, headers, body) = http(&fake, "GET", "/ping", b"");
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    assert!(
        headers.contains("x-nsq-content-type: nsq; version=1.0"),
        "{headers}"
    );
    for (method, path, body, want_status, want_message) in [
        (
            "POST",
            "/channel/create?topic=none&channel=c",
            &b""[..],
            404,
            "TOPIC_NOT_FOUND",
        ),
        ("POST", "/pub?topic=bad/topic", b"x", 400, "INVALID_TOPIC"),
        ("POST", "/pub", b"x", 400, "MISSING_ARG_TOPIC"),
        ("GET", "/pub?topic=t", b"", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/nothing", b"", 404, "NOT_FOUND"),
    ] {
        let (status, headers, body) = http(&fake, method, path, body);
        assert_eq!(status, want_status, "{method} {path}");
        assert!(
            headers.contains("x-nsq-content-type"),
            "{method} {path}: {headers}"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message": want_message}),
            "{method} {path}"
        );
    }
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, _, body) = http(&fake, "POST", "/pub?topic=t", &big);
    assert_eq!(
        (status, body.as_slice()),
        (413, br#"{"message":"MSG_TOO_BIG"}"#.as_slice())
    );
    let (status, _, body) = http(&fake, "POST", "/pub?topic=t", b"hello");
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    let (status, _, _) = http(&fake, "POST", "/mpub?topic=t", b"a\nb\n");
    assert_eq!(status, 200);
    assert_eq!(fake.published("t"), 3);
    let (_, _, body) = http(&fake, "GET", "/stats?format=json&topic=none", b"");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["topics"].is_null() && v["producers"].is_null(), "{v}");
}

#[test]
fn stop_and_start_again_keeps_messages_on_the_same_ports() {
    let mut fake = FakeNsqd::start();
    let addr = fake.tcp_addr();
    let mut c = Raw::subscriber(&fake, 60_000, 1);
    publish(&fake, 2);
    c.message();
    fake.stop();
    assert!(c.closed(), "connections are cut");
    assert!(TcpStream::connect(addr).is_err(), "the port is closed");
    fake.start_again();
    assert_eq!(fake.tcp_addr(), addr);
    assert_eq!(
        fake.channel_depth("t", "c"),
        (2, 0, 0),
        "in-flight went back to the queue"
    );
    // nsqd writes the queue out first, then the in-flight messages.
    let mut c = Raw::subscriber(&fake, 60_000, 2);
    assert_eq!(c.message().body, b"m1");
    let m0 = c.message();
    assert_eq!((m0.body.as_slice(), m0.attempts), (b"m0".as_slice(), 2));
}

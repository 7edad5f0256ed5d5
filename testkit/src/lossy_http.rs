//! An HTTP/1.1 proxy in front of a loopback server that forwards every request but can throw away the
//! answers to some: the server acts on the request, the client sees its connection close with no response.
//! That is what a timeout or a reset connection looks like from the client, after the fact, and the one case
//! where a client cannot know whether its request was applied: the tests of what a backend then counts.
//!
//! It can also hold requests back, unforwarded, or refuse them (the connection closed, nothing forwarded):
//! a server that stalls, or fails, for one kind of request while the others go through.
//!
//! One upstream connection per client connection, one request at a time on each (no client here pipelines).
//! Bodies are framed by `Content-Length` or chunked transfer encoding, the only two the servers under test use.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub struct LossyHttp {
    port: u16,
    to_drop: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    control: Arc<Control>,
}

/// What happens to requests a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Hold,
    Refuse,
}

/// Requests with `method` whose target contains `path_part`.
struct Rule {
    method: &'static str,
    path_part: String,
    action: Action,
}

impl Rule {
    fn matches(&self, request: &[u8]) -> bool {
        let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut words = line.split(' ');
        words.next() == Some(self.method)
            && words
                .next()
                .is_some_and(|target| target.contains(&self.path_part))
    }
}

#[derive(Default)]
struct Control {
    rule: Mutex<Option<Rule>>,
    holding: AtomicU64,
    refused: AtomicU64,
}

impl Control {
    fn verdict(&self, request: &[u8]) -> Option<Action> {
        let rule = self.rule.lock().unwrap_or_else(PoisonError::into_inner);
        rule.as_ref()
            .filter(|r| r.matches(request))
            .map(|r| r.action)
    }

    fn set(&self, rule: Option<Rule>) {
        *self.rule.lock().unwrap_or_else(PoisonError::into_inner) = rule;
    }
}

impl LossyHttp {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`; answers to requests with
    /// `method` are thrown away while [`LossyHttp::drop_next`] says so. The listener thread lives as long as
    /// the test process.
    pub fn start(upstream: u16, method: &'static str) -> LossyHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let to_drop = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let control = Arc::new(Control::default());
        let (d, n, c) = (to_drop.clone(), dropped.clone(), control.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (d, n, c) = (d.clone(), n.clone(), c.clone());
                std::thread::spawn(move || {
                    // A connection that fails mid-way is the client's or the server's business: it just ends.
                    let _ = serve(client, upstream, method, &d, &n, &c);
                });
            }
        });
        LossyHttp {
            port,
            to_drop,
            dropped,
            control,
        }
    }

    /// From now on requests with `method` whose target contains `path_part` wait here, unforwarded, until
    /// [`LossyHttp::pass`] lets them go on or [`LossyHttp::refuse`] turns them away.
    pub fn hold(&self, method: &'static str, path_part: &str) {
        self.set(method, path_part, Action::Hold);
    }

    /// From now on requests with `method` whose target contains `path_part`, and those held, are refused:
    /// their connection is closed and nothing is forwarded, so the server never sees them.
    pub fn refuse(&self, method: &'static str, path_part: &str) {
        self.set(method, path_part, Action::Refuse);
    }

    /// Every request is forwarded again, those held included.
    pub fn pass(&self) {
        self.control.set(None);
    }

    /// Requests being held now.
    pub fn holding(&self) -> u64 {
        self.control.holding.load(Ordering::SeqCst)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.control.refused.load(Ordering::SeqCst)
    }

    fn set(&self, method: &'static str, path_part: &str, action: Action) {
        self.control.set(Some(Rule {
            method,
            path_part: path_part.to_string(),
            action,
        }));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The answers to the next `n` requests with the method are thrown away (their requests still reach the
    /// server).
    pub fn drop_next(&self, n: u64) {
        self.to_drop.store(n, Ordering::SeqCst);
    }

    /// How many answers were thrown away so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn serve(
    client: TcpStream,
    upstream: u16,
    method: &str,
    to_drop: &AtomicU64,
    dropped: &AtomicU64,
    control: &Control,
) -> std::io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut from_server = BufReader::new(server.try_clone()?);
    let (mut to_client, mut to_server) = (client, server);
    loop {
        let Some(request) = message(&mut from_client)? else {
            return Ok(());
        };
        if !admitted(&request, control) {
            return to_client.shutdown(Shutdown::Both);
        }
        to_server.write_all(&request)?;
        let Some(answer) = message(&mut from_server)? else {
            return Ok(());
        };
        let lose = request.starts_with(format!("{method} ").as_bytes())
            && to_drop
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lose {
            dropped.fetch_add(1, Ordering::SeqCst);
            return to_client.shutdown(Shutdown::Both);
        }
        to_client.write_all(&answer)?;
    }
}

/// Waits while the request is held; false when it is refused (counted).
fn admitted(request: &[u8], control: &Control) -> bool {
    let mut held = false;
    let admitted = loop {
        match control.verdict(request) {
            None => break true,
            Some(Action::Refuse) => {
                control.refused.fetch_add(1, Ordering::SeqCst);
                break false;
            }
            Some(Action::Hold) => {
                if !held {
                    held = true;
                    control.holding.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    if held {
        control.holding.fetch_sub(1, Ordering::SeqCst);
    }
    admitted
}

/// One whole HTTP/1.1 message (head and body) as bytes, `None` at a clean end of the stream.
fn message(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        out.extend_from_slice(line.as_bytes());
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().map_err(std::io::Error::other)?;
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if line == "\r\n" {
            break;
        }
    }
    if !chunked {
        let start = out.len();
        out.resize(start + length, 0);
        r.read_exact(&mut out[start..])?;
        return Ok(Some(out));
    }
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        out.extend_from_slice(size.as_bytes());
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(std::io::Error::other)?;
        // The chunk and its CRLF (the last, empty chunk: just the CRLF after no trailers).
        let start = out.len();
        out.resize(start + n + 2, 0);
        r.read_exact(&mut out[start..])?;
        if n == 0 {
            return Ok(Some(out));
        }
    }
}

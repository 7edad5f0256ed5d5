//! An HTTP/1.1 proxy in front of a loopback server that forwards every request but can throw away the
//! answers to some: the server acts on the request, the client sees its connection close with no response.
//! That is what a timeout or a reset connection looks like from the client, after the fact, and the one case
//! where a client cannot know whether its request was applied: the tests of what a backend then counts.
//!
//! One upstream connection per client connection, one request at a time on each (no client here pipelines).
//! Bodies are framed by `Content-Length` or chunked transfer encoding, the only two the servers under test use.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct LossyHttp {
    port: u16,
    to_drop: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
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
        let (d, n) = (to_drop.clone(), dropped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (d, n) = (d.clone(), n.clone());
                std::thread::spawn(move || {
                    // A connection that fails mid-way is the client's or the server's business: it just ends.
                    let _ = serve(client, upstream, method, &d, &n);
                });
            }
        });
        LossyHttp {
            port,
            to_drop,
            dropped,
        }
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

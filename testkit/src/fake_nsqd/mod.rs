//! A fake nsqd for the tests: nsqd's TCP protocol (V2) and the HTTP endpoints this suite uses, written from
//! nsqd's published protocol and its source (`nsqd/protocol_v2.go`, `http.go`, `channel.go`) and matching
//! what nsqd 1.3.0 was observed to do. Where the two could differ, it follows nsqd.
//!
//! It runs on its own tokio runtime (its CPU is not the test's), on free loopback ports, and can be stopped
//! and started again on the same ports ([`FakeNsqd::stop`], [`FakeNsqd::start_again`]) to test reconnects:
//! like nsqd on a clean exit, it keeps its messages, in-flight ones going back to the queue.

mod http;
mod state;
mod tcp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use self::http::stats_json;
use self::state::State;

/// nsqd's options that the fake honours.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--msg-timeout`: default time before an unfinished message is delivered again.
    pub msg_timeout: Duration,
    /// `--max-msg-timeout`: the largest msg_timeout a client may ask for in IDENTIFY.
    pub max_msg_timeout: Duration,
    pub max_msg_size: u32,
    pub max_body_size: u32,
    pub max_rdy_count: u32,
    /// Heartbeat interval, at most what the client asks for.
    pub heartbeat_interval: Duration,
    /// When set, clients must AUTH with this secret.
    pub auth_secret: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_msg_size: 1024 * 1024,
            max_body_size: 5 * 1024 * 1024,
            max_rdy_count: 2500,
            heartbeat_interval: Duration::from_secs(30),
            auth_secret: None,
        }
    }
}

/// A running fake nsqd; stopped when dropped.
pub struct FakeNsqd {
    rt: Option<tokio::runtime::Runtime>,
    state: Arc<Mutex<State>>,
    opts: Options,
    tcp: SocketAddr,
    http: SocketAddr,
    tasks: Option<JoinSet<()>>,
}

impl FakeNsqd {
    /// Starts on free loopback ports with nsqd's defaults.
    pub fn start() -> FakeNsqd {
        FakeNsqd::with_options(Options::default())
    }

    pub fn with_options(opts: Options) -> FakeNsqd {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-nsqd")
            .enable_all()
            .build()
            .expect("fake nsqd runtime");
        let (tcp, http) = rt.block_on(async {
            let t = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
            let h = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
            (t, h)
        });
        let tcp_addr = tcp.local_addr().expect("tcp addr");
        let http_addr = http.local_addr().expect("http addr");
        let mut fake = FakeNsqd {
            rt: Some(rt),
            state: Arc::new(Mutex::new(State::default())),
            opts,
            tcp: tcp_addr,
            http: http_addr,
            tasks: None,
        };
        fake.serve(tcp, http);
        fake
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime lives until drop")
    }

    fn serve(&mut self, tcp: TcpListener, http: TcpListener) {
        let mut tasks = JoinSet::new();
        let _guard = self.rt().enter();
        let (state, opts) = (self.state.clone(), self.opts.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = tcp.accept() => {
                        if let Ok((stream, _)) = accepted {
                            conns.spawn(tcp::serve(stream, state.clone(), opts.clone()));
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        let router = http::router(self.state.clone(), self.opts.clone());
        tasks.spawn(async move {
            let _ = axum::serve(http, router).await;
        });
        let state = self.state.clone();
        tasks.spawn(async move {
            // nsqd's queue scan: time out in-flight messages and release deferred ones.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .scan(std::time::Instant::now());
            }
        });
        self.tasks = Some(tasks);
    }

    /// nsqd's TCP address (`127.0.0.1:PORT`).
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// nsqd's HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// An `nsq://` URL for `topic`/`channel` on this fake. With `FAKE_NSQD_CONNECTIONS=N` in the environment,
    /// the URL asks for N connections per process, so every NSQ test can be run again with several
    /// (`FAKE_NSQD_CONNECTIONS=3 cargo nextest run -p common --test nsq_delivery`).
    pub fn url(&self, topic: &str, channel: &str) -> String {
        let mut url = format!("nsq://{}/{topic}/{channel}?http={}", self.tcp, self.http);
        if let Ok(n) = std::env::var("FAKE_NSQD_CONNECTIONS")
            && !n.is_empty()
        {
            url.push_str(&format!("&connections={n}"));
        }
        url
    }

    /// Stops serving: every connection is cut and the ports are closed. Messages are kept; in-flight and
    /// deferred ones go back to the queue, as nsqd persists them on exit.
    pub fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            self.rt().block_on(async {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            });
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .persist_for_restart();
    }

    /// Serves again on the same ports after [`FakeNsqd::stop`].
    pub fn start_again(&mut self) {
        if self.tasks.is_some() {
            return;
        }
        let (t, h) = (self.tcp, self.http);
        let (tcp, http) = self.rt().block_on(async {
            // The ports were ours a moment ago; retry briefly while the kernel lets go of them.
            for _ in 0..200 {
                if let (Ok(a), Ok(b)) = (TcpListener::bind(t).await, TcpListener::bind(h).await) {
                    return (a, b);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("cannot bind the fake nsqd's ports again");
        });
        self.serve(tcp, http);
    }

    /// The channel's (depth, in flight, deferred), as `/stats` reports them; zeros when it does not exist.
    pub fn channel_depth(&self, topic: &str, channel: &str) -> (u64, u64, u64) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.topics
            .get(topic)
            .and_then(|t| t.channels.get(channel))
            .map(|c| {
                (
                    c.queue.len() as u64,
                    c.in_flight.len() as u64,
                    c.deferred.len() as u64,
                )
            })
            .unwrap_or_default()
    }

    /// The channel's (timeout count, requeue count).
    pub fn channel_counts(&self, topic: &str, channel: &str) -> (u64, u64) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.topics
            .get(topic)
            .and_then(|t| t.channels.get(channel))
            .map(|c| (c.timeout_count, c.requeue_count))
            .unwrap_or_default()
    }

    /// Messages ever published to the topic.
    pub fn published(&self, topic: &str) -> u64 {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.topics.get(topic).map_or(0, |t| t.message_count)
    }

    /// The clients connected now.
    pub fn client_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clients
            .len()
    }
}

impl Drop for FakeNsqd {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
